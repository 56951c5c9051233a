"""The drift decision's settings: the statistics, their thresholds, the correction across columns.

The `ml` processor's config and `vigil analyze` both take them; numpy-free, so a
config is checked without loading numpy.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.configmodel import StrictModel
from agent.ml import statistics

# The statistics a drift decision may use, from the statistics' table.
NumericMethod = Literal[statistics.NUMERIC_METHODS]
CategoricalMethod = Literal[statistics.CATEGORICAL_METHODS]


class DriftConfig(StrictModel):
    alpha: float = Field(0.05, gt=0, lt=1)
    correction: Literal["bonferroni", "benjamini_hochberg"] = "bonferroni"
    numeric_method: NumericMethod = statistics.DEFAULT_METHODS[statistics.NUMERIC]
    numeric_threshold: float = Field(0.1, ge=0)
    categorical_method: CategoricalMethod = statistics.DEFAULT_METHODS[statistics.CATEGORICAL]
    categorical_threshold: float = Field(0.1, ge=0)
    drift_share: float = Field(0.5, gt=0, le=1)
    # Fewer usable values than this in a window: the column is not tested.
    min_values: int = Field(30, ge=1)
    sentinels: list[float | str] = [-999]
