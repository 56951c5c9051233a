"""The `ml` processor's settings: what it learns, when windows close, what it bounds and exports.

numpy-free, so a config is checked without loading the statistics. The drift
decision's settings (`DriftConfig`) are the statistics library's, shared with
`vigil analyze`: they live in `agent/ml/config.py`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from agent.configmodel import Duration, StrictModel
from agent.ml.buckets import CONFIDENCE_BOUNDS, DURATION_BOUNDS, check_bounds
from agent.ml.config import DriftConfig


class ReferenceConfig(StrictModel):
    # Learn the reference from each model version's first `warmup` predictions ...
    warmup: int = Field(1000, ge=10)
    # ... unless a profile file (`vigil profile build`) names the model (and version, or any version).
    profiles: list[str] = []


class WindowConfig(StrictModel):
    size: int = Field(1000, ge=10)
    min_size: int = Field(100, ge=1)
    max_age: Duration = 300.0

    @model_validator(mode="after")
    def _check(self) -> WindowConfig:
        if self.min_size > self.size:
            raise ValueError("min_size must not exceed size")
        if self.max_age <= 0:
            raise ValueError("max_age must be > 0")
        return self


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be > 0")
    return seconds


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


class LimitsConfig(StrictModel):
    """Bounds on what the processor tracks, so a misbehaving app cannot grow its memory without end."""

    max_models: int = Field(20, ge=1)
    max_versions: int = Field(5, ge=1)  # live versions per model
    max_features: int = Field(100, ge=1)  # per model version
    max_classes: int = Field(50, ge=1)  # predicted classes counted by name per model version; then _OTHER
    max_error_types: int = Field(20, ge=1)  # error.type values per model version; then _OTHER
    # A model version with no prediction for this long gives its slot to a new one at the limits (its
    # learned reference stays on disk): one burst of junk names or five old deploys lock nothing out.
    expire_after: PositiveDuration = 3600.0


Buckets = Annotated[list[float], AfterValidator(check_bounds)]


class ConfidenceConfig(StrictModel):
    # Bounds of the `ml.prediction.confidence` histogram: fine near 1, where a good model's predictions sit.
    buckets: Buckets = list(CONFIDENCE_BOUNDS)
    low_threshold: float = Field(0.6, gt=0, le=1)  # ml.prediction.low_confidence.ratio: the share below it


class LatencyConfig(StrictModel):
    # Bounds of `ml.prediction.duration`, seconds: about x1.5 apart, so p50/p95/p99 read from the
    # histogram are within a third of the true value.
    buckets: Buckets = list(DURATION_BOUNDS)


class LabelWindowConfig(WindowConfig):
    max_age: Duration = 3600.0  # labels trickle in: a longer wait than prediction windows


class LabelsConfig(StrictModel):
    """Delayed ground truth: predictions with an id wait for their label."""

    ttl: PositiveDuration = 7 * 24 * 3600.0  # how long a prediction waits for its label
    max_pending: int = Field(100_000, ge=1)  # predictions waiting, at most (the oldest expire first)
    wait: PositiveDuration = 300.0  # how long a label that came first waits for its prediction
    save_interval: PositiveDuration = 10.0  # how often what waits is written to state_dir (and at shutdown)
    window: LabelWindowConfig = LabelWindowConfig()  # windows of joined labels, for realised metrics


Metric = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse", "mape"]


class PerformanceConfig(StrictModel):
    # A window is degraded when a watched metric is more than `sigma` standard deviations (its
    # sampling spread on reference windows of the same size) worse than on the reference.
    sigma: float = Field(3.0, gt=0)
    metrics: list[Metric] = ["accuracy", "roc_auc", "mae"]  # those that apply to the model are watched


class CanaryConfig(StrictModel):
    baselines: dict[str, str] = {}  # model -> its baseline version (default: the version seen first)
    min_predictions: int = Field(100, ge=1)  # per version in the interval, to be compared


class GenAiConfig(StrictModel):
    enabled: bool = True
    max_series: int = Field(200, ge=1)  # (service, operation, provider, models, error) combinations


class ExemplarsConfig(StrictModel):
    """Exemplars on the derived metrics: the trace and span of telling predictions (the slowest, the
    lowest-confidence, the furthest out of the reference's range, those that failed a data-health check)."""

    enabled: bool = True  # off: no exemplar on any point and none in the status
    max_per_point: int = Field(4, ge=1, le=64)  # per point and kind of the status; one per histogram bucket


MultivariateMethod = Literal["off", "mmd", "reconstruction"]


class MultivariateConfig(StrictModel):
    """Drift of a model's embeddings or numeric features taken together (docs/user-guide.md, "Reading drift").

    Off by default: it reads what an app sends only when asked (an `ml.embedding` of hundreds of
    numbers per span), keeps up to 8 MB of vectors per model version's window and costs tens of
    milliseconds of CPU per mmd window."""

    method: MultivariateMethod = "off"  # for every model ...
    models: dict[str, MultivariateMethod] = {}  # ... unless named here: {fraud: reconstruction, search: mmd}
    # embedding: the `ml.embedding` double array of each prediction; features: the numeric features jointly.
    input: Literal["embedding", "features"] = "embedding"
    features: list[str] = []  # with input features, those taken together (default: every numeric feature)
    max_dims: int = Field(1024, ge=2)  # wider embeddings are not read (they count as missing)
    sample: int = Field(2000, ge=100)  # reference rows mmd keeps (its cost per window grows with them)


class ProcessorDriftConfig(DriftConfig):
    multivariate: MultivariateConfig = MultivariateConfig()


class MlProcessorConfig(StrictModel):
    reference: ReferenceConfig = ReferenceConfig()
    window: WindowConfig = WindowConfig()
    drift: ProcessorDriftConfig = ProcessorDriftConfig()
    # Other conventions onto `ml.*`: {ml.model.name: arize.model_id, "ml.feature.*": "features.*"}.
    attributes: dict[str, str] = {}
    # Column kinds, where inference from the reference would guess wrong.
    categorical: list[str] = []
    numeric: list[str] = []
    limits: LimitsConfig = LimitsConfig()
    # How often traffic, confidence, canary, label and GenAI metrics are written.
    interval: PositiveDuration = 60.0
    confidence: ConfidenceConfig = ConfidenceConfig()
    latency: LatencyConfig = LatencyConfig()
    labels: LabelsConfig = LabelsConfig()
    performance: PerformanceConfig = PerformanceConfig()
    canary: CanaryConfig = CanaryConfig()
    genai: GenAiConfig = GenAiConfig()
    exemplars: ExemplarsConfig = ExemplarsConfig()
