"""systemd/: the unit passes `systemd-analyze verify`, says what the service needs, and the install
and uninstall scripts put things where the unit expects them: for real, into /opt/vigil and /etc/vigil
where the test runs as root on a host without Vigil (CI), and staged under DESTDIR."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent import __version__
from tests.conftest import debian_binary
from tests.vigil_cli import REPO, run_cli

UNIT = REPO / "systemd" / "vigil.service"


def systemd_analyze() -> str:
    return debian_binary("systemd", "systemd-analyze")


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


def test_the_service_config_is_valid_with_the_rule_pack_install_sh_puts_beside_it(tmp_path):
    # Installed, the config reads /etc/vigil/alerts/inference-rules.yaml: here, the file install.sh copies.
    text = (REPO / "systemd" / "vigil.yaml").read_text()
    assert "rule_files: [/etc/vigil/alerts/inference-rules.yaml]" in text
    (tmp_path / "vigil.yaml").write_text(text.replace("/etc/vigil/alerts/", f"{REPO}/agent/alerts/"))
    result = run_cli("validate", "-c", str(tmp_path / "vigil.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("valid (4 pipelines)\n")


# --- a real install, as an operator runs it ------------------------------------------------------------

INSTALLED = [Path("/opt/vigil"), Path("/etc/vigil"), Path("/usr/local/bin/vigil"),
             Path("/etc/systemd/system/vigil.service"), Path("/var/lib/vigil")]


def sh(script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`sh systemd/SCRIPT ARGS` as the README says to run it (no DESTDIR, no PYTHON, no PIP_ARGS)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DESTDIR", "PYTHON", "PIP_ARGS", "VIRTUAL_ENV") and not k.startswith(("OTEL_", "VIGIL_"))}
    # The operator's PATH, not the test venv's: install.sh must find python3 and build its own venv.
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(REPO / ".venv")))
    return subprocess.run(["sh", str(REPO / "systemd" / script), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd="/")


@pytest.fixture
def real_install():
    if os.geteuid() != 0:
        pytest.skip("installs into /opt/vigil and /etc/vigil as an operator does: needs root (CI runs as root)")
    present = [str(p) for p in INSTALLED if p.exists() or p.is_symlink()]
    if present:
        pytest.skip(f"Vigil is installed on this host ({', '.join(present)}): the test would replace it")
    if Path("/run/systemd/system").is_dir():
        pytest.skip("systemd runs here: install.sh would start the service on its fixed ports")
    try:
        yield
    finally:
        sh("uninstall.sh", "--purge", timeout=120)
        for path in INSTALLED:  # whatever a failed uninstall left
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path)


def installed_exec_start() -> list[str]:
    unit = Path("/etc/systemd/system/vigil.service").read_text()
    line = next(l for l in unit.splitlines() if l.startswith("ExecStart="))
    return shlex.split(line.partition("=")[2])


@pytest.mark.timeout(600)  # three installs, each building a venv with pip (about 40 s each on 2 cores)
def test_install_sh_installs_a_service_that_runs_and_upgrades_atomically(real_install):
    result = sh("install.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wire reader: compiled (agent/_otlpscan.c)" in result.stdout  # a C compiler is at hand here
    assert "json writer: compiled (agent/_otlpjson.c)" in result.stdout
    assert "systemd is not running here" in result.stdout

    # What the unit runs and what an operator types, at their real paths.
    command = installed_exec_start()
    assert command == ["/opt/vigil/venv/bin/vigil", "run", "-c", "/etc/vigil/vigil.yaml"]
    for vigil in (command[0], "/usr/local/bin/vigil"):
        version = subprocess.run([vigil, "version"], capture_output=True, text=True, timeout=60)
        assert version.returncode == 0 and version.stdout.startswith("vigil "), version.stderr
        valid = subprocess.run([vigil, "validate", "-c", command[3]], capture_output=True, text=True, timeout=60)
        assert valid.returncode == 0, valid.stderr
        assert valid.stdout == "/etc/vigil/vigil.yaml: valid (4 pipelines)\n"
    verify = subprocess.run([systemd_analyze(), "verify", "/etc/systemd/system/vigil.service"],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    # The installed config watches models and alerts on them with the rule pack it names.
    config = Path("/etc/vigil/vigil.yaml").read_text()
    assert "  ml:" in config and "rule_files: [/etc/vigil/alerts/inference-rules.yaml]" in config
    assert Path("/etc/vigil/alerts/inference-rules.yaml").read_text() == \
        (REPO / "agent/alerts/inference-rules.yaml").read_text()
    first = os.readlink("/opt/vigil/venv")

    # An upgrade builds a new venv and switches to it; a rule pack the operator edited is kept.
    edited = Path("/etc/vigil/alerts/inference-rules.yaml").read_text() + "# tuned for our models\n"
    Path("/etc/vigil/alerts/inference-rules.yaml").write_text(edited)
    result = sh("install.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "keeping /etc/vigil/alerts/inference-rules.yaml (edited); the new shipped one is " \
           "/etc/vigil/alerts/inference-rules.yaml.new" in result.stdout
    assert Path("/etc/vigil/alerts/inference-rules.yaml").read_text() == edited
    second = os.readlink("/opt/vigil/venv")
    assert second != first and not Path("/opt/vigil", first).exists()
    assert subprocess.run(["/usr/local/bin/vigil", "version"], capture_output=True, timeout=60).returncode == 0

    # A config the new Vigil refuses: install.sh says so and what failed, and changes nothing.
    Path("/etc/vigil/vigil.yaml").write_text(config.replace("processors:", "processors:\n  nonsense: {}", 1))
    result = sh("install.sh")
    assert result.returncode == 1
    assert "processors.nonsense" in result.stdout + result.stderr  # vigil validate's own words
    assert f"install.sh: Vigil {__version__} refuses /etc/vigil/vigil.yaml (above: why); fix it, then run this " \
           "again; the installed Vigil is unchanged" in result.stderr
    assert os.readlink("/opt/vigil/venv") == second
    assert sorted(p.name for p in Path("/opt/vigil").glob("venv-*")) == [second]
    assert subprocess.run(["/usr/local/bin/vigil", "version"], capture_output=True, timeout=60).returncode == 0

    result = sh("uninstall.sh", "--purge")
    assert result.returncode == 0, result.stderr
    assert not any(p.exists() or p.is_symlink() for p in INSTALLED)


@pytest.mark.timeout(600)  # two installs, each building a venv with pip
def test_install_and_uninstall_staged_under_destdir(tmp_path):
    root = tmp_path / "root"
    env = {**os.environ, "DESTDIR": str(root), "PYTHON": sys.executable}
    result = subprocess.run(["sh", str(REPO / "systemd" / "install.sh")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wire reader: compiled (agent/_otlpscan.c)" in result.stdout  # a C compiler is at hand here
    assert "json writer: compiled (agent/_otlpjson.c)" in result.stdout
    assert (root / "etc/systemd/system/vigil.service").read_text() == UNIT.read_text()
    assert (root / "etc/vigil/vigil.yaml").read_text() == (REPO / "systemd/vigil.yaml").read_text()
    assert (root / "etc/vigil/alerts/inference-rules.yaml").read_text() == \
        (REPO / "agent/alerts/inference-rules.yaml").read_text()
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
    assert f"keeping {root}/etc/vigil/vigil.yaml (edited)" in result.stdout
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
