"""Settings for the fuzz suite, and a count of the cases it generated.

Every fuzz test runs a fixed number of generated cases (`cases(n)`) under the
`ci` profile: derandomized, so CI sees the same cases every run and a failure
reproduces; no example database is written. `HYPOTHESIS_PROFILE=explore` draws
new cases each run, ten times as many, for a longer look on a developer's machine.
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture]
settings.register_profile("ci", deadline=None, database=None, derandomize=True, suppress_health_check=_SLOW_OK,
                          print_blob=True)
settings.register_profile("explore", deadline=None, database=None, suppress_health_check=_SLOW_OK)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)

GENERATED: Counter[str] = Counter()


def cases(n: int) -> settings:
    """`n` generated cases for this test (ten times that when exploring)."""
    return settings(max_examples=n * (10 if PROFILE == "explore" else 1))


def count(test: str) -> None:
    GENERATED[test] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    if GENERATED:
        terminalreporter.write_line(f"fuzz: {sum(GENERATED.values())} generated cases over "
                                    f"{len(GENERATED)} decode paths ({PROFILE} profile)")
