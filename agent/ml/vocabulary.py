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
# A prediction's embedding (the model's input vector, or one the app derives): a double array, mappable like
# every ml.* name; the ml processor's multivariate drift reads it (drift.multivariate.input: embedding).
EMBEDDING = "ml.embedding"
# The attributes read as arrays; any other list where a scalar belongs is unreadable.
ARRAYS = (PREDICTION_PROBABILITIES, MODEL_CLASSES, EMBEDDING)

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

# -- inference servers' metrics (the `inference` receiver; docs/inference-servers.md) -----------------
# The same names the ml processor writes where they mean the same, so its rules and views apply.
METRIC_PREDICTIONS = "ml.predictions"
METRIC_PREDICTION_ERRORS = "ml.prediction.errors"
METRIC_PREDICTION_DURATION = "ml.prediction.duration"
# The GenAI semantic conventions' server metrics (semantic-conventions@v1.41.1 docs/gen-ai/gen-ai-metrics.md).
GENAI_SERVER_REQUEST_DURATION = "gen_ai.server.request.duration"
GENAI_SERVER_TIME_TO_FIRST_TOKEN = "gen_ai.server.time_to_first_token"
GENAI_SERVER_TIME_PER_OUTPUT_TOKEN = "gen_ai.server.time_per_output_token"
# Their advised bucket boundaries (seconds).
GENAI_SERVER_REQUEST_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24,
                                         20.48, 40.96, 81.92)
GENAI_SERVER_TIME_TO_FIRST_TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                            1.0, 2.5, 5.0, 7.5, 10.0)
GENAI_SERVER_TIME_PER_OUTPUT_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
                                              1.0, 2.5)
TOKEN_INPUT = "input"  # gen_ai.token.type
TOKEN_OUTPUT = "output"
# Vigil's own, where the conventions have none.
SERVER_TOKENS = "ml.server.tokens"  # by gen_ai.token.type
SERVER_QUEUE_DURATION = "ml.server.queue.duration"
SERVER_FIRST_RESPONSE_DURATION = "ml.server.first_response.duration"
SERVER_BATCH_SIZE = "ml.server.batch.size"
SERVER_REQUESTS_PENDING = "ml.server.requests.pending"
SERVER_REQUESTS_RUNNING = "ml.server.requests.running"
SERVER_KV_CACHE_USAGE = "ml.server.kv_cache.usage"
SERVER_PREEMPTIONS = "ml.server.preemptions"
SERVER_UP = "ml.server.up"
SERVER_GPU_MEMORY = "ml.server.gpu.memory.usage"
SERVER_GPU_UTILIZATION = "ml.server.gpu.utilization"
SERVER_GPU_ENERGY = "ml.server.gpu.energy"

# -- inference servers' own spans ----------------------------------------------------------------------------
# vLLM's and SGLang's `llm_request` SERVER span (vllm-project/vllm@03b8a674 vllm/tracing.py SpanAttributes;
# SGLang sends the same names): latencies in seconds. A span with e2e or time to first token is a server
# request: it counts in the gen_ai.server.* metrics, never as a client call.
GENAI_LATENCY_E2E = "gen_ai.latency.e2e"
GENAI_LATENCY_TTFT = "gen_ai.latency.time_to_first_token"
GENAI_LATENCY_QUEUE = "gen_ai.latency.time_in_queue"
SERVER_CALL_MARKS = (GENAI_LATENCY_E2E, GENAI_LATENCY_TTFT)
# Triton's OpenTelemetry trace mode: the span named after the model carries these
# (triton-inference-server/server@v2.71.0 src/tracer.cc); an item without a usable ml.model.name takes its
# model and version from them.
TRITON_MODEL_NAME = "triton.model_name"
TRITON_MODEL_VERSION = "triton.model_version"  # an int
# The metrics these spans give are the inference receiver's names above (GENAI_SERVER_*, SERVER_QUEUE_DURATION).

# -- the inference proxy's GenAI spans (agent/receivers/inference_proxy/openai.py) --------------------------
# vLLM's request-parameter names (vllm-project/vllm@03b8a674 vllm/tracing.py), by the OpenAI request's field.
PROXY_REQUEST_PARAMETERS = {"max_tokens": "gen_ai.request.max_tokens", "temperature": "gen_ai.request.temperature",
                            "top_p": "gen_ai.request.top_p", "n": "gen_ai.request.n"}
# The GenAI conventions' names (semantic-conventions@v1.41.1 docs/gen-ai/gen-ai-spans.md); vLLM has none.
PROXY_RESPONSE_ID = "gen_ai.response.id"
PROXY_FINISH_REASONS = "gen_ai.response.finish_reasons"  # a string array, one per choice

# -- inference payloads (agent/receivers/payloads: V2 / V1 request and response bodies) ------------------
# One vector input a row (an [N, D] tensor with D >= embedding_min_width) is the row's EMBEDDING.
# The resource of a prediction the KServe logger logged: the semantic conventions' namespace, and KServe's
# component (predictor, transformer, explainer) and endpoint (kserve/kserve pkg/logger/worker.go).
K8S_NAMESPACE = "k8s.namespace.name"
KSERVE_COMPONENT = "kserve.component"
KSERVE_ENDPOINT = "kserve.endpoint"

# -- multivariate drift (agent/ml/multivariate.py; the ml processor's drift.multivariate) ----------------------
# Per model version and window: the statistic (MMD² for mmd, the mean reconstruction error for
# reconstruction; by DRIFT_METHOD) and whether the window drifted, the features or embedding taken together.
MODEL_MULTIVARIATE_DRIFT = "ml.model.drift.multivariate"
MODEL_MULTIVARIATE_DRIFTED = "ml.model.multivariate.drifted"
MULTIVARIATE_INPUTS = ("embedding", "features")  # what a model's multivariate drift reads
