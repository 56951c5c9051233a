"""Game day for the service around the pipelines: reloads that cannot bind, and the admin endpoint
as a web page in a browser would see it. Real `vigil run` subprocesses on 127.0.0.1.

    sender (gRPC, HTTP) ─▶ vigil run (otlp ─▶ file)      curl-like admin requests ─▶ /-/reload
                                  ▲ a port held by another process, asked for by the new config
"""

from __future__ import annotations

import json
import math
import random
import re
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import psutil
import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.attributes import set_any_value

from tests.conftest import free_port, read_json_lines, wait_for
from tests.otlp_data import traces
from tests.vigil_cli import REPO, run_cli, vigil_run

TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


def agent_config(grpc_port: int, http_port: int, admin_port: int, out: Path) -> dict:
    return {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                                 "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
            "exporters": {"file": {"path": str(out)}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
                        "admin": {"endpoint": f"127.0.0.1:{admin_port}"},
                        "state_dir": str(out.parent / "state")}}


def post(url: str, headers: dict | None = None, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def send_grpc(port: int, name: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        channel.unary_unary(TRACES_METHOD)(traces(1, prefix=name).SerializeToString(), timeout=10)


def send_http(port: int, name: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", method="POST",
                                     data=traces(1, prefix=name).SerializeToString(),
                                     headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def span_names(path: Path) -> list[str]:
    return [span["name"] for line in read_json_lines(path) for rs in line["resourceSpans"]
            for ss in rs["scopeSpans"] for span in ss["spans"]]


def test_a_reload_whose_receiver_cannot_bind_keeps_the_old_receivers_serving(tmp_path):
    """Defect 7: the new config's gRPC port is held by another process. Both POST /-/reload and
    SIGHUP must answer (or log) the failure, and the old gRPC and HTTP endpoints keep taking data."""
    grpc_port, http_port, admin_port = free_port(), free_port(), free_port()
    out = tmp_path / "out.json"
    config_path = tmp_path / "vigil.yaml"
    config_path.write_text(yaml.safe_dump(agent_config(grpc_port, http_port, admin_port, out)))
    admin = f"http://127.0.0.1:{admin_port}"
    with socket.socket() as holder, vigil_run(["-c", str(config_path)], tmp_path) as vigil:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        vigil.wait_running()
        send_grpc(grpc_port, "before")

        changed = agent_config(taken, http_port, admin_port, out)
        config_path.write_text(yaml.safe_dump(changed))
        started = time.monotonic()
        code, answer = post(admin + "/-/reload")
        print(f"\nPOST /-/reload to a held port: HTTP {code} in {time.monotonic() - started:.2f} s: {answer}")
        assert code == 500 and answer["status"] == "failed", answer
        assert any(str(taken) in problem for problem in answer["problems"]), answer
        send_grpc(grpc_port, "after-post")
        assert send_http(http_port, "after-post-http") == 200
        with urllib.request.urlopen(admin + "/-/ready", timeout=10) as ready:
            assert ready.status == 200

        vigil.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: vigil.stderr().count("reload abandoned") >= 2, 30), vigil.stderr()
        send_grpc(grpc_port, "after-sighup")
        assert send_http(http_port, "after-sighup-http") == 200

        # Once the port is free, the same config reloads.
        holder.close()
        code, answer = post(admin + "/-/reload")
        assert code == 200 and answer["status"] == "reloaded", answer
        send_grpc(taken, "on-the-new-port")
        assert send_http(http_port, "after-reload-http") == 200
        vigil.proc.terminate()
        assert vigil.proc.wait(30) == 0, vigil.stderr()
    assert wait_for(lambda: len(span_names(out)) == 7, 10)
    assert sorted(span_names(out)) == sorted(
        ["before-0", "after-post-0", "after-post-http-0", "after-sighup-0", "after-sighup-http-0",
         "on-the-new-port-0", "after-reload-http-0"])


def test_a_web_page_cannot_reload_the_agent_or_silence_its_alerts(tmp_path):
    """Defect 13: what a page in a browser on the host can send to the admin endpoint (a fetch with
    its Origin, a simple form POST) is refused with 403 and changes nothing; `vigil alerts` and a
    plain POST (curl, a config-management hook) still work."""
    grpc_port, http_port, admin_port = free_port(), free_port(), free_port()
    out = tmp_path / "out.json"
    config = agent_config(grpc_port, http_port, admin_port, out)
    config["processors"] = {"alerts": {"rules": [{"name": "Up", "metric": "up", "op": ">", "threshold": 0}]}}
    config["service"]["pipelines"]["metrics"] = {"receivers": ["otlp"], "processors": ["alerts"],
                                                 "exporters": ["file"]}
    config_path = tmp_path / "vigil.yaml"
    config_path.write_text(yaml.safe_dump(config))
    admin = f"http://127.0.0.1:{admin_port}"
    browser = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # a <form method=post>, old browsers
    silence = json.dumps({"matchers": ['alertname="Up"'], "duration": "1h"}).encode()
    with vigil_run(["-c", str(config_path)], tmp_path) as vigil:
        vigil.wait_running()
        codes = [post(admin + "/-/reload", browser)[0], post(admin + "/-/reload", form, b"a=1")[0],
                 post(admin + "/api/v1/alerts/silences", {**browser, "Content-Type": "text/plain"}, silence)[0],
                 post(admin + "/api/v1/alerts/silences", form, silence)[0]]
        print(f"\ncross-site admin requests answered {codes}")
        assert codes == [403, 403, 403, 403]
        assert "reloading the config" not in vigil.stderr()
        listed = run_cli("alerts", "--endpoint", f"127.0.0.1:{admin_port}", "silences")
        assert listed.returncode == 0 and listed.stdout.strip() == "no silences", listed

        made = run_cli("alerts", "silence", 'alertname="Up"', "--duration", "1h", "--endpoint",
                       f"127.0.0.1:{admin_port}")
        assert made.returncode == 0, made.stderr
        expired = run_cli("alerts", "expire", made.stdout.split()[1], "--endpoint", f"127.0.0.1:{admin_port}")
        assert expired.returncode == 0, expired.stderr
        code, answer = post(admin + "/-/reload")
        assert code == 200 and answer["status"] == "reloaded" and answer["started"] == 0, answer
        with urllib.request.urlopen(admin + "/metrics", timeout=10) as response:
            refused = [line for line in response.read().decode().splitlines()
                       if line.startswith("vigil_admin_refused_requests_total{")]
        assert len(refused) == 1 and 'method="POST"' in refused[0] and refused[0].endswith(" 4.0"), refused


# --- hostile input through the ml and alerts processors ---------------------------------------------

ABSURD = [math.nan, math.inf, -math.inf, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324, -0.0,
          2**63 - 1, -(2**63), -999, "", "x" * 20_000, True, [1.0, math.nan], {"a": 1}, b"\xff" * 10]
ML_KEYS = ["ml.prediction.score", "ml.prediction.confidence", "ml.prediction.value", "ml.feature.x",
           "ml.prediction.label", "ml.model.version", "ml.prediction.probabilities", "ml.model.classes",
           "ml.label", "ml.prediction.id", "gen_ai.usage.input_tokens", "gen_ai.request.model", "error.type"]
NOW_NS = time.time_ns()
ROUNDS = 6


def span_request(rows: list[dict], start=lambda i: NOW_NS, end=lambda i: NOW_NS + 10_000_000,
                 error: bool = False) -> bytes:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i, row in enumerate(rows):
        span = spans.add(name="predict", trace_id=random.randbytes(16), span_id=random.randbytes(8),
                         start_time_unix_nano=start(i), end_time_unix_nano=end(i))
        span.status.code = 2 if error else 0
        for key, value in row.items():
            set_any_value(span.attributes.add(key=key).value, value)
    return request.SerializeToString()


def metric_request(name: str, points: list[tuple[dict, object]], kind: str = "gauge", at: int = NOW_NS) -> bytes:
    """Points of one metric: a number each (gauge, cumulative sum) or (bounds, counts) (histogram)."""
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name=name)
    for attrs, value in points:
        if kind == "histogram":
            metric.histogram.aggregation_temporality = 2
            bounds, counts = value
            point = metric.histogram.data_points.add(count=sum(counts), time_unix_nano=at)
            point.explicit_bounds.extend(bounds)
            point.bucket_counts.extend(counts)
        else:
            data = metric.gauge if kind == "gauge" else metric.sum
            if kind == "sum":
                metric.sum.aggregation_temporality, metric.sum.is_monotonic = 2, True
            point = data.data_points.add(as_double=value, time_unix_nano=at)
        for key, item in attrs.items():
            set_any_value(point.attributes.add(key=key).value, item)
    return request.SerializeToString()


def hostile_requests(round_: int) -> list[tuple[str, bytes]]:
    """One round of what a broken or hostile app sends: absurd values in every ml.* attribute, absurd
    span times, a new model, version, class, error, feature and id on every span, labels that match
    nothing, histograms of 10,000 buckets under a name a windowed rule reads, thousands of new series
    with 1 kB labels, NaN and infinities."""
    out = []
    for key in ML_KEYS:
        rows = [{"ml.model.name": "absurd", "ml.prediction.id": f"a{round_}-{i}", "ml.feature.a": 1.0 * i,
                 "gen_ai.operation.name": "chat", key: ABSURD[i % len(ABSURD)]} for i in range(len(ABSURD) * 2)]
        out.append((TRACES_METHOD, span_request(rows)))
    times = [(lambda i: NOW_NS, lambda i: NOW_NS - 10**15), (lambda i: 0, lambda i: 2**64 - 1)]
    for start, end in times:
        out.append((TRACES_METHOD, span_request([{"ml.model.name": "absurd", "ml.feature.a": 1.0}] * 30,
                                                start, end, error=True)))
    tag = f"{round_}-" + "i" * 250  # ids and names as long as they are kept (256 characters)
    out.append((TRACES_METHOD, span_request(
        [{"ml.model.name": f"m{i}{tag}", "ml.model.version": f"v{i}{tag}", "ml.prediction.label": f"l{i}{tag}",
          "error.type": f"e{i}{tag}", f"ml.feature.f{i}{tag}": 1.0, "ml.prediction.id": f"{i}{tag}",
          "gen_ai.operation.name": f"o{i}{tag}", "gen_ai.request.model": f"g{i}{tag}",
          "gen_ai.usage.input_tokens": 5} for i in range(1500)], error=True)))
    out.append((TRACES_METHOD, span_request(
        [{"ml.model.name": "good", "ml.model.version": f"v{i}{tag}", "ml.prediction.id": f"p{i}{tag}",
          "ml.prediction.label": f"l{i}{tag}", "ml.feature.a": 1.0} for i in range(1500)])))
    out.append((TRACES_METHOD, span_request(
        [{"ml.model.name": "good", "ml.label": f"L{i}", "ml.prediction.id": f"u{i}{tag}"} for i in range(3000)])))
    out.append(wide_histograms(round_))
    out.append((METRICS_METHOD, metric_request("ml.feature.drifted", [
        ({"ml.model.name": f"{round_}-{i}", "ml.feature.name": "y" * 1000}, ABSURD[i % 6]) for i in range(3000)])))
    out.append((METRICS_METHOD, metric_request("ml.predictions", [({"k": str(i)}, float(round_) * [1, math.inf][i % 2])
                                                                  for i in range(2000)], "sum")))
    return out


def wide_histograms(round_: int) -> tuple[str, bytes]:
    """25 histograms of 10,000 buckets (3 MB) under the name the shipped latency rule reads over 5 m."""
    wide = [float(b) for b in range(10_000)], [1] * 10_001
    return METRICS_METHOD, metric_request("ml.prediction.duration", [({"k": f"{round_}-{i}"}, wide)
                                                                     for i in range(25)], "histogram")


class Probe(threading.Thread):
    """A well-behaved sender and an operator: a span over gRPC and GET /-/healthy, every 0.2 s."""

    def __init__(self, grpc_port: int, admin: str) -> None:
        super().__init__(daemon=True)
        self.grpc_port, self.admin = grpc_port, admin
        self.slowest, self.failures, self.rounds = 0.0, [], 0
        self.stop = threading.Event()

    def run(self) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            export = channel.unary_unary(TRACES_METHOD)
            while not self.stop.wait(0.2):
                started = time.monotonic()
                try:
                    export(span_request([{"ml.model.name": "good", "ml.model.version": "1",
                                          "ml.feature.a": random.random()}]), timeout=30)
                    with urllib.request.urlopen(self.admin + "/-/healthy", timeout=30) as response:
                        assert response.status == 200
                except Exception as exc:  # noqa: BLE001 - every failure is what the test reports
                    self.failures.append(repr(exc)[:200])
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.rounds += 1


def test_hostile_predictions_and_metrics_keep_the_agent_serving_in_bounded_memory(tmp_path):
    grpc_port, http_port, admin_port = free_port(), free_port(), free_port()
    out = tmp_path / "out"
    out.mkdir()
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                             "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
        "processors": {
            "ml": {"reference": {"warmup": 20}, "window": {"size": 200, "min_size": 10, "max_age": "2s"},
                   "interval": "1s", "labels": {"window": {"size": 50, "min_size": 5, "max_age": "2s"}}},
            "alerts": {"evaluation_interval": "500ms", "rule_files": [str(REPO / "config/alerts/inference-rules.yaml")],
                       "rules": [{"name": "Drifted", "metric": "ml.feature.drifted", "group_by": ["ml.model.name"],
                                  "op": ">", "threshold": 0}],
                       "notifiers": {"log": {}}, "route": {"notifiers": ["log"], "group_wait": "0s"}}},
        "exporters": {"file/traces": {"path": str(out / "traces.json")},
                      "file/metrics": {"path": str(out / "metrics.json")},
                      "file/logs": {"path": str(out / "logs.json")}},
        "service": {"admin": {"endpoint": f"127.0.0.1:{admin_port}"}, "state_dir": str(tmp_path / "state"),
                    "pipelines": {
                        "traces": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file/traces"]},
                        "metrics": {"receivers": ["otlp", "ml"], "processors": ["alerts"],
                                    "exporters": ["file/metrics"]},
                        "logs": {"receivers": ["alerts"], "exporters": ["file/logs"]}}},
    }
    config_path = tmp_path / "vigil.yaml"
    config_path.write_text(yaml.safe_dump(config))
    admin = f"http://127.0.0.1:{admin_port}"
    with vigil_run(["-c", str(config_path)], tmp_path) as vigil, \
            grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        vigil.wait_running()
        agent = psutil.Process(vigil.proc.pid)
        # The models it watches before the storm: one with a few versions, so the engine is loaded.
        for version in ("1", "2"):
            channel.unary_unary(TRACES_METHOD)(span_request(
                [{"ml.model.name": "good", "ml.model.version": version, "ml.feature.a": random.random()}
                 for _ in range(100)]), timeout=30)
        # Their reference is the first 20; the other 80 make a window that closes by max_age: its
        # evaluation's memory belongs before the baseline, not to the histograms.
        def evaluated() -> bool:
            with urllib.request.urlopen(admin + "/api/v1/status", timeout=10) as response:
                models = json.load(response)["components"]["processors"]["ml"]["status"]["models"]
            return len(models) == 2 and all(m["windows_evaluated"] >= 1 for m in models)
        assert wait_for(evaluated, 30)
        time.sleep(1)
        baseline = agent.memory_info().rss
        probe = Probe(grpc_port, admin)
        probe.start()
        peak, codes, started = baseline, {}, time.monotonic()
        # First the histograms alone, which the alerts store kept whole: +187 MiB for these 12 requests,
        # and growing by 12 MiB with each, before max_buckets.
        for round_ in range(12):
            channel.unary_unary(METRICS_METHOD)(wide_histograms(round_)[1], timeout=60)
            peak = max(peak, agent.memory_info().rss)
        histograms_grown = (peak - baseline) / 2**20
        for round_ in range(ROUNDS):
            for method, body in hostile_requests(round_):
                try:
                    channel.unary_unary(method)(body, timeout=60)
                    codes["OK"] = codes.get("OK", 0) + 1
                except grpc.RpcError as exc:
                    codes[exc.code().name] = codes.get(exc.code().name, 0) + 1
                peak = max(peak, agent.memory_info().rss)
        time.sleep(3)  # windows close, intervals pass, rules evaluate what came
        peak = max(peak, agent.memory_info().rss)
        probe.stop.set()
        probe.join(30)
        with urllib.request.urlopen(admin + "/metrics", timeout=30) as response:
            metrics = response.read().decode()
        vigil.proc.terminate()
        assert vigil.proc.wait(60) == 0, vigil.stderr()[-3000:]
    grown = (peak - baseline) / 2**20
    print(f"\nhostile storm: {sum(codes.values())} requests in {time.monotonic() - started:.0f} s, answered "
          f"{codes}; RSS {baseline / 2**20:.0f} MiB, +{histograms_grown:.0f} MiB after the 10,000-bucket "
          f"histograms, peak {peak / 2**20:.0f} MiB (+{grown:.0f}); probe: "
          f"{probe.rounds} rounds, slowest {probe.slowest:.2f} s, {len(probe.failures)} failures")
    counts = [re.sub(r',?otel_scope_[a-z_]+="[^"]*"', "", line).replace("{,", "{").replace("{}", "")
              for line in metrics.splitlines() if line.startswith(("vigil_ml_", "vigil_alerts_"))]
    print("\n".join(f"  {line}" for line in counts))
    assert codes == {"OK": sum(codes.values())}, codes  # valid OTLP, however absurd: taken, not refused
    assert not probe.failures and probe.slowest < 10, (probe.failures, probe.slowest)
    assert histograms_grown < 100 and grown < 300, (histograms_grown, grown)
    assert "Traceback" not in vigil.stderr() and " ERROR " not in vigil.stderr(), vigil.stderr()[-3000:]
    assert not [line for line in counts if line.startswith(("vigil_ml_errors", "vigil_alerts_errors"))
                and not line.endswith(" 0.0")], counts
    # What the limits cut is counted: models beyond max_models, GenAI series beyond max_series,
    # unreadable histograms, series beyond max_series.
    for counted in ['vigil_ml_dropped_predictions_total{processor="ml",reason="limit"}',
                    'vigil_ml_dropped_genai_calls_total{processor="ml"}',
                    'vigil_alerts_dropped_total{processor="alerts",what="points"}',
                    'vigil_alerts_dropped_total{processor="alerts",what="series"}']:
        assert any(line.startswith(counted) and not line.endswith(" 0.0") for line in counts), (counted, counts)
