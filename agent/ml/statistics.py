"""The drift statistics by name, in one numpy-free table.

A row says which column kinds a statistic is computed for, whether it is the
kind's test (it comes with a p-value) and its heading in `vigil analyze`'s
table. The drift tests (`agent.ml.drift`), the methods a config may choose
(`agent.ml.config`) and the offline reports read this table; the function that
computes each statistic is bound to its row in `agent.ml.stats`, where numpy
is imported. A new statistic is a row here and a function there.
"""

from __future__ import annotations

from dataclasses import dataclass

# The column kinds of a profile (agent.ml.profile takes them from here).
NUMERIC = "numeric"
CATEGORICAL = "categorical"
KINDS = (NUMERIC, CATEGORICAL)


@dataclass(frozen=True)
class Statistic:
    name: str  # in reports, in the config's numeric_method / categorical_method, in ml.drift.method
    kinds: tuple[str, ...]  # the column kinds it is computed for
    heading: str  # its column in `vigil analyze`'s table
    # The kind's significance test: its p-value is the column's; chosen as the method, significance
    # alone decides (an effect size must also pass its threshold).
    test: bool = False


# In report order: a column's statistics, the table's columns.
STATISTICS = (
    Statistic("ks", (NUMERIC,), "ks", test=True),
    Statistic("chi2", (CATEGORICAL,), "chi2", test=True),
    Statistic("psi", (NUMERIC, CATEGORICAL), "psi"),
    Statistic("wasserstein_normed", (NUMERIC,), "wasserstein"),
    Statistic("jensen_shannon", (NUMERIC, CATEGORICAL), "jensen_sh"),
)
BY_NAME = {s.name: s for s in STATISTICS}
# The statistic a drift decision uses unless the config names another.
DEFAULT_METHODS = {NUMERIC: "wasserstein_normed", CATEGORICAL: "jensen_shannon"}


def of_kind(kind: str) -> tuple[str, ...]:
    """The names of the statistics a column of `kind` reports, in report order."""
    return tuple(s.name for s in STATISTICS if kind in s.kinds)


def methods(kind: str) -> tuple[str, ...]:
    """The statistics a drift decision on `kind` columns may use: the default, the other effect
    sizes, then the test (the order the config reference lists them in)."""
    default = DEFAULT_METHODS[kind]
    others = [BY_NAME[name] for name in of_kind(kind) if name != default]
    return (default, *(s.name for s in others if not s.test), *(s.name for s in others if s.test))


NUMERIC_METHODS = methods(NUMERIC)
CATEGORICAL_METHODS = methods(CATEGORICAL)
