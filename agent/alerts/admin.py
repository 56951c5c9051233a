"""The `alerts` processor's routes on the agent's admin endpoint (what `vigil alerts` calls).

    GET    {prefix}                     pending and firing alerts (?state=firing|pending)
    GET    {prefix}/silences            silences (active, pending, and those expired within the hour)
    POST   {prefix}/silences            add one: {"matchers": ["ml.model.name=\"fraud\""], "duration": "2h",
                                        "comment": "...", "created_by": "..."} (or "ends_at": epoch seconds)
    DELETE {prefix}/silences/{id}       expire one

The prefix is `/api/v1/alerts` for the processor `alerts`, and
`/api/v1/alerts/NAME` for `alerts/NAME` (so NAME cannot be `silences`).
Answers are JSON; a bad request is a 400 with {"error": "..."}.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Protocol

from aiohttp import web

from agent.alerts.matchers import Matcher
from agent.alerts.silences import Silence, Silences
from agent.configmodel import parse_duration


class AlertsAdmin(Protocol):
    """What these routes need of the processor's engine (`AlertsEngine`)."""

    id: str
    silences: Silences

    def now(self) -> float: ...

    def alerts(self, state: str | None = None) -> list[dict[str, Any]]: ...

    async def add_silence(self, matchers: tuple[Matcher, ...], ends_at: float, starts_at: float | None = None,
                          created_by: str = "", comment: str = "") -> Silence: ...

    async def expire_silence(self, silence_id: str) -> bool: ...


def prefix(name: str) -> str:
    return f"/api/v1/alerts/{name}" if name else "/api/v1/alerts"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, indent=None))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def routes(engine: AlertsAdmin, base: str) -> list[tuple[str, str, Callable[..., Any]]]:
    async def list_alerts(request: web.Request) -> web.Response:
        state = request.query.get("state") or None
        if state not in (None, "firing", "pending"):
            return _error(400, "state is firing or pending")
        return _json({"processor": engine.id, "now": engine.now(), "alerts": engine.alerts(state)})

    async def list_silences(request: web.Request) -> web.Response:
        now = engine.now()
        return _json({"processor": engine.id, "now": now,
                      "silences": [s.to_json(now) for s in engine.silences.all()]})

    async def add_silence(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body must be JSON")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        try:
            raw = body.get("matchers")
            if not isinstance(raw, list) or not raw:
                raise ValueError("matchers: a non-empty list of strings like 'name=\"value\"'")
            matchers = tuple(Matcher.parse(m) for m in raw)
            now = engine.now()
            starts_at = float(body["starts_at"]) if body.get("starts_at") is not None else now
            if body.get("ends_at") is not None:
                ends_at = float(body["ends_at"])
            elif body.get("duration") is not None:
                duration = parse_duration(body["duration"])
                if duration <= 0:
                    raise ValueError("duration must be > 0")
                ends_at = starts_at + duration
            else:
                raise ValueError("give a duration (e.g. \"2h\") or ends_at (epoch seconds)")
            silence = await engine.add_silence(matchers, ends_at, starts_at, str(body.get("created_by", ""))[:200],
                                               str(body.get("comment", ""))[:1000])
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        return _json({"silence": silence.to_json(engine.now())}, 201)

    async def expire_silence(request: web.Request) -> web.Response:
        silence_id = request.match_info["id"]
        if not await engine.expire_silence(silence_id):
            return _error(404, f"no active silence {silence_id!r}")
        return _json({"expired": silence_id})

    return [
        ("GET", base, list_alerts),
        ("GET", f"{base}/silences", list_silences),
        ("POST", f"{base}/silences", add_silence),
        ("DELETE", f"{base}/silences/{{id}}", expire_silence),
    ]
