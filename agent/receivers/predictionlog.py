"""The `predictionlog` receiver: tails JSON-lines prediction logs and turns each line into a prediction.

    predictionlog:
      include: [/var/log/fraud/predictions*.jsonl]
      start_at: end                 # or beginning; only for files found on the very first run
      model_name: fraud             # for lines that do not name their model
      feature_names: [amount, age, country, hour]    # names for features logged as a list
      resource: {service.name: fraud-api}

Many inference services are not instrumented with OpenTelemetry: they write
one JSON object per prediction. Each line becomes one OTLP log record carrying
the `ml.*` attributes of DESIGN.md, so an `ml` processor in the logs pipeline
treats it exactly as it treats a prediction span. The default field mapping
reads lines such as

    {"timestamp": "2024-05-01T12:00:00Z", "model_version": "v1.0", "request_id": "r-17",
     "input": {"features": [1, 2, 3, 4]},
     "prediction": {"class": 0, "confidence": 0.95}, "latency_ms": 12.5}

with features as a list (named by `feature_names`, else `f0`, `f1`, ...) or
as an object (named by its keys). Every field is a list of dotted paths, the
first one present wins, so one config reads several log formats.

Tailing works as log shippers do: files are known by device and inode, so a
file renamed by rotation is read to its end (from the descriptor already
open, even once it no longer matches `include` or was deleted) while the new
file at the path is read from its start; a file that shrinks, or whose first
bytes change (copytruncate), is read again from the start. A position only
moves once the pipelines accepted the lines before it (a refused batch is
read again at the next poll), and positions are kept under `state_dir`, so a
restart resumes where the last run stopped. Lines that are not JSON objects,
are longer than `max_line_size`, or name no model are counted
(`vigil_receiver_malformed_lines`, by reason) and skipped. File I/O, JSON
parsing and building the records run in a worker thread.
"""

from __future__ import annotations

import asyncio
import glob
import json
import math
import os
import stat
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatch
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2
from pydantic import BeforeValidator, Field

from agent import __version__
from agent.attributes import set_any_value
from agent.component import Consumer, Factory, Kind, Settings
from agent.configmodel import Duration, StrictModel
from agent.errors import ConsumerError
from agent.ml.columns import category_of
from agent.signals import Batch, Signal
from agent.telemetry import ReceiverCounters


def _paths(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Paths = Annotated[list[str], BeforeValidator(_paths)]
"""Dotted paths into a JSON line (`prediction.class`, `inputs.0.features`); the first one present wins."""


class FieldsConfig(StrictModel):
    """Where each part of a prediction is in a line. An empty list turns a field off."""

    timestamp: Paths = ["timestamp", "time", "ts"]  # ISO 8601, or epoch seconds / ms / µs / ns
    model_name: Paths = ["model_name", "model.name", "model"]
    model_version: Paths = ["model_version", "model.version", "version"]
    prediction_id: Paths = ["prediction_id", "request_id", "id"]
    features: Paths = ["input.features", "features", "inputs"]  # a list or an object
    label: Paths = ["prediction.class", "prediction.label", "prediction"]  # the predicted class
    score: Paths = ["prediction.score", "score"]  # binary positive-class probability
    confidence: Paths = ["prediction.confidence", "confidence"]
    probabilities: Paths = ["prediction.probabilities", "probabilities"]
    classes: Paths = ["prediction.classes", "classes"]
    value: Paths = ["prediction.value"]  # a regression output (map `prediction` here for a regressor)
    ground_truth: Paths = ["label", "ground_truth"]  # a later true label, joined on the prediction id
    latency_ms: Paths = ["latency_ms"]
    error: Paths = ["error"]  # present and not false/null: the prediction failed


_MIB = 1024 * 1024


class PredictionLogReceiverConfig(StrictModel):
    include: list[str] = Field(min_length=1)  # glob patterns (`**` spans directories)
    exclude: list[str] = []  # fnmatch patterns on the path
    # Where to begin in files found on the very first run; files that appear later (a rotation, a
    # new log) and files of a later run are read from the position kept in state_dir or their start.
    start_at: Literal["end", "beginning"] = "end"
    poll_interval: Annotated[Duration, Field(gt=0)] = 1.0
    model_name: str | None = None  # for lines that name no model
    model_version: str | None = None  # for lines that name no version
    feature_names: list[str] = []  # names of features logged as a list, in order; the rest are f<i>
    fields: FieldsConfig = FieldsConfig()
    attributes: dict[str, str] = {}  # more log record attributes: {attribute name: path}
    resource: dict[str, str | int | float | bool] = {}  # resource attributes, e.g. service.name
    # A longer line is skipped and counted: it is a writer gone wrong, not a prediction.
    max_line_size: int = Field(_MIB, gt=0)
    keep_body: bool = True  # the line itself as the record's body


# --- one line to one log record ------------------------------------------------

_MISSING = object()
_SCALAR = (str, int, float, bool)
_INT64 = (-(2**63), 2**63 - 1)


class RecordMapper:
    """Turns a parsed JSON line into the `ml.*` attributes of one log record."""

    def __init__(self, config: PredictionLogReceiverConfig) -> None:
        def compile_(paths: list[str]) -> list[tuple[str, ...]]:
            return [tuple(p.split(".")) for p in paths if p]

        f = config.fields
        self._timestamp = compile_(f.timestamp)
        self._model_name = compile_(f.model_name)
        self._model_version = compile_(f.model_version)
        self._prediction_id = compile_(f.prediction_id)
        self._features = compile_(f.features)
        self._label = compile_(f.label)
        self._score = compile_(f.score)
        self._confidence = compile_(f.confidence)
        self._probabilities = compile_(f.probabilities)
        self._classes = compile_(f.classes)
        self._value = compile_(f.value)
        self._ground_truth = compile_(f.ground_truth)
        self._latency = compile_(f.latency_ms)
        self._error = compile_(f.error)
        self._extra = {name: compile_([path]) for name, path in config.attributes.items()}
        self._default_model = config.model_name
        self._default_version = config.model_version
        self._feature_names = list(config.feature_names)

    def fill(self, record: Any, obj: dict[str, Any], observed_ns: int) -> bool:
        """Fill `record` from `obj`; False (and `record` untouched) when the line names no model."""
        model = _text(_first(obj, self._model_name, scalar=True)) or self._default_model
        if not model:
            return False
        attributes: dict[str, Any] = {"ml.model.name": model}
        version = _text(_first(obj, self._model_version, scalar=True)) or self._default_version
        if version:
            attributes["ml.model.version"] = version
        prediction_id = _first(obj, self._prediction_id, scalar=True)
        if prediction_id is not None:
            attributes["ml.prediction.id"] = _text(prediction_id)

        features = _first(obj, self._features)
        if isinstance(features, list):
            for i, value in enumerate(features):
                name = self._feature_names[i] if i < len(self._feature_names) else f"f{i}"
                _put(attributes, "ml.feature." + name, value)
        elif isinstance(features, dict):
            for name, value in features.items():
                _put(attributes, "ml.feature." + str(name), value)

        label = _first(obj, self._label, scalar=True)
        if label is not None:
            attributes["ml.prediction.label"] = _category(label)
        for key, paths in (("ml.prediction.score", self._score), ("ml.prediction.confidence", self._confidence),
                           ("ml.prediction.value", self._value)):
            number = _number(_first(obj, paths, scalar=True))
            if number is not None:
                attributes[key] = number
        probabilities = _first(obj, self._probabilities)
        if isinstance(probabilities, list) and probabilities:
            numbers = [_number(p) for p in probabilities]
            if all(n is not None for n in numbers):
                attributes["ml.prediction.probabilities"] = numbers
        classes = _first(obj, self._classes)
        if isinstance(classes, list) and classes and all(isinstance(c, _SCALAR) for c in classes):
            attributes["ml.model.classes"] = [_category(c) for c in classes]
        truth = _first(obj, self._ground_truth, scalar=True)
        if truth is not None:
            # A class is a category (0 and "0" join alike); a float is a regression target.
            attributes["ml.label"] = truth if isinstance(truth, float) else _category(truth)
        latency = _number(_first(obj, self._latency, scalar=True))
        if latency is not None:
            # Seconds, as the span duration that `ml.prediction.duration` is made from.
            attributes["ml.prediction.duration"] = latency / 1000.0
        error = _first(obj, self._error)
        failed = error is not None and error is not False and error != ""
        if failed:
            attributes["error.type"] = error[:256] if isinstance(error, str) else "error"
        for name, paths in self._extra.items():
            _put(attributes, name, _first(obj, paths))

        timestamp = _time_ns(_first(obj, self._timestamp, scalar=True))
        record.time_unix_nano = timestamp or observed_ns
        record.observed_time_unix_nano = observed_ns
        if failed:
            record.severity_number, record.severity_text = logs_pb2.SEVERITY_NUMBER_ERROR, "ERROR"
        else:
            record.severity_number, record.severity_text = logs_pb2.SEVERITY_NUMBER_INFO, "INFO"
        for key, value in attributes.items():
            set_any_value(record.attributes.add(key=key).value, value)
        return True


def _first(obj: Any, paths: list[tuple[str, ...]], scalar: bool = False) -> Any:
    for path in paths:
        value = obj
        for part in path:
            if isinstance(value, dict):
                value = value.get(part, _MISSING)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                value = _MISSING
            if value is _MISSING:
                break
        if value is _MISSING or value is None or (scalar and not isinstance(value, _SCALAR)):
            continue
        return value
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)[:256]


def _category(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return category_of(value)
    return _text(value) or ""


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _put(attributes: dict[str, Any], key: str, value: Any) -> None:
    """A feature or extra attribute as its JSON type; null is left out (a missing value)."""
    if value is None:
        return
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        value = float(value)
    elif isinstance(value, (list, dict)):
        # Kept as it came (the ml processor counts it as a type mismatch); nested too deep is text.
        value = _plain(value, 4)
    attributes[key] = value


def _plain(value: Any, depth: int) -> Any:
    if isinstance(value, (list, dict)):
        if depth == 0:
            return json.dumps(value)[:256]
        if isinstance(value, list):
            return [_plain(v, depth - 1) for v in value if v is not None]
        return {str(k): _plain(v, depth - 1) for k, v in value.items() if v is not None}
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        return float(value)
    return value


def _time_ns(value: Any) -> int | None:
    """ISO 8601 text, or a number of epoch seconds, milliseconds, microseconds or nanoseconds."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return int(moment.timestamp() * 1e9)
    if isinstance(value, float) and (not math.isfinite(value) or value.is_integer()):
        value = int(value) if math.isfinite(value) else 0
    if value <= 0:
        return None
    # Which unit: the magnitude of a present-day epoch in each (integers stay exact).
    for limit, scale in ((10**11, 10**9), (10**14, 10**6), (10**17, 10**3)):
        if value < limit:
            return int(value * scale)
    return int(value) if value < 2**63 else None


# --- following files ------------------------------------------------------------

FINGERPRINT_SIZE = 1000  # bytes at a file's start that tell a rewritten file from the one we read
_TAIL_PROBE = 64 * 1024  # how far back from the end to look for a line start with start_at: end


@dataclass
class TrackedFile:
    key: tuple[int, int]  # (device, inode)
    path: str
    handle: BinaryIO
    offset: int  # everything before it was accepted by the pipelines
    fingerprint: bytes
    skipping: bool = False  # inside a line longer than max_line_size: drop up to the next newline
    gone: bool = False  # rotated away or deleted: read what is left, then let go

    def state(self) -> dict[str, Any]:
        return {"dev": self.key[0], "ino": self.key[1], "path": self.path, "offset": self.offset,
                "fingerprint": self.fingerprint.hex(), "skipping": self.skipping}


@dataclass
class _Progress:
    """What one read would move a file to, applied once the pipelines took its lines."""

    file: TrackedFile
    offset: int
    skipping: bool
    done: bool  # a gone file read to its end: close it


@dataclass
class _Poll:
    request: ExportLogsServiceRequest | None
    records: int
    progress: list[_Progress]
    malformed: Counter = field(default_factory=Counter)
    more: bool = False  # some file has more to read right away
    truncated: int = 0
    rotated: int = 0


class Tailer:
    """The files matched by the include patterns and how far each was read (blocking; one thread)."""

    def __init__(self, config: PredictionLogReceiverConfig, checkpoint: list[dict[str, Any]] | None,
                 logger: Any) -> None:
        self._config = config
        self._mapper = RecordMapper(config)
        self._files: dict[tuple[int, int], TrackedFile] = {}
        self._saved = {(int(e["dev"]), int(e["ino"])): e for e in (checkpoint or [])}
        # Only the very first run of this receiver skips to the end of what is already there.
        self._first_scan = checkpoint is None
        self._chunk = max(_MIB, config.max_line_size + 1)
        self._log = logger
        self._resource = dict(config.resource)

    @property
    def files(self) -> list[TrackedFile]:
        return list(self._files.values())

    def positions(self) -> list[dict[str, Any]]:
        return [f.state() for f in self._files.values()]

    def close(self) -> None:
        for f in self._files.values():
            f.handle.close()
        self._files.clear()

    # The poll: find files, then read each from its position.

    def poll(self) -> _Poll:
        truncated, rotated = self._scan()
        request = ExportLogsServiceRequest()
        resource_logs = request.resource_logs.add()
        for key, value in self._resource.items():
            set_any_value(resource_logs.resource.attributes.add(key=key).value, value)
        scope = resource_logs.scope_logs.add()
        scope.scope.name = "vigil.predictionlog"
        scope.scope.version = __version__
        result = _Poll(None, 0, [], truncated=truncated, rotated=rotated)
        for f in list(self._files.values()):
            self._read(f, scope, result)
        result.records = len(scope.log_records)
        if result.records:
            result.request = request
        return result

    def commit(self, progress: list[_Progress]) -> None:
        for p in progress:
            p.file.offset, p.file.skipping = p.offset, p.skipping
            if p.done:
                p.file.handle.close()
                self._files.pop(p.file.key, None)

    def _scan(self) -> tuple[int, int]:
        matched: dict[tuple[int, int], tuple[str, os.stat_result]] = {}
        for pattern in self._config.include:
            for path in sorted(glob.glob(pattern, recursive=True)):
                if any(fnmatch(path, ex) for ex in self._config.exclude):
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    matched.setdefault((st.st_dev, st.st_ino), (path, st))
        rotated = truncated = 0
        for key, f in self._files.items():
            if key not in matched and not f.gone:
                f.gone = True  # renamed out of the patterns or deleted; its descriptor still reads
                rotated += 1
        for key, (path, st) in matched.items():
            f = self._files.get(key)
            if f is not None:
                f.path, f.gone = path, False
                if st.st_size < f.offset or not self._same_start(f):
                    # Truncated in place (copytruncate) or rewritten: what is there now is new.
                    self._log.info("%s was truncated or rewritten; reading it from the start", path)
                    f.offset, f.skipping, f.fingerprint = 0, False, self._head(f.handle)
                    truncated += 1
                continue
            try:
                handle = open(path, "rb")
            except OSError as exc:
                self._log.warning("cannot open %s: %s", path, exc)
                continue
            fingerprint = self._head(handle)
            offset, skipping = 0, False
            saved = self._saved.pop(key, None)
            if saved is not None and _same_prefix(bytes.fromhex(saved.get("fingerprint", "")), fingerprint):
                offset, skipping = int(saved["offset"]), bool(saved.get("skipping", False))
                if offset > st.st_size:  # shrank while the agent was away
                    offset, skipping = 0, False
            elif self._first_scan and self._config.start_at == "end":
                offset, skipping = _line_start_before(handle, st.st_size)
            self._files[key] = TrackedFile(key, path, handle, offset, fingerprint, skipping)
        self._first_scan = False
        return truncated, rotated

    def _head(self, handle: BinaryIO) -> bytes:
        return os.pread(handle.fileno(), FINGERPRINT_SIZE, 0)

    def _same_start(self, f: TrackedFile) -> bool:
        head = self._head(f.handle)
        if not _same_prefix(f.fingerprint, head):
            return False
        if len(head) > len(f.fingerprint):
            f.fingerprint = head
        return True

    def _read(self, f: TrackedFile, scope: Any, result: _Poll) -> None:
        data = os.pread(f.handle.fileno(), self._chunk, f.offset)
        at_end = len(data) < self._chunk
        if not data:
            if f.gone:
                result.progress.append(_Progress(f, f.offset, f.skipping, done=True))
            return
        max_line = self._config.max_line_size
        skipping = f.skipping
        pos = 0
        observed = time.time_ns()
        name = os.path.basename(f.path)
        while True:
            newline = data.find(b"\n", pos)
            if newline < 0:
                break
            line, pos = data[pos:newline], newline + 1
            if skipping:  # the tail of an over-long line
                skipping = False
                continue
            self._line(line, f, name, scope, result, observed)
        rest = len(data) - pos
        if rest and not skipping and rest > max_line:
            result.malformed["too_long"] += 1
            skipping, pos = True, len(data)
        elif rest and skipping:
            pos = len(data)
        elif rest and f.gone and at_end:
            # A rotated file will not grow: its last line, even without a newline, is complete.
            self._line(data[pos:], f, name, scope, result, observed)
            pos = len(data)
        done = f.gone and at_end and pos == len(data)
        result.progress.append(_Progress(f, f.offset + pos, skipping, done))
        if not at_end:
            result.more = True

    def _line(self, line: bytes, f: TrackedFile, name: str, scope: Any, result: _Poll, observed: int) -> None:
        line = line.rstrip(b"\r")
        if not line.strip():
            return
        if len(line) > self._config.max_line_size:
            result.malformed["too_long"] += 1
            return
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            result.malformed["json"] += 1
            return
        if not isinstance(obj, dict):
            result.malformed["not_object"] += 1
            return
        record = scope.log_records.add()
        try:
            filled = self._mapper.fill(record, obj, observed)
        except (ValueError, TypeError, OverflowError, RecursionError):
            filled = False
            result.malformed["unmappable"] += 1
        else:
            if not filled:
                result.malformed["no_model"] += 1
        if not filled:
            del scope.log_records[-1]
            return
        if self._config.keep_body:
            record.body.string_value = line.decode("utf-8", "replace")
        set_any_value(record.attributes.add(key="log.file.name").value, name)
        set_any_value(record.attributes.add(key="log.file.path").value, f.path)


def _same_prefix(a: bytes, b: bytes) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _line_start_before(handle: BinaryIO, size: int) -> tuple[int, bool]:
    """The offset just after the last complete line (a line still being written is read once done)."""
    if size == 0:
        return 0, False
    start = max(0, size - _TAIL_PROBE)
    tail = os.pread(handle.fileno(), size - start, start)
    newline = tail.rfind(b"\n")
    if newline >= 0:
        return start + newline + 1, False
    if start == 0:
        return 0, False  # one unfinished line: it is read once it is complete
    return size, True  # inside a very long line: skip the rest of it


# --- the receiver ----------------------------------------------------------------


class PredictionLogReceiver:
    def __init__(self, config: PredictionLogReceiverConfig, settings: Settings,
                 consumers: dict[Signal, Consumer]) -> None:
        self._config = config
        self._consumer = consumers[Signal.LOGS]
        self._log = settings.logger
        self._id = str(settings.id)
        self._checkpoint_path = (Path(settings.state_dir) / "predictionlog"
                                 / (urllib.parse.quote(self._id, safe="") + ".json"))
        t = settings.telemetry
        self._items = ReceiverCounters(t, self._id)
        self._malformed = t.counter("vigil_receiver_malformed_lines",
                                    "lines of a tailed file that were skipped, by reason")
        self._tailer: Tailer | None = None
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._saved_positions: list[dict[str, Any]] | None = None
        self._checkpoint_warned = False
        self.malformed_lines = 0
        self.records_accepted = 0

    async def start(self) -> None:
        checkpoint = await asyncio.to_thread(self._load_checkpoint)
        self._tailer = Tailer(self._config, checkpoint, self._log)
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"{self._id}/tail")

    async def shutdown(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._tailer is not None:
            await asyncio.to_thread(self._save_checkpoint, self._tailer.positions())
            await asyncio.to_thread(self._tailer.close)
            self._tailer = None

    def status(self) -> dict[str, Any]:
        # From the last commit: the tailer's own list may be changing in the worker thread.
        return {"files": [{"path": p["path"], "offset": p["offset"]} for p in self._saved_positions or []],
                "records_accepted": self.records_accepted, "malformed_lines": self.malformed_lines}

    async def poll_once(self) -> bool:
        """One poll: read what is new, hand it to the pipelines; True when more is waiting."""
        assert self._tailer is not None
        result = await asyncio.to_thread(self._tailer.poll)
        for reason, n in result.malformed.items():
            self._malformed.add(n, {"receiver": self._id, "reason": reason})
            self.malformed_lines += n
        if result.malformed:
            self._log.warning("skipped %d malformed lines (%s)", sum(result.malformed.values()),
                              ", ".join(f"{r}: {n}" for r, n in sorted(result.malformed.items())))
        if result.request is not None:
            batch = Batch(Signal.LOGS, result.request, items=result.records)
            try:
                await self._consumer.consume(batch)
            except ConsumerError as exc:
                # Not committed: the same lines are read again at the next poll.
                self._items.refused(Signal.LOGS, "file", result.records)
                self._log.warning("pipelines refused %d prediction records; retrying: %s", result.records, exc)
                return False
            self._items.accepted(Signal.LOGS, "file", result.records)
            self.records_accepted += result.records
        # Malformed lines and the progress of files with nothing valid move on too.
        self._tailer.commit(result.progress)
        positions = self._tailer.positions()
        if positions != self._saved_positions:
            await asyncio.to_thread(self._save_checkpoint, positions)
            self._saved_positions = positions
        return result.more

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                more = await self.poll_once()
            except Exception:  # noqa: BLE001 - a bug or an I/O error must not end tailing
                self._log.exception("polling the prediction logs failed")
                more = False
            if more:
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait_for(self._stopping.wait(), self._config.poll_interval)
            except TimeoutError:
                pass

    def _load_checkpoint(self) -> list[dict[str, Any]] | None:
        try:
            data = json.loads(self._checkpoint_path.read_text())
            return [e for e in data["files"] if {"dev", "ino", "offset"} <= set(e)]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._log.warning("cannot read the positions in %s (%s); starting as on a first run",
                              self._checkpoint_path, exc)
            return None

    def _save_checkpoint(self, positions: list[dict[str, Any]]) -> None:
        tmp = self._checkpoint_path.with_suffix(".tmp")
        try:
            self._checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as out:
                json.dump({"files": positions}, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._checkpoint_path)
        except OSError as exc:
            if not self._checkpoint_warned:
                self._log.warning("cannot keep file positions in %s (%s); a restart will re-read or skip lines",
                                  self._checkpoint_path, exc)
                self._checkpoint_warned = True
            return


def _create(config: PredictionLogReceiverConfig, settings: Settings,
            consumers: dict[Signal, Consumer]) -> PredictionLogReceiver:
    return PredictionLogReceiver(config, settings, consumers)


FACTORY = Factory(
    kind=Kind.RECEIVER,
    type="predictionlog",
    config_model=PredictionLogReceiverConfig,
    create=_create,
    signals=frozenset({Signal.LOGS}),
    description="tails JSON-lines prediction logs into log records with ml.* attributes",
)
