"""The `vigil` command: run | validate | components | status | version."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from agent import __version__, config as config_module
from agent.component import Kind
from agent.config import ConfigError, LogsTelemetryConfig, VigilConfig
from agent.default_config import default_config


def main(argv: list[str] | None = None) -> int:
    # One BLAS thread: the agent's statistics are small and a host serving models is busy, where
    # OpenBLAS's thread pool costs several times the work itself. Set before numpy is imported.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.func(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description="Vigil: an OpenTelemetry-style agent "
                                     "for hosts that serve ML models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the agent")
    run.add_argument("-c", "--config", help="YAML config file (default: a built-in config "
                     "that needs no backend)")
    run.set_defaults(func=_run)

    validate = sub.add_parser("validate", help="check a config file and exit")
    validate.add_argument("-c", "--config", required=True, help="YAML config file")
    validate.set_defaults(func=_validate)

    components = sub.add_parser("components", help="list the available component types")
    components.set_defaults(func=_components)

    from agent.ml.offline.cli import add_commands as add_offline_commands  # light: numpy loads when they run

    add_offline_commands(sub)  # vigil profile build|show, vigil analyze

    from agent.alerts.cli import add_commands as add_alerts_commands  # stdlib only: asks the running agent

    add_alerts_commands(sub)  # vigil alerts [silence|silences|expire]

    status = sub.add_parser("status", help="what the running agent is doing: pipelines, components, models")
    status.add_argument("-c", "--config", help="read the admin endpoint from this config file")
    status.add_argument("--endpoint", help="the admin endpoint, host:port (default: the config's "
                        "service.admin.endpoint, else 127.0.0.1:13133)")
    status.add_argument("--json", action="store_true", help="the admin API's answer as JSON, for scripts")
    status.set_defaults(func=_status)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_version)
    return parser


def _load(path: str | None) -> VigilConfig:
    if path is None:
        return config_module.from_dict(default_config(dict(os.environ)), "<built-in default>")
    return config_module.load(path)


def _run(args: argparse.Namespace) -> int:
    from agent import logs

    _limit_malloc_arenas()

    logs.setup(LogsTelemetryConfig())
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    logs.setup(config.service.telemetry.logs)
    for warning in config.warnings:
        logging.getLogger("vigil.config").warning("%s: %s", config.source, warning)
    from agent import service  # imported late: `vigil version` should not load grpc

    # A reload (SIGHUP, POST /-/reload) reads the same file again, or rebuilds the built-in default.
    return asyncio.run(service.run(config, loader=lambda: _load(args.config), configure_logs=True))


def _version(args: argparse.Namespace) -> int:
    print(f"vigil {__version__}")
    # The compiled wire reader is optional (built where pip found a C compiler); without it requests are
    # parsed and predictions read through protobuf's messages, at several times the CPU.
    try:
        import agent._otlpscan  # noqa: F401
        print("wire reader: compiled (agent/_otlpscan.c)")
    except ImportError:
        print("wire reader: not built (no C compiler when Vigil was installed); protobuf reads every request")
    try:
        import agent._otlpjson  # noqa: F401
        print("json writer: compiled (agent/_otlpjson.c)")
    except ImportError:
        print("json writer: not built (no C compiler when Vigil was installed); Python writes OTLP/JSON")
    return 0


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (MALLOC_ARENA_MAX), unless the environment sets it.

    glibc gives threads that allocate at once arenas of their own, up to 8 per core, each keeping
    freed memory: on a many-core host the worker and gRPC threads hold tens of MiB that way.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-8, arenas)  # M_ARENA_MAX; a libc other than glibc may not have mallopt
    except (OSError, AttributeError):
        pass


def _validate(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    for warning in config.warnings:
        print(f"{config.source}: warning: {warning}", file=sys.stderr)
    count = len(config.pipelines)
    print(f"{config.source}: valid ({count} pipeline{'s' if count != 1 else ''})")
    return 0


def _status(args: argparse.Namespace) -> int:
    from agent.admin import report

    endpoint = args.endpoint
    if endpoint is None and args.config is not None:
        try:
            endpoint = config_module.load(args.config).service.admin.endpoint
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
        if endpoint is None:
            print(f"{args.config}: service.admin.endpoint is off, so there is no status to ask", file=sys.stderr)
            return 1
    return report.main(endpoint or "127.0.0.1:13133", args.json)


def _components(_: argparse.Namespace) -> int:
    from agent import registry

    known = {kind: sorted(registry.factories(kind).items()) for kind in Kind}
    width = max(len(type_) for factories in known.values() for type_, _ in factories)
    for kind, factories in known.items():
        print(f"{kind.section}:")
        for type_, factory in factories:
            signals = ", ".join(s.value for s in sorted(factory.signals, key=lambda s: s.value))
            print(f"  {type_:<{width}}  {factory.description}" + (f" [{signals}]" if signals else ""))
    return 0
