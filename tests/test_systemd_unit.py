"""systemd/: the unit passes `systemd-analyze verify`, says what the service needs, and the install
and uninstall scripts put things where the unit expects them (staged under DESTDIR)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.vigil_cli import REPO, run_cli

UNIT = REPO / "systemd" / "vigil.service"


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is not installed: `make test` installs Debian's `systemd` package "
                    "(apt-get install systemd)")
    return path


def unit_settings() -> dict[str, list[str]]:
    """Every `Key=value` of the unit, in order (keys repeat: DeviceAllow=, Environment=)."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart's binary exists: point it at this checkout's vigil.
    vigil = Path(sys.executable).parent / "vigil"
    text = UNIT.read_text().replace("/opt/vigil/venv/bin/vigil", str(vigil))
    assert text != UNIT.read_text()
    (tmp_path / "vigil.service").write_text(text)
    result = subprocess.run([systemd_analyze(), "verify", str(tmp_path / "vigil.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_the_unit_is_a_notify_service_with_a_watchdog_reload_and_hardening():
    s = unit_settings()
    one = {key: values[-1] for key, values in s.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["ExecStart"] == "/opt/vigil/venv/bin/vigil run -c /etc/vigil/vigil.yaml"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["WatchdogSec"] == "30s" and one["Restart"] == "on-failure"
    assert one["DynamicUser"] == "yes"
    assert one["StateDirectory"] == "vigil" and one["ConfigurationDirectory"] == "vigil"
    assert one["EnvironmentFile"] == "-/etc/vigil/vigil.env"
    assert {"OPENBLAS_NUM_THREADS=1", "MALLOC_ARENA_MAX=2"} <= set(" ".join(s["Environment"]).split())
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
                       "SystemCallFilter": "@system-service", "DevicePolicy": "closed"}.items():
        assert one[key] == value, key
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert any(v.startswith("char-nvidia-frontend rw") for v in s["DeviceAllow"])
    assert "PrivateDevices" not in s  # it would hide /dev/nvidia*
    # Stopping may take the whole shutdown_timeout (30s) and then some.
    assert int(one["TimeoutStopSec"].rstrip("s")) > 30


def test_the_service_config_is_valid():
    result = run_cli("validate", "-c", str(REPO / "systemd" / "vigil.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("valid (3 pipelines)\n")


def test_install_and_uninstall_staged_under_destdir(tmp_path):
    root = tmp_path / "root"
    env = {**os.environ, "DESTDIR": str(root), "PIP_ARGS": "--no-deps", "PYTHON": sys.executable}
    result = subprocess.run(["sh", str(REPO / "systemd" / "install.sh")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wire reader: compiled (agent/_otlpscan.c)" in result.stdout  # a C compiler is at hand here
    assert (root / "etc/systemd/system/vigil.service").read_text() == UNIT.read_text()
    assert (root / "etc/vigil/vigil.yaml").read_text() == (REPO / "systemd/vigil.yaml").read_text()
    assert oct((root / "etc/vigil/vigil.env").stat().st_mode & 0o777) == "0o600"
    assert os.access(root / "opt/vigil/venv/bin/vigil", os.X_OK)
    assert os.readlink(root / "usr/local/bin/vigil") == "/opt/vigil/venv/bin/vigil"
    show = subprocess.run([str(root / "opt/vigil/venv/bin/python"), "-m", "pip", "show", "vigil-agent"],
                          capture_output=True, text=True, timeout=60)
    assert "Name: vigil-agent" in show.stdout

    # Again, as an upgrade: an edited config is kept.
    (root / "etc/vigil/vigil.yaml").write_text("# mine\n")
    result = subprocess.run(["sh", str(REPO / "systemd" / "install.sh")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"keeping {root}/etc/vigil/vigil.yaml" in result.stdout
    assert (root / "etc/vigil/vigil.yaml").read_text() == "# mine\n"

    result = subprocess.run(["sh", str(REPO / "systemd" / "uninstall.sh")], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert not (root / "opt/vigil").exists() and not (root / "etc/systemd/system/vigil.service").exists()
    assert not (root / "usr/local/bin/vigil").is_symlink()
    assert (root / "etc/vigil/vigil.yaml").exists()  # kept without --purge
    result = subprocess.run(["sh", str(REPO / "systemd" / "uninstall.sh"), "--purge"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert not (root / "etc/vigil").exists()


def test_configparser_reads_the_unit():  # systemd's syntax is ini-like: no stray continuation lines
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(UNIT.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]
