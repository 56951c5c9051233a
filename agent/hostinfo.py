"""The host's identity as OpenTelemetry resource attributes (`host.*`, `os.*`)."""

from __future__ import annotations

import functools
import platform
import socket
from pathlib import Path

# platform.machine() names to the semantic conventions' `host.arch` values.
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "x86",
         "i686": "x86", "ppc64le": "ppc64", "ppc64": "ppc64", "s390x": "s390x", "armv7l": "arm32"}


def detect_host_resource() -> dict[str, str]:
    """The host's attributes (a fresh dict each call; the detection itself runs once)."""
    return dict(_detect())


@functools.cache
def _detect() -> dict[str, str]:
    # The host's identity does not change while Vigil runs; several components ask for it.
    attributes = {
        "host.name": socket.gethostname(),
        "host.arch": _ARCH.get(platform.machine().lower(), platform.machine().lower()),
        "os.type": platform.system().lower(),
        "os.description": _os_description(),
    }
    machine_id = _machine_id()
    if machine_id:
        attributes["host.id"] = machine_id
    return attributes


def _machine_id() -> str | None:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return None


def _os_description() -> str:
    try:
        release = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        release = None
    kernel = f"{platform.system()} {platform.release()}"
    return f"{release} ({kernel})" if release else kernel
