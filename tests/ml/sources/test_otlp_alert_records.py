"""Alert notices in a logs pipeline carry a model's labels; the ml processor must not count them."""

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from agent.attributes import set_any_value
from agent.ml.sources.otlp import Extractor
from agent.ml.vocabulary import ALERTS_SCOPE
from agent.signals import Batch, Signal


def _logs(scope_name: str) -> Batch:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    scope.scope.name = scope_name
    record = scope.log_records.add()
    for key, value in {"ml.model.name": "fraud", "ml.model.version": "3", "ml.feature.amount": 1.5}.items():
        set_any_value(record.attributes.add(key=key).value, value)
    return Batch(Signal.LOGS, request)


def test_alert_state_changes_are_not_predictions():
    assert Extractor().extract(_logs(ALERTS_SCOPE)) == []


def test_the_same_record_from_an_app_is_a_prediction():
    [found] = Extractor().extract(_logs("app"))
    assert (found.model, found.version, found.rows) == ("fraud", "3", 1)
