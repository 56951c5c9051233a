"""Fuzzing what Vigil reads from files: config files, reference profiles, the label-join state, queue segments.

A config may only fail with a ConfigError (every problem with its path); a
profile or a label state with a decode or value error; a damaged queue must
open, keep every record the damage did not touch, and never hand out a record
that is not one that was written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from google.protobuf.message import DecodeError
from hypothesis import given, strategies as st

from agent import config as config_module
from agent.exporters import queue_format
from agent.exporters.queue_storage import SegmentStore
from agent.ml import labels as labels_module, profile as profile_module
from agent.signals import Signal
from tests.fuzz.conftest import cases, count
from tests.fuzz.test_fuzz_decoders import mutated

# --- config files -----------------------------------------------------------------------------------

VALID_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:4317, auth: {bearer_tokens: [abc]}}
      http: {endpoint: 127.0.0.1:4318, max_request_body_size: 1024}
    limits: {max_attributes: 10, max_concurrent_requests: 5}
  hostmetrics: {collection_interval: 10s, scrapers: {cpu: null, memory: null}}
processors:
  memory_limiter: {limit_mib: 512, check_interval: 1s}
  batch: {send_batch_size: 100, timeout: 200ms}
exporters:
  otlp: {endpoint: "http://backend:4317", sending_queue: {storage: {max_size_mib: 64, fsync: interval}}}
  file: {path: ./out.json}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp, file]}
    metrics: {receivers: [otlp, hostmetrics], exporters: [file]}
  shutdown_timeout: 10s
"""

_NAMES = ["receivers", "processors", "exporters", "service", "pipelines", "traces", "metrics", "logs", "otlp",
          "otlp/a", "batch", "memory_limiter", "file", "debug", "hostmetrics", "endpoint", "protocols", "grpc",
          "http", "timeout", "sending_queue", "storage", "limit_mib", "path", "${env:HOME}", "$$", "${bad}"]
YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 12, 10 ** 12) | st.floats() | st.text(max_size=20)
    | st.sampled_from(["10s", "0", "-1ms", "1h30m", "127.0.0.1:0", "[::1]:99999", "${env:NOPE}"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(_NAMES) | st.text(max_size=6),
                                                                       children, max_size=5),
    max_leaves=25)


def parse(text: str) -> None:
    try:
        config_module.parse(text, "<fuzz>", environ={"HOME": "/root"})
    except config_module.ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


@cases(400)
@given(st.dictionaries(st.sampled_from(_NAMES[:4]), YAML_VALUES, max_size=4))
def test_config_random_documents(document):
    count("config: random documents")
    parse(yaml.safe_dump(document))


@cases(600)
@given(st.data())
def test_config_mutated_files(data):
    count("config: mutated files")
    text = data.draw(mutated(VALID_CONFIG.encode())).decode("utf-8", errors="replace")
    parse(text)


@cases(300)
@given(st.text(max_size=300))
def test_config_random_text(text):
    count("config: random text")
    parse(text)


# --- reference profiles and label state ------------------------------------------------------------------


def _valid_profile() -> bytes:
    import numpy as np

    from agent.ml.columns import RawColumn

    rng = np.random.default_rng(1)
    features = {"amount": profile_module.build_column("amount", RawColumn.from_values(list(rng.normal(size=300)))),
                "city": profile_module.build_column("city", RawColumn.from_values(["a", "b", "c"] * 100))}
    profile = profile_module.Profile("fraud", "3", 300, features)
    return profile_module.to_proto(profile).SerializeToString()


VALID_PROFILE = _valid_profile()


def load_profile(data: bytes) -> None:
    with tempfile.NamedTemporaryFile(suffix=".vigilprofile") as f:
        f.write(data)
        f.flush()
        try:
            profile_module.load(f.name)
        except (DecodeError, ValueError):
            pass


@cases(300)
@given(st.binary(max_size=400))
def test_profile_random_bytes(data):
    count("profile: random bytes")
    load_profile(data)


@cases(400)
@given(st.data())
def test_profile_mutated_files(data):
    count("profile: mutated files")
    load_profile(data.draw(mutated(VALID_PROFILE)))


def load_labels(data: bytes) -> None:
    join = labels_module.LabelJoin(60.0, 1000, 60.0)
    with tempfile.NamedTemporaryFile(suffix=".labels") as f:
        f.write(data)
        f.flush()
        try:
            labels_module.load(join, Path(f.name))
        except (DecodeError, ValueError):
            pass


@cases(300)
@given(st.binary(max_size=400))
def test_label_state_random_bytes(data):
    count("label state: random bytes")
    load_labels(data)


# --- queue segments ---------------------------------------------------------------------------------------


@cases(250)
@given(st.data())
def test_a_damaged_queue_opens_and_keeps_what_was_not_touched(data):
    count("queue segments: damage")
    wires = [f"request-{i}-".encode() * data.draw(st.integers(1, 40)) for i in range(data.draw(st.integers(1, 12)))]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        store = SegmentStore(directory, segment_bytes=data.draw(st.sampled_from([200, 1000, 100_000])))
        store.open()
        records = store.append([(Signal.LOGS, i, w) for i, w in enumerate(wires)], sync=False)
        store.close()
        files = sorted(directory.glob("*.seg"))
        touched: dict[str, list[tuple[int, int]]] = {}
        for _ in range(data.draw(st.integers(0, 3))):
            victim = data.draw(st.sampled_from(files))
            raw = bytearray(victim.read_bytes())
            if not raw:
                continue
            at = data.draw(st.integers(0, len(raw) - 1))
            op = data.draw(st.sampled_from(["flip", "zero", "truncate", "garbage"]))
            if op == "flip":
                raw[at] ^= data.draw(st.integers(1, 255))
                span = (at, at + 1)
            elif op == "zero":
                n = data.draw(st.integers(1, 64))
                raw[at:at + n] = bytes(len(raw[at:at + n]))
                span = (at, at + n)
            elif op == "truncate":
                del raw[at:]
                span = (at, 1 << 40)
            else:
                raw[at:at] = data.draw(st.binary(min_size=1, max_size=32))
                span = (at, 1 << 40)  # everything after shifts: treat it as touched
            victim.write_bytes(bytes(raw))
            touched.setdefault(victim.name, []).append(span)

        store = SegmentStore(directory, segment_bytes=1000)
        recovery = store.open()  # never raises over damage
        got = [store.read(r) for r in recovery.records]
        store.close()
    assert set(got) <= set(wires)  # nothing made up
    for record, wire in zip(records, wires):
        name = f"{record.seq:020d}{queue_format.SUFFIX}"
        spans = touched.get(name, [])
        if not any(a < record.offset + record.size and record.offset < b for a, b in spans):
            assert wire in got  # untouched records survive, wherever the damage was
