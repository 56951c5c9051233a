"""systemd's notify protocol, spoken directly over `NOTIFY_SOCKET` (see sd_notify(3)).

Each message is one datagram of newline-separated `KEY=VALUE` lines sent to the
AF_UNIX socket systemd names in `NOTIFY_SOCKET` (a path, or `@name` for the
abstract namespace). Without the variable (not under systemd, or not
`Type=notify`) every call does nothing, so the agent runs the same anywhere.

    READY=1                       every receiver listens
    RELOADING=1 + MONOTONIC_USEC  a reload began; READY=1 when it ended
    STOPPING=1                    shutdown began
    WATCHDOG=1                    the event loop is alive (every WATCHDOG_USEC / 2)
    STATUS=...                    one line for `systemctl status`
"""

from __future__ import annotations

import os
import socket
import time
from typing import Mapping


class Notifier:
    """Sends notify messages to the socket of `environ` (the process's environment by default)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # the abstract namespace
        self._address = address or None
        self._watchdog = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when systemd wants none."""
        return self._watchdog

    def notify(self, **fields: object) -> bool:
        """Send `KEY=VALUE` lines (keys as given, upper-cased); True when a datagram was sent.

        Failures are not errors: a daemon must run on when its manager is gone.
        """
        if self._address is None:
            return False
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify(ready=1, **({"status": status} if status else {}))

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd (Type=notify-reload, v253+) tell this reload from an earlier one.
        return self.notify(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self) -> bool:
        return self.notify(stopping=1)

    def watchdog(self) -> bool:
        return self.notify(watchdog=1)

    def status(self, text: str) -> bool:
        return self.notify(status=text.replace("\n", " "))


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is meant for another process (a parent that exec'd us, say)
    return int(usec) / 1e6 / 2
