"""Every name and limit of Vigil's prediction convention, in one numpy-free module.

The attributes an app puts on a prediction (`ml.*`, `gen_ai.*`), the attributes
of the metrics the `ml` processor derives, the health kinds, and the limits
every reader applies. Readers, the processor, the offline tools and the C
scanner's configuration all take them from here; docs/DESIGN.md explains each.
"""

from __future__ import annotations

# -- on a prediction (a span or log record) ---------------------------------------------------------
MODEL_NAME = "ml.model.name"  # marks an item as a prediction, or a label for one
MODEL_VERSION = "ml.model.version"
MODEL_CLASSES = "ml.model.classes"
PREDICTION_ID = "ml.prediction.id"
PREDICTION_LABEL = "ml.prediction.label"
PREDICTION_SCORE = "ml.prediction.score"
PREDICTION_CONFIDENCE = "ml.prediction.confidence"
PREDICTION_VALUE = "ml.prediction.value"
PREDICTION_PROBABILITIES = "ml.prediction.probabilities"
PREDICTION_DURATION = "ml.prediction.duration"  # seconds, on a log record
TRUE_LABEL = "ml.label"
FEATURE_PREFIX = "ml.feature."
ML_PREFIX = "ml."
ERROR_TYPE = "error.type"  # the semantic conventions' attribute
EXCEPTION_TYPE = "exception.type"
EXCEPTION_EVENT = "exception"  # the span event whose exception.type types a failure
SERVICE_NAME = "service.name"
# The prediction outputs, compared like features, by these names.
OUTPUTS = (PREDICTION_LABEL, PREDICTION_SCORE, PREDICTION_CONFIDENCE, PREDICTION_VALUE)
# The attributes read as arrays; any other list where a scalar belongs is unreadable.
ARRAYS = (PREDICTION_PROBABILITIES, MODEL_CLASSES)

# -- GenAI semantic conventions (and the older names OpenLLMetry sends) -------------------------------
GENAI_PREFIX = "gen_ai."
GENAI_OPERATION = ("gen_ai.operation.name",)
GENAI_PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
GENAI_REQUEST_MODEL = ("gen_ai.request.model",)
GENAI_RESPONSE_MODEL = ("gen_ai.response.model",)
GENAI_INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
GENAI_OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
GENAI_TOKEN_TYPE = "gen_ai.token.type"

# -- on the derived metrics ----------------------------------------------------------------------------
FEATURE_NAME = "ml.feature.name"
DRIFT_METHOD = "ml.drift.method"
CLASS = "ml.class"
AVERAGE = "ml.average"
PERFORMANCE_SOURCE = "ml.performance.source"
PERFORMANCE_METRIC = "ml.performance.metric"
BASELINE_VERSION = "ml.model.baseline_version"
REASON = "reason"

# Data health, per column, in report order (agent/ml/health.py computes them).
HEALTH_KINDS = ("missing", "sentinel", "type_mismatch", "out_of_range", "unseen_category")

# -- limits ----------------------------------------------------------------------------------------------
# Longer strings are cut: a feature value is a category, not a document.
MAX_STRING_LENGTH = 256
OTHER_ERROR = "_OTHER"  # the semantic conventions' error.type when nothing more is known
# The scope of the log records the `alerts` processor writes: they name a model but are not predictions.
ALERTS_SCOPE = "vigil.alerts"
