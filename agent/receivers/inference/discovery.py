"""Find the inference servers running on this host: by process command line, then listening port.

One scan reads every process's command line once (psutil) and, for the few
that look like a server, its listening TCP sockets; nothing is remembered
between scans (a wrapper script that later `exec`s a server keeps its pid, so
a verdict kept per pid would miss it). A process that exits during the scan
is left out; one whose sockets may not be read (AccessDenied) is found on the
port its command line names, or the server's default. A server whose metrics
are switched off (llama.cpp without `--metrics`, SGLang without
`--enable-metrics`, Triton with `--allow-metrics=false`) is left out, and
said once in the log with the flag that turns them on.

Process names, flags and default ports, and where they were read: Triton
`tritonserver --metrics-port` (8002; server@v2.71.0 src/command_line_parser.h),
vLLM `vllm serve` / `-m vllm.entrypoints.openai.api_server --port` (8000;
docs.vllm.ai v0.9.1), SGLang `-m sglang.launch_server` / `sglang serve --port`
(30000; python/sglang/srt/server_args.py), TGI `text-generation-router` under
`text-generation-launcher --port` (3000; v3.3.7 launcher/src/main.rs), MLServer
`mlserver start <dir>` (metrics port 8082, or `metrics_port` in
`<dir>/settings.json`; 1.7.1 mlserver/settings.py), llama.cpp `llama-server
--port` (8080; tools/server/README.md @00dc8057).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Iterable, Sequence

import psutil

KINDS = ("triton", "vllm", "sglang", "tgi", "mlserver", "llamacpp")

_log = logging.getLogger("vigil.inference.discovery")

# A server's metrics port, when its own flag is not on the command line.
_DEFAULT_PORT = {"triton": 8002, "vllm": 8000, "sglang": 30000, "tgi": 3000, "mlserver": 8082, "llamacpp": 8080}
# The flags naming the port and the address its metrics are served on, where not --port and --host.
_PORT_FLAG = {"triton": "--metrics-port"}
_HOST_FLAG = {"triton": "--metrics-address", "tgi": "--hostname"}
# Servers with more than one listening port: the one serving metrics cannot be told from the sockets.
_SEVERAL_PORTS = frozenset({"triton", "mlserver"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})
_LOCAL = "127.0.0.1"


@dataclass(frozen=True)
class FoundServer:
    """One server found among the host's processes: where its metrics are and which process serves them.

    `pid` is the server's top process (for TGI the launcher, whose children are the router and the
    shards); its descendants are the server too. `endpoint` is `host:port` (`[ipv6]:port`).
    """

    kind: str
    endpoint: str
    metrics_path: str
    pid: int
    command: str


@dataclass
class _Candidate:
    kind: str
    process: psutil.Process
    args: list[str]  # the arguments after the program (or after `-m module`)
    cmdline: list[str]
    owner: _Candidate | None = None  # the server's top process, when it is not this one (TGI's launcher)


def discover(kinds: Iterable[str] | None = None) -> list[FoundServer]:
    """The inference servers of `kinds` (all of `KINDS` by default) running on this host, by pid.

    Blocking (it reads /proc): run it in a worker thread. Cheap enough to run every minute.
    """
    return _SCANNER.scan(kinds)


class Scanner:
    """Scans the host's processes; remembers only which servers it has already said it leaves out."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or _log
        self._lock = threading.Lock()
        self._said: set[tuple[int, str]] = set()  # (pid, reason) said once; pruned to live pids

    def scan(self, kinds: Iterable[str] | None = None) -> list[FoundServer]:
        wanted = frozenset(KINDS if kinds is None else kinds)
        candidates: list[_Candidate] = []
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info.get("cmdline")
            if not cmdline:  # kernel threads, zombies, or not ours to read
                continue
            match = recognise(cmdline)
            if match is not None and match[0] in wanted:
                candidates.append(_Candidate(match[0], process, match[1], list(cmdline)))
        found = []
        for candidate in _merge(candidates):
            try:
                server = self._found(candidate)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue  # it exited while we looked
            if server is not None:
                found.append(server)
        self._forget_gone({c.process.pid for c in candidates})
        return _unique(found)

    def _found(self, candidate: _Candidate) -> FoundServer | None:
        kind, args = candidate.kind, candidate.args
        off = _metrics_off(kind, args, candidate.process)
        if off is not None:
            self._say_once(candidate.process.pid, f"{kind} server (pid {candidate.process.pid}) has no metrics "
                                                  f"endpoint: {off}; Vigil does not watch it")
            return None
        port, host, path = _configured(kind, args, candidate.process)
        listening = _listening(candidate.process)
        host, port = _choose(kind, port, host, listening)
        endpoint = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        owner = candidate.owner or candidate
        return FoundServer(kind, endpoint, path, owner.process.pid, " ".join(owner.cmdline))

    def _say_once(self, pid: int, message: str) -> None:
        with self._lock:
            if (pid, message) in self._said:
                return
            self._said.add((pid, message))
        self._log.info("%s", message)

    def _forget_gone(self, live: set[int]) -> None:
        with self._lock:
            self._said = {item for item in self._said if item[0] in live}


_SCANNER = Scanner()


def recognise(cmdline: Sequence[str]) -> tuple[str, list[str]] | None:
    """(kind, its arguments) when this command line runs an inference server, else None."""
    program, args = _program(cmdline)
    if program == "tritonserver":
        return "triton", args
    if program == "vllm" and args[:1] == ["serve"]:
        return "vllm", args[1:]
    if program == "vllm.entrypoints.openai.api_server":
        return "vllm", args
    if program == "sglang.launch_server":
        return "sglang", args
    if program == "sglang" and args[:1] == ["serve"]:  # sgl-project/sglang@16c8ff4f python/sglang/cli/main.py
        return "sglang", args[1:]
    if program in ("text-generation-router", "text-generation-launcher"):
        return "tgi", args
    if program == "mlserver" and args[:1] == ["start"]:
        return "mlserver", args[1:]
    if program == "llama-server":
        return "llamacpp", args
    return None


def _program(cmdline: Sequence[str]) -> tuple[str, list[str]]:
    """The program a command line runs and its arguments: a Python script's or module's name, not python's."""
    first = os.path.basename(cmdline[0])
    args = list(cmdline[1:])
    if not first.startswith("python"):
        return first, args
    # python [options] (-m module | script) args...
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "-m" and index + 1 < len(args):
            return args[index + 1], args[index + 2:]
        if arg.startswith("-m") and len(arg) > 2:
            return arg[2:], args[index + 1:]
        if arg in ("-c", "-"):
            return "", []
        if arg in ("-W", "-X", "-Q"):
            index += 2
            continue
        if arg.startswith("-"):
            index += 1
            continue
        return os.path.basename(arg), args[index + 1:]
    return "", []


def flag(args: Sequence[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value` (the last one given), else None."""
    value = None
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1:]
    return value


def _metrics_off(kind: str, args: Sequence[str], process: psutil.Process) -> str | None:
    """Why this server serves no metrics, from its command line (and llama.cpp's environment), else None."""
    if kind == "llamacpp" and "--metrics" not in args and not _llama_env_metrics(process):
        return "llama-server serves /metrics only with --metrics (or LLAMA_ARG_ENDPOINT_METRICS=1)"
    if kind == "sglang" and "--enable-metrics" not in args:
        return "SGLang serves /metrics only with --enable-metrics"
    if kind == "triton" and (flag(args, "--allow-metrics") or "true").lower() in ("false", "0", "off", "no"):
        return "tritonserver runs with --allow-metrics=false"
    return None


def _llama_env_metrics(process: psutil.Process) -> bool:
    """llama.cpp takes every flag from a LLAMA_ARG_* variable too (its Docker images are set up that way);
    an environment that may not be read counts as on, so that a scrape says what is wrong."""
    try:
        value = process.environ().get("LLAMA_ARG_ENDPOINT_METRICS", "")
    except psutil.AccessDenied:
        return True
    return value.lower() in ("1", "true", "on", "enabled")


def _configured(kind: str, args: Sequence[str], process: psutil.Process) -> tuple[int, str | None, str]:
    """The metrics port, address (None: any) and path this server's command line asks for."""
    if kind == "mlserver":
        return _mlserver_settings(args, process)
    port = _port(flag(args, _PORT_FLAG.get(kind, "--port")), _DEFAULT_PORT[kind])
    return port, flag(args, _HOST_FLAG.get(kind, "--host")), "/metrics"


def _mlserver_settings(args: Sequence[str], process: psutil.Process) -> tuple[int, str | None, str]:
    """MLServer's metrics port and path: `metrics_port` / `metrics_endpoint` in `<folder>/settings.json`."""
    port, path = _DEFAULT_PORT["mlserver"], "/metrics"
    folder = next((a for a in args if not a.startswith("-")), ".")
    try:
        if not os.path.isabs(folder):
            folder = os.path.join(process.cwd(), folder)
        with open(os.path.join(folder, "settings.json"), encoding="utf-8") as file:
            settings = json.load(file)
    except (OSError, ValueError, psutil.AccessDenied):
        return port, None, path
    if isinstance(settings, dict):
        port = _port(settings.get("metrics_port"), port)
        if isinstance(settings.get("metrics_endpoint"), str) and settings["metrics_endpoint"].startswith("/"):
            path = settings["metrics_endpoint"]
    return port, None, path


def _port(value: object, default: int) -> int:
    try:
        port = int(str(value))
    except ValueError:
        return default
    return port if 0 < port < 65536 else default


def _listening(process: psutil.Process) -> dict[int, str] | None:
    """The TCP ports this process listens on and their addresses; None when they may not be read."""
    try:
        connections = process.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    return {c.laddr.port: c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN and c.laddr}


def _choose(kind: str, port: int, host: str | None, listening: dict[int, str] | None) -> tuple[str, int]:
    """The address to scrape: the configured port where the process listens on it (or cannot be seen),
    else the one port a single-port server does listen on (set by a config file or the environment)."""
    if listening and port not in listening and kind not in _SEVERAL_PORTS and len(listening) == 1:
        port = next(iter(listening))
    if listening and port in listening:
        host = listening[port]
    return (_LOCAL if host is None or host in _WILDCARDS else host), port


def _merge(candidates: list[_Candidate]) -> list[_Candidate]:
    """One candidate per server: a process whose parent is a server of the same kind is part of it
    (a forked worker); a TGI router is found under its launcher's pid (the launcher is the server)."""
    by_pid = {c.process.pid: c for c in candidates}
    merged, launchers = [], set()
    for candidate in candidates:
        try:
            parent = by_pid.get(candidate.process.ppid())
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if parent is None or parent.kind != candidate.kind:
            merged.append(candidate)
        elif candidate.kind == "tgi" and _is_launcher(parent) and not _is_launcher(candidate):
            candidate.owner = parent
            launchers.add(parent.process.pid)
            merged.append(candidate)
    return [c for c in merged if c.process.pid not in launchers]


def _is_launcher(candidate: _Candidate) -> bool:
    return _program(candidate.cmdline)[0] == "text-generation-launcher"


def _unique(found: list[FoundServer]) -> list[FoundServer]:
    """One server per endpoint (the lowest pid: the first started), ordered by pid."""
    by_endpoint: dict[str, FoundServer] = {}
    for server in sorted(found, key=lambda s: s.pid):
        by_endpoint.setdefault(server.endpoint, server)
    return sorted(by_endpoint.values(), key=lambda s: s.pid)
