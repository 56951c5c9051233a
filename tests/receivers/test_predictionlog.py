"""The `predictionlog` receiver: field mapping, tailing through rotation and truncation, positions
kept across restarts, malformed lines, refusals, and the ml processor reading what it emits."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from agent.attributes import as_dict
from agent.component import ComponentId, Settings
from agent.config import ConfigError, from_dict
from agent.errors import RefusedError
from agent.receivers.predictionlog import PredictionLogReceiver, PredictionLogReceiverConfig
from agent.receivers.predictionlog.mapper import _time_ns
from agent.receivers.predictionlog.tailer import Tailer
from agent.signals import Signal
from agent.telemetry import SelfTelemetry
from tests.conftest import async_wait_for, read_json_lines, running_vigil
from tests.sink import InMemorySink

LOG = logging.getLogger("test.predictionlog")

ISSUE_RECORD = {"timestamp": "2024-05-01T12:00:00Z", "model_version": "v1.0",
                "input": {"features": [1, 2, 3, 4]},
                "prediction": {"class": 0, "confidence": 0.95}, "latency_ms": 12.5}


def _config(tmp_path: Path, **overrides) -> PredictionLogReceiverConfig:
    values = {"include": [str(tmp_path / "*.jsonl")], "model_name": "iris", "start_at": "beginning"}
    values.update(overrides)
    return PredictionLogReceiverConfig.model_validate(values)


def _write(path: Path, *records, mode: str = "a") -> None:
    with open(path, mode) as out:
        for r in records:
            out.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def _records(poll) -> list[dict]:
    """The attributes of every record a poll built."""
    if poll.request is None:
        return []
    return [as_dict(r.attributes) for rl in poll.request.resource_logs for sl in rl.scope_logs
            for r in sl.log_records]


def _take(tailer: Tailer) -> list[dict]:
    """Poll until caught up, committing as if the pipelines accepted everything."""
    out = []
    while True:
        poll = tailer.poll()
        out += _records(poll)
        tailer.commit(poll.progress)
        if not poll.more:
            return out


# --- mapping ---------------------------------------------------------------------


def test_the_issue_record_maps_onto_the_ml_convention(tmp_path):
    _write(tmp_path / "p.jsonl", ISSUE_RECORD)
    tailer = Tailer(_config(tmp_path), None, LOG)
    poll = tailer.poll()
    [attrs] = _records(poll)
    assert attrs == {
        "ml.model.name": "iris", "ml.model.version": "v1.0",
        "ml.feature.f0": 1, "ml.feature.f1": 2, "ml.feature.f2": 3, "ml.feature.f3": 4,
        "ml.prediction.label": "0", "ml.prediction.confidence": 0.95,
        "ml.prediction.duration": pytest.approx(0.0125),
        "log.file.name": "p.jsonl", "log.file.path": str(tmp_path / "p.jsonl"),
    }
    record = poll.request.resource_logs[0].scope_logs[0].log_records[0]
    assert record.time_unix_nano == 1714564800 * 10**9
    assert record.severity_text == "INFO"
    assert json.loads(record.body.string_value) == ISSUE_RECORD


def test_feature_names_dict_features_ids_truth_errors_and_extra_attributes(tmp_path):
    config = _config(tmp_path, feature_names=["sepal_length", "sepal_width"],
                     attributes={"user.region": "context.region"}, resource={"service.name": "iris-api"})
    _write(tmp_path / "p.jsonl",
           {"model_name": "other", "request_id": "r1", "input": {"features": [5.1, 3.5, 1.4]},
            "prediction": {"label": "setosa", "probabilities": [0.9, 0.05, 0.05],
                           "classes": ["setosa", "versicolor", "virginica"]},
            "context": {"region": "eu"}},
           {"request_id": "r2", "features": {"amount": 12.5, "country": "FR", "age": None, "tags": ["a"]},
            "prediction": 1},
           {"request_id": "r1", "label": 0},
           {"request_id": "r3", "features": {"amount": 3}, "error": "ValueError"})
    tailer = Tailer(config, None, LOG)
    poll = tailer.poll()
    first, second, truth, failed = _records(poll)
    assert first["ml.model.name"] == "other" and first["ml.prediction.id"] == "r1"
    assert (first["ml.feature.sepal_length"], first["ml.feature.sepal_width"], first["ml.feature.f2"]) == (
        5.1, 3.5, 1.4)
    assert first["ml.prediction.label"] == "setosa"
    assert first["ml.prediction.probabilities"] == [0.9, 0.05, 0.05]
    assert first["ml.model.classes"] == ["setosa", "versicolor", "virginica"]
    assert first["user.region"] == "eu"
    # A null feature is missing (left out); a list stays a list, for the type-mismatch count.
    assert second["ml.feature.amount"] == 12.5 and second["ml.feature.country"] == "FR"
    assert "ml.feature.age" not in second and second["ml.feature.tags"] == ["a"]
    assert second["ml.prediction.label"] == "1"
    assert truth == {"ml.model.name": "iris", "ml.prediction.id": "r1", "ml.label": "0",
                     "log.file.name": "p.jsonl", "log.file.path": str(tmp_path / "p.jsonl")}
    assert failed["error.type"] == "ValueError"
    records = poll.request.resource_logs[0].scope_logs[0].log_records
    assert records[3].severity_text == "ERROR"
    assert as_dict(poll.request.resource_logs[0].resource.attributes) == {"service.name": "iris-api"}


def test_a_custom_mapping_reads_another_format(tmp_path):
    # A regressor's log: the output is `prediction` itself, inputs under `x`, time in epoch ms.
    config = _config(tmp_path, fields={"value": "prediction", "label": [], "features": "x",
                                       "timestamp": "t", "model_version": "meta.model.rev"})
    _write(tmp_path / "p.jsonl", {"t": 1714564800123, "x": {"rooms": 3}, "prediction": 251000.5,
                                  "meta": {"model": {"rev": 7}}})
    poll = Tailer(config, None, LOG).poll()
    [attrs] = _records(poll)
    assert attrs["ml.prediction.value"] == 251000.5 and "ml.prediction.label" not in attrs
    assert attrs["ml.feature.rooms"] == 3 and attrs["ml.model.version"] == "7"
    assert poll.request.resource_logs[0].scope_logs[0].log_records[0].time_unix_nano == 1714564800123 * 10**6


@pytest.mark.parametrize("value, expected", [
    ("2024-05-01T12:00:00Z", 1714564800 * 10**9),
    ("2024-05-01T14:00:00+02:00", 1714564800 * 10**9),
    ("2024-05-01T12:00:00", 1714564800 * 10**9),  # naive: UTC
    (1714564800, 1714564800 * 10**9),
    (1714564800.5, 1714564800_500_000_000),
    (1714564800123, 1714564800123 * 10**6),
    (1714564800123456, 1714564800123456 * 10**3),
    (1714564800123456789, 1714564800123456789),
    ("1714564800", 1714564800 * 10**9),
    ("yesterday", None), (True, None), (-5, None),
])
def test_timestamps(value, expected):
    assert _time_ns(value) == expected


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError) as err:
        from_dict({"receivers": {"predictionlog": {"include": [], "start_at": "middle", "bogus": 1}},
                   "exporters": {"debug": {}},
                   "service": {"pipelines": {"logs": {"receivers": ["predictionlog"], "exporters": ["debug"]}}}})
    text = str(err.value)
    assert "receivers.predictionlog.include:" in text
    assert "receivers.predictionlog.start_at:" in text
    assert "receivers.predictionlog.bogus: unknown key" in text


def test_only_logs_pipelines_take_it():
    with pytest.raises(ConfigError, match="does not support metrics"):
        from_dict({"receivers": {"predictionlog": {"include": ["/x/*.jsonl"]}}, "exporters": {"debug": {}},
                   "service": {"pipelines": {"metrics": {"receivers": ["predictionlog"], "exporters": ["debug"]}}}})


# --- malformed lines ---------------------------------------------------------------


def test_malformed_lines_are_counted_by_reason_and_skipped(tmp_path):
    config = _config(tmp_path, model_name=None, max_line_size=200)
    _write(tmp_path / "p.jsonl",
           {"model": "m", "prediction": 1},
           "{not json",
           "[1, 2, 3]",
           json.dumps({"model": "m", "features": ["x" * 300]}),  # too long
           {"prediction": 1},  # no model, and no model_name to fall back on
           "",
           "\u00ff\u00fe",
           '{"model": "m", "prediction": 2}',
           "\t  ",
           {"model": "m", "prediction": 3})
    tailer = Tailer(config, None, LOG)
    poll = tailer.poll()
    assert [r["ml.prediction.label"] for r in _records(poll)] == ["1", "2", "3"]
    assert dict(poll.malformed) == {"json": 2, "not_object": 1, "too_long": 1, "no_model": 1}


def test_deeply_nested_json_is_malformed_not_a_crash(tmp_path):
    _write(tmp_path / "p.jsonl", "[" * 100_000 + "]" * 100_000, {"prediction": 1})
    poll = Tailer(_config(tmp_path, max_line_size=10**6), None, LOG).poll()
    assert len(_records(poll)) == 1 and sum(poll.malformed.values()) == 1


def test_a_line_longer_than_a_read_is_skipped_to_its_end(tmp_path):
    config = _config(tmp_path, max_line_size=1000)
    path = tmp_path / "p.jsonl"
    with open(path, "w") as out:
        out.write('{"prediction": 1}\n' + "x" * 3_000_000 + '\n{"prediction": 2}\n')
    tailer = Tailer(config, None, LOG)
    labels, malformed = [], 0
    for _ in range(10):
        poll = tailer.poll()
        labels += [r["ml.prediction.label"] for r in _records(poll)]
        malformed += sum(poll.malformed.values())
        tailer.commit(poll.progress)
        if not poll.more:
            break
    assert labels == ["1", "2"] and malformed == 1


# --- tailing -------------------------------------------------------------------------


def test_start_at_end_skips_what_is_there_on_the_first_run_only(tmp_path):
    path = tmp_path / "p.jsonl"
    _write(path, {"prediction": 1}, {"prediction": 2})
    with open(path, "a") as out:
        out.write('{"prediction": ')  # a line being written as the agent starts
    tailer = Tailer(_config(tmp_path, start_at="end"), None, LOG)
    assert _take(tailer) == []
    with open(path, "a") as out:
        out.write('3}\n')
    _write(path, {"prediction": 4})
    assert [r["ml.prediction.label"] for r in _take(tailer)] == ["3", "4"]
    # A file that appears later is read from its start.
    _write(tmp_path / "q.jsonl", {"prediction": 5})
    assert [r["ml.prediction.label"] for r in _take(tailer)] == ["5"]
    # A later run (positions known) reads new files whole too: they appeared while it was away.
    _write(tmp_path / "r.jsonl", {"prediction": 6})
    again = Tailer(_config(tmp_path, start_at="end"), tailer.positions(), LOG)
    assert [r["ml.prediction.label"] for r in _take(again)] == ["6"]


def test_a_partial_line_waits_for_its_newline(tmp_path):
    path = tmp_path / "p.jsonl"
    tailer = Tailer(_config(tmp_path), None, LOG)
    with open(path, "w") as out:
        out.write('{"prediction": 1}\n{"predic')
    assert [r["ml.prediction.label"] for r in _take(tailer)] == ["1"]
    with open(path, "a") as out:
        out.write('tion": 2}\n')
    assert [r["ml.prediction.label"] for r in _take(tailer)] == ["2"]


def test_rotation_by_rename_reads_the_old_file_to_its_end_and_the_new_from_its_start(tmp_path):
    path = tmp_path / "p.jsonl"
    tailer = Tailer(_config(tmp_path), None, LOG)
    _write(path, {"prediction": 1})
    assert len(_take(tailer)) == 1
    # Written after the last poll, then rotated away to a name the pattern does not match.
    _write(path, {"prediction": 2})
    os.rename(path, tmp_path / "p.jsonl.1")
    _write(path, {"prediction": 3})
    assert sorted(r["ml.prediction.label"] for r in _take(tailer)) == ["2", "3"]
    assert [f.path for f in tailer.files] == [str(path)]  # the rotated file was let go
    _write(path, {"prediction": 4})
    assert [r["ml.prediction.label"] for r in _take(tailer)] == ["4"]


def test_rotation_into_a_matching_name_continues_without_reading_twice(tmp_path):
    path = tmp_path / "p.jsonl"
    tailer = Tailer(_config(tmp_path, include=[str(tmp_path / "p*.jsonl")]), None, LOG)
    _write(path, {"prediction": 1})
    assert len(_take(tailer)) == 1
    _write(path, {"prediction": 2})
    os.rename(path, tmp_path / "p-2024-05-01.jsonl")
    _write(path, {"prediction": 3})
    assert sorted(r["ml.prediction.label"] for r in _take(tailer)) == ["2", "3"]
    assert _take(tailer) == []


def test_a_deleted_file_is_read_to_its_end_from_the_open_descriptor(tmp_path):
    path = tmp_path / "p.jsonl"
    tailer = Tailer(_config(tmp_path), None, LOG)
    _write(path, {"prediction": 1})
    _take(tailer)
    _write(path, {"prediction": 2}, '{"prediction": 3}', mode="a")
    with open(path, "a") as out:
        out.write('{"prediction": 4}')  # no newline: the writer is gone, the line is complete
    os.unlink(path)
    assert [r["ml.prediction.label"] for r in _take(tailer)] == ["2", "3", "4"]
    assert tailer.files == []


def test_copytruncate_reads_the_file_again_from_its_start(tmp_path):
    path = tmp_path / "p.jsonl"
    tailer = Tailer(_config(tmp_path), None, LOG)
    _write(path, *({"prediction": i} for i in range(5)))
    assert len(_take(tailer)) == 5
    with open(path, "r+") as f:
        f.truncate(0)
    _write(path, {"prediction": 9})
    poll = tailer.poll()
    assert [r["ml.prediction.label"] for r in _records(poll)] == ["9"] and poll.truncated == 1


def test_a_file_rewritten_in_place_to_a_longer_one_is_read_again(tmp_path):
    # Truncated and refilled past the old position between two polls: the first bytes tell.
    path = tmp_path / "p.jsonl"
    tailer = Tailer(_config(tmp_path), None, LOG)
    _write(path, {"model": "a", "prediction": 1})
    _take(tailer)
    _write(path, *({"model": "b", "prediction": i} for i in range(3)), mode="r+")
    assert [r["ml.model.name"] for r in _take(tailer)] == ["b", "b", "b"]


# --- the receiver: refusals, restarts, threads --------------------------------------------


def labels(consumer: InMemorySink) -> list[str]:
    return [as_dict(r.attributes)["ml.prediction.label"] for _, _, r in consumer.log_records()]


def _receiver(tmp_path: Path, consumer, **overrides):
    telemetry = SelfTelemetry()
    settings = Settings(ComponentId("predictionlog", "test"), telemetry, state_dir=tmp_path / "state")
    config = _config(tmp_path, poll_interval="3600s", **overrides)
    return PredictionLogReceiver(config, settings, {Signal.LOGS: consumer}), telemetry


async def test_a_refused_batch_is_read_again_and_nothing_is_lost_or_doubled(tmp_path):
    consumer = InMemorySink()
    receiver, telemetry = _receiver(tmp_path, consumer)
    _write(tmp_path / "p.jsonl", {"prediction": 1}, {"prediction": 2})
    consumer.error = RefusedError("queue full")
    await receiver.start()
    try:
        assert await async_wait_for(lambda: telemetry.total("vigil_receiver_refused_log_records") == 2)
        consumer.error = None
        _write(tmp_path / "p.jsonl", {"prediction": 3})
        await receiver.poll_once()
        assert labels(consumer) == ["1", "2", "3"]
        assert telemetry.total("vigil_receiver_accepted_log_records", transport="file") == 3
    finally:
        await receiver.shutdown()


async def test_positions_survive_a_restart(tmp_path):
    consumer = InMemorySink()
    path = tmp_path / "p.jsonl"
    _write(path, {"prediction": 1})
    receiver, _ = _receiver(tmp_path, consumer)
    await receiver.start()
    await async_wait_for(lambda: labels(consumer) == ["1"])
    await receiver.shutdown()
    # Written while the agent was down, and a rotation while it was down.
    _write(path, {"prediction": 2})
    os.rename(path, tmp_path / "p-old.jsonl")
    _write(path, {"prediction": 3})
    receiver, _ = _receiver(tmp_path, consumer, start_at="end")
    await receiver.start()
    try:
        assert await async_wait_for(lambda: sorted(labels(consumer)) == ["1", "2", "3"])
        await receiver.poll_once()
        assert sorted(labels(consumer)) == ["1", "2", "3"]
    finally:
        await receiver.shutdown()
    saved = json.loads((tmp_path / "state" / "predictionlog" / "predictionlog%2Ftest.json").read_text())
    assert {Path(f["path"]).name for f in saved["files"]} == {"p.jsonl", "p-old.jsonl"}


async def test_an_unreadable_checkpoint_or_state_dir_does_not_stop_it(tmp_path):
    consumer = InMemorySink()
    (tmp_path / "state").write_text("not a directory")
    _write(tmp_path / "p.jsonl", {"prediction": 1})
    receiver, _ = _receiver(tmp_path, consumer)
    await receiver.start()
    try:
        assert await async_wait_for(lambda: labels(consumer) == ["1"])
    finally:
        await receiver.shutdown()


async def test_file_io_and_parsing_run_off_the_event_loop(tmp_path, monkeypatch):
    consumer = InMemorySink()
    loop_thread = threading.get_ident()
    seen = set()
    original = Tailer.poll

    def poll(self):
        seen.add(threading.get_ident())
        return original(self)

    monkeypatch.setattr(Tailer, "poll", poll)
    receiver, _ = _receiver(tmp_path, consumer)
    _write(tmp_path / "p.jsonl", {"prediction": 1})
    await receiver.start()
    try:
        assert await async_wait_for(lambda: labels(consumer) == ["1"])
    finally:
        await receiver.shutdown()
    assert seen and loop_thread not in seen


async def test_the_loop_stays_responsive_while_a_big_backlog_is_read(tmp_path):
    path = tmp_path / "p.jsonl"
    line = json.dumps(ISSUE_RECORD) + "\n"
    with open(path, "w") as out:
        out.write(line * 100_000)  # about 13 MB
    consumer = InMemorySink()
    receiver, telemetry = _receiver(tmp_path, consumer)
    gaps = []

    async def ticker():
        last = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(0.01)
            now = asyncio.get_running_loop().time()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await receiver.start()
    try:
        assert await async_wait_for(
            lambda: telemetry.total("vigil_receiver_accepted_log_records") == 100_000, timeout=60)
    finally:
        await receiver.shutdown()
        tick.cancel()
    # Building a batch of a MiB of lines happens in a thread; the loop only hands batches on.
    assert max(gaps) < 0.5, max(gaps)


# --- end to end: the ml processor treats the records as predictions ---------------------------


async def test_the_ml_processor_derives_metrics_from_tailed_predictions(tmp_path):
    log = tmp_path / "app" / "predictions.jsonl"
    log.parent.mkdir()
    config = {
        "receivers": {"predictionlog": {"include": [str(log)], "start_at": "beginning", "poll_interval": "50ms",
                                        "model_name": "iris", "feature_names": ["a", "b", "c", "d"],
                                        "resource": {"service.name": "legacy"}}},
        "processors": {"ml": {"reference": {"warmup": 50}, "window": {"size": 50, "min_size": 10,
                                                                               "max_age": "1s"}}},
        "exporters": {"file/logs": {"path": str(tmp_path / "logs.json")},
                      "file/metrics": {"path": str(tmp_path / "metrics.json")}},
        "service": {"state_dir": str(tmp_path / "state"), "pipelines": {
            "logs": {"receivers": ["predictionlog"], "processors": ["ml"], "exporters": ["file/logs"]},
            "metrics": {"receivers": ["ml"], "exporters": ["file/metrics"]}}},
    }
    import random

    rng = random.Random(1)
    rows = [{"model_version": "v1", "input": {"features": [rng.gauss(5, 1), rng.gauss(3, 0.5), 1.4, 0.2]},
             "prediction": {"class": rng.choice([0, 1, 2]), "confidence": rng.uniform(0.5, 1)}}
            for _ in range(50)]
    # Then a shifted window: feature a moved by five standard deviations.
    shifted = [{**r, "input": {"features": [r["input"]["features"][0] + 5, *r["input"]["features"][1:]]}}
               for r in rows]
    _write(log, *rows)
    async with running_vigil(config) as vigil:
        # The first 50 make the reference; the next 50 are a window.
        assert await async_wait_for(
            lambda: vigil.counter("vigil_receiver_accepted_log_records", receiver="predictionlog") == 50)
        _write(log, *shifted)
        names = lambda: {m["name"] for req in read_json_lines(tmp_path / "metrics.json")  # noqa: E731
                         for rm in req["resourceMetrics"] for sm in rm["scopeMetrics"] for m in sm["metrics"]}
        assert await async_wait_for(lambda: "ml.model.drift.share" in names(), timeout=20)
        assert vigil.counter("vigil_receiver_accepted_log_records", receiver="predictionlog") == 100
    drifted = [(p["attributes"], p.get("asInt", p.get("asDouble")))
               for req in read_json_lines(tmp_path / "metrics.json") for rm in req["resourceMetrics"]
               for sm in rm["scopeMetrics"] for m in sm["metrics"] if m["name"] == "ml.feature.drifted"
               for p in m["gauge"]["dataPoints"]]
    by_feature = {next(a["value"]["stringValue"] for a in attrs if a["key"] == "ml.feature.name"): value
                  for attrs, value in drifted}
    assert float(by_feature["a"]) == 1.0 and float(by_feature["b"]) == 0.0
    logs = read_json_lines(tmp_path / "logs.json")
    assert sum(len(sl["logRecords"]) for req in logs for rl in req["resourceLogs"] for sl in rl["scopeLogs"]) == 100
