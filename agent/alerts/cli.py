"""`vigil alerts`: what the running agent's alerts processor says, through its admin endpoint.

    vigil alerts                                   firing and pending alerts
    vigil alerts silence 'ml.model.name="fraud"' --duration 2h --comment "retraining"
    vigil alerts silences                          silences, active and recent
    vigil alerts expire ID                         end a silence now

The endpoint is `--endpoint`, else `service.admin.endpoint` of the config given
with `-c`, else $VIGIL_ADMIN_ENDPOINT, else 127.0.0.1:13133. Only the standard
library is used (urllib), so the command starts fast and needs nothing running
but the agent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_ENDPOINT = "127.0.0.1:13133"


def _options(inherited: bool) -> argparse.ArgumentParser:
    """The options every `vigil alerts` command takes. A subcommand's copy has no defaults of its own
    (`inherited`), so `vigil alerts --endpoint X silences` keeps X."""
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if inherited else value

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", default=default(None),
                        help=f"the agent's admin endpoint, host:port (default: from -c, $VIGIL_ADMIN_ENDPOINT, "
                             f"or {DEFAULT_ENDPOINT})")
    common.add_argument("-c", "--config", default=default(None), help="read service.admin.endpoint from this config")
    common.add_argument("--processor", default=default("alerts"), help="the alerts processor id (default: alerts)")
    common.add_argument("--format", choices=("table", "json"), default=default("table"))
    common.add_argument("--timeout", type=float, default=default(5.0), help="seconds to wait for the agent")
    return common


def add_commands(sub: argparse._SubParsersAction) -> None:
    common, inherited = _options(False), _options(True)
    alerts = sub.add_parser("alerts", parents=[common], help="list firing and pending alerts; manage silences",
                            description="Firing and pending alerts of the running agent, and silences.")
    alerts.add_argument("--state", choices=("firing", "pending"), help="only alerts in this state")
    alerts.set_defaults(func=_list)
    commands = alerts.add_subparsers(dest="alerts_command", metavar="COMMAND")

    silence = commands.add_parser("silence", parents=[inherited], help="silence alerts matching all MATCHERs")
    silence.add_argument("matchers", nargs="+", metavar="MATCHER",
                         help="label matcher: name=\"value\", name!=\"value\", name=~\"regex\", name!~\"regex\"")
    silence.add_argument("--duration", default="1h", help="how long (default 1h): 30m, 2h, 1h30m")
    silence.add_argument("--comment", default="", help="why")
    silence.add_argument("--author", default=None, help="who (default: the user running the command)")
    silence.set_defaults(func=_silence)

    silences = commands.add_parser("silences", parents=[inherited], help="list silences")
    silences.set_defaults(func=_silences)

    expire = commands.add_parser("expire", parents=[inherited], help="end a silence now")
    expire.add_argument("id", help="the silence's id (from `vigil alerts silences`)")
    expire.set_defaults(func=_expire)


# --- talking to the agent ------------------------------------------------------------------------


class _Failed(Exception):
    pass


def _endpoint(args: argparse.Namespace) -> str:
    endpoint = args.endpoint
    if not endpoint and args.config:
        from agent import config as config_module

        try:
            loaded = config_module.load(args.config)
        except config_module.ConfigError as exc:
            raise _Failed(str(exc)) from None
        admin = getattr(loaded.service, "admin", None)
        endpoint = getattr(admin, "endpoint", None)
        if not endpoint:
            raise _Failed(f"{args.config}: service.admin.endpoint is off, so the agent cannot be asked")
    endpoint = endpoint or os.environ.get("VIGIL_ADMIN_ENDPOINT") or DEFAULT_ENDPOINT
    if "://" in endpoint:
        return endpoint.rstrip("/")
    host, _, port = endpoint.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def _base(args: argparse.Namespace) -> str:
    _, _, name = args.processor.partition("/")
    return f"/api/v1/alerts/{urllib.parse.quote(name, safe='')}" if name else "/api/v1/alerts"


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url = _endpoint(args) + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", "")
        except (ValueError, AttributeError):
            message = ""
        if exc.code == 404 and not message:
            message = (f"the agent has no alerts processor {args.processor!r} (or no admin API): "
                       f"is it in a pipeline of the running config?")
        raise _Failed(f"{method} {path}: HTTP {exc.code}" + (f": {message}" if message else "")) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Failed(f"cannot reach the agent's admin endpoint at {_endpoint(args)} ({reason}): is "
                      f"`vigil run` running with service.admin.endpoint there?") from None


def _run(args: argparse.Namespace, action) -> int:
    try:
        return action()
    except _Failed as exc:
        print(f"vigil alerts: {exc}", file=sys.stderr)
        return 1


# --- the commands -----------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    def action() -> int:
        query = f"?state={args.state}" if args.state else ""
        answer = _call(args, "GET", _base(args) + query)
        if args.format == "json":
            print(json.dumps(answer, indent=2))
            return 0
        alerts, now = answer.get("alerts", []), answer.get("now")
        if not alerts:
            print("no firing or pending alerts" if not args.state else f"no {args.state} alerts")
            return 0
        rows = [("STATE", "SEVERITY", "ALERT", "SINCE", "VALUE", "LABELS")]
        for alert in alerts:
            since = alert.get("fired_at") if alert["state"] == "firing" else alert.get("active_since")
            labels = " ".join(f"{k}={v}" for k, v in sorted(alert["labels"].items())
                              if k not in ("alertname", "severity"))
            if alert.get("silenced_by"):
                labels += " [silenced]"
            value = alert.get("value")
            rows.append((alert["state"], alert["labels"].get("severity", ""), alert["rule"], _ago(since, now),
                         "" if value is None else f"{value:.4g}", labels))
        _table(rows)
        return 0

    return _run(args, action)


def _silence(args: argparse.Namespace) -> int:
    def action() -> int:
        author = args.author if args.author is not None else _user()
        answer = _call(args, "POST", _base(args) + "/silences",
                       {"matchers": args.matchers, "duration": args.duration, "comment": args.comment,
                        "created_by": author})
        silence = answer["silence"]
        if args.format == "json":
            print(json.dumps(silence, indent=2))
        else:
            print(f"silence {silence['id']} until {_time(silence['ends_at'])}")
        return 0

    return _run(args, action)


def _silences(args: argparse.Namespace) -> int:
    def action() -> int:
        answer = _call(args, "GET", _base(args) + "/silences")
        if args.format == "json":
            print(json.dumps(answer, indent=2))
            return 0
        silences = answer.get("silences", [])
        if not silences:
            print("no silences")
            return 0
        rows = [("ID", "STATE", "ENDS", "MATCHERS", "BY", "COMMENT")]
        for s in silences:
            matchers = " ".join(f"{m['name']}{m['op']}{json.dumps(m['value'])}" for m in s["matchers"])
            rows.append((s["id"], s.get("state", ""), _time(s["ends_at"]), matchers, s.get("created_by", ""),
                         s.get("comment", "")))
        _table(rows)
        return 0

    return _run(args, action)


def _expire(args: argparse.Namespace) -> int:
    def action() -> int:
        _call(args, "DELETE", _base(args) + f"/silences/{urllib.parse.quote(args.id, safe='')}")
        print(f"silence {args.id} expired")
        return 0

    return _run(args, action)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(seconds: float | None, now: float | None) -> str:
    if seconds is None:
        return "-"
    if now is None:
        return _time(seconds)
    elapsed = max(int(now - seconds), 0)
    hours, rest = divmod(elapsed, 3600)
    text = f"{hours}h{rest // 60:02d}m" if hours else (f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s")
    return f"{text} ago"


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
