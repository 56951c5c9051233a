"""A circuit breaker on model health: fall back to a simpler model while Vigil says the model is failing.

    breaker = ModelHealthBreaker("fraud", admin="http://127.0.0.1:13133")
    score = breaker.call(primary_model, fallback_rules, features)

The breaker asks Vigil's admin endpoint (`GET /api/v1/models/{name}/health`)
at most every `interval` seconds, never on every request, and remembers the
answer. `failing` opens the circuit (requests go to the fallback) and
`ok`/`degraded` close it again; `degraded` is logged, not acted on. When
Vigil cannot be reached the breaker keeps its last state (fail-static), since
an agent restart must not switch every app to its fallback.

Run it: `python examples/circuit_breaker/breaker.py --admin http://127.0.0.1:13133 --model fraud`
prints what it would do for a few requests.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, TypeVar

log = logging.getLogger("circuit_breaker")
T = TypeVar("T")


class ModelHealthBreaker:
    def __init__(self, model: str, admin: str = "http://127.0.0.1:13133", interval: float = 10.0,
                 timeout: float = 0.5, version: str | None = None) -> None:
        query = f"?{urllib.parse.urlencode({'version': version})}" if version else ""
        self._url = f"{admin.rstrip('/')}/api/v1/models/{urllib.parse.quote(model, safe='')}/health{query}"
        self._interval = interval
        self._timeout = timeout
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self.status = "ok"  # the last verdict Vigil gave
        self.reasons: list[str] = []

    @property
    def open(self) -> bool:
        """True while requests should go to the fallback."""
        self._refresh()
        return self.status == "failing"

    def call(self, primary: Callable[..., T], fallback: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return (fallback if self.open else primary)(*args, **kwargs)

    def _refresh(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._checked < self._interval:
                return
            self._checked = now
        try:
            with urllib.request.urlopen(self._url, timeout=self._timeout) as response:
                verdict = json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # Vigil has not seen the model yet: nothing says it is failing
                verdict = {"status": "ok", "reasons": ["Vigil has not seen this model yet"]}
            else:
                log.warning("model health: HTTP %d; keeping %s", exc.code, self.status)
                return
        except (OSError, ValueError) as exc:
            log.warning("model health unavailable (%s); keeping %s", exc, self.status)
            return
        status = verdict.get("status", "ok")
        if status != self.status:
            log.warning("model health %s -> %s: %s", self.status, status, "; ".join(verdict.get("reasons", [])))
        self.status, self.reasons = status, verdict.get("reasons", [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin", default="http://127.0.0.1:13133")
    parser.add_argument("--model", default="fraud")
    parser.add_argument("--requests", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def primary(amount: float) -> str:  # stands for the real model
        return "fraud" if amount > 900 else "ok"

    def fallback(amount: float) -> str:  # a rule the business trusts when the model does not hold up
        return "review" if amount > 500 else "ok"

    breaker = ModelHealthBreaker(args.model, args.admin, interval=1.0)
    for amount in [120.0, 640.0, 990.0][: args.requests]:
        answer = breaker.call(primary, fallback, amount)
        print(f"amount {amount:>6}: {answer:<6} (model health {breaker.status}"
              f"{': ' + '; '.join(breaker.reasons) if breaker.reasons else ''})")


if __name__ == "__main__":
    main()
