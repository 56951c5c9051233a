"""Writes the two dashboards in this folder from one list of panels, so they show the same things.

    .venv/bin/python examples/dashboards/generate.py

- `signoz-vigil.json`: SigNoz's dashboard JSON (Dashboards → New → Import JSON), querying the OTLP
  metrics Vigil exports by their own names (`ml.feature.drifted`, `hw.gpu.utilization`, ...).
- `grafana-vigil.json`: a Grafana dashboard over a Prometheus data source that scrapes Vigil's
  `prometheus` exporter, so names are the Prometheus forms of the same metrics
  (`ml_feature_drifted_ratio`, `hw_gpu_utilization_ratio`, `ml_prediction_duration_seconds_bucket`).

tests/examples/test_dashboards.py checks both files are what this script writes, that their
structure is what SigNoz and Grafana import, and that every metric they name is one Vigil emits.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Panel:
    title: str
    metric: str  # the OTLP name
    kind: str  # Gauge | Sum | Histogram (SigNoz's metric types)
    signoz: str  # SigNoz aggregation: avg, max, sum, rate, p95 ...
    promql: str  # the Grafana query
    group_by: list[str] = field(default_factory=list)
    unit: str = "none"  # SigNoz / Grafana unit
    description: str = ""
    legend: str = ""  # Grafana's legend format
    grafana_unit: str = "short"
    where: dict[str, str] = field(default_factory=dict)  # SigNoz filters: attribute = value


MODELS = [
    Panel("Predictions per second", "ml.predictions", "Sum", "rate",
          'sum by (ml_model_name, ml_model_version) (rate(ml_predictions_total{ml_model_name=~"$model"}[5m]))',
          ["ml.model.name", "ml.model.version"], "reqps", "Requests counted by the ml processor from prediction spans",
          "{{ml.model.name}} {{ml.model.version}}", "reqps"),
    Panel("p95 prediction latency", "ml.prediction.duration", "Histogram", "p95",
          'histogram_quantile(0.95, sum by (le, ml_model_name, ml_model_version) '
          '(rate(ml_prediction_duration_seconds_bucket{ml_model_name=~"$model"}[5m])))',
          ["ml.model.name", "ml.model.version"], "s", "From the prediction spans' durations",
          "{{ml.model.name}} {{ml.model.version}}", "s"),
    Panel("Prediction errors per second", "ml.prediction.errors", "Sum", "rate",
          'sum by (ml_model_name, error_type) (rate(ml_prediction_errors_total{ml_model_name=~"$model"}[5m]))',
          ["ml.model.name", "error.type"], "reqps", "Prediction spans with status ERROR, by error.type",
          "{{ml.model.name}} {{error.type}}", "reqps"),
    Panel("Drift share", "ml.model.drift.share", "Gauge", "max",
          'max by (ml_model_name, ml_model_version) (ml_model_drift_share_ratio{ml_model_name=~"$model"})',
          ["ml.model.name", "ml.model.version"], "percentunit",
          "Share of the model's columns that drifted in the last window", "{{ml.model.name}} {{ml.model.version}}",
          "percentunit"),
    Panel("Drifted features", "ml.feature.drifted", "Gauge", "max",
          'max by (ml_model_name, ml_feature_name) (ml_feature_drifted_ratio{ml_model_name=~"$model"}) > 0',
          ["ml.model.name", "ml.feature.name"], "none", "1 for each column that drifted in the last window",
          "{{ml.model.name}} {{ml.feature.name}}"),
    Panel("Feature drift score", "ml.feature.drift.score", "Gauge", "max",
          'max by (ml_model_name, ml_feature_name) (ml_feature_drift_score_ratio{ml_model_name=~"$model"})',
          ["ml.model.name", "ml.feature.name"], "none",
          "Effect size per column (ml.drift.method: Wasserstein normed, Jensen-Shannon, ...)",
          "{{ml.model.name}} {{ml.feature.name}}"),
    Panel("Missing values", "ml.feature.missing.ratio", "Gauge", "max",
          'max by (ml_model_name, ml_feature_name) (ml_feature_missing_ratio{ml_model_name=~"$model"})',
          ["ml.model.name", "ml.feature.name"], "percentunit", "Share of predictions without the feature",
          "{{ml.model.name}} {{ml.feature.name}}", "percentunit"),
    Panel("Low-confidence predictions", "ml.prediction.low_confidence.ratio", "Gauge", "max",
          'max by (ml_model_name, ml_model_version) (ml_prediction_low_confidence_ratio{ml_model_name=~"$model"})',
          ["ml.model.name", "ml.model.version"], "percentunit", "Share of predictions under the confidence threshold",
          "{{ml.model.name}} {{ml.model.version}}", "percentunit"),
    Panel("Median confidence", "ml.prediction.confidence", "Histogram", "p50",
          'histogram_quantile(0.5, sum by (le, ml_model_name) '
          '(rate(ml_prediction_confidence_bucket{ml_model_name=~"$model"}[5m])))',
          ["ml.model.name"], "percentunit", "Top-class probability", "{{ml.model.name}}", "percentunit"),
    Panel("Estimated accuracy", "ml.model.accuracy.estimated", "Gauge", "avg",
          'avg by (ml_model_name, ml_model_version) (ml_model_accuracy_estimated_ratio{ml_model_name=~"$model"})',
          ["ml.model.name", "ml.model.version"], "percentunit", "Label-free estimate from calibrated confidence",
          "estimated {{ml.model.name}} {{ml.model.version}}", "percentunit"),
    Panel("Realized accuracy", "ml.model.accuracy", "Gauge", "avg",
          'avg by (ml_model_name, ml_model_version) (ml_model_accuracy_ratio{ml_model_name=~"$model"})',
          ["ml.model.name", "ml.model.version"], "percentunit", "From ground-truth labels joined to predictions",
          "realized {{ml.model.name}} {{ml.model.version}}", "percentunit"),
]
GPUS = [
    Panel("GPU utilization", "hw.gpu.utilization", "Gauge", "avg",
          "avg by (instance, hw_id) (hw_gpu_utilization_ratio)", ["host.name", "hw.id"], "percentunit", "",
          "{{instance}} {{hw.id}}", "percentunit"),
    Panel("GPU memory used", "hw.gpu.memory.usage", "Sum", "avg",
          "sum by (instance, hw_id) (hw_gpu_memory_usage_bytes)", ["host.name", "hw.id"], "bytes", "",
          "{{instance}} {{hw.id}}", "bytes"),
    Panel("GPU memory total", "hw.gpu.memory.limit", "Sum", "avg",
          "sum by (instance, hw_id) (hw_gpu_memory_limit_bytes)", ["host.name", "hw.id"], "bytes", "",
          "{{instance}} {{hw.id}}", "bytes"),
    Panel("GPU temperature", "hw.temperature", "Gauge", "max",
          "max by (instance, hw_id) (hw_temperature_celsius)", ["host.name", "hw.id"], "celsius", "",
          "{{instance}} {{hw.id}}", "celsius"),
    Panel("GPU power", "hw.power", "Gauge", "avg", "sum by (instance, hw_id) (hw_power_watts)",
          ["host.name", "hw.id"], "watt", "", "{{instance}} {{hw.id}}", "watt"),
    Panel("GPU memory errors (ECC)", "hw.errors", "Sum", "rate",
          "sum by (instance, hw_id, error_type) (rate(hw_errors_total[5m]))",
          ["host.name", "hw.id", "error.type"], "none", "Corrected and uncorrected memory errors per second",
          "{{instance}} {{hw.id}} {{error.type}}"),
    Panel("GPU XID errors", "hw.gpu.xid.errors", "Sum", "rate",
          "sum by (instance, hw_id) (rate(hw_gpu_xid_errors_total[5m]))",
          ["host.name", "hw.id"], "none", "XID critical errors per second (the records are in the logs)",
          "{{instance}} {{hw.id}}"),
]
HOST = [
    Panel("CPU idle", "system.cpu.utilization", "Gauge", "avg",
          'avg by (instance) (system_cpu_utilization_ratio{cpu_mode="idle"})',
          ["host.name"], "percentunit", "Share of CPU time idle, averaged over logical CPUs", "{{instance}}",
          "percentunit", {"cpu.mode": "idle"}),
    Panel("Memory utilization", "system.memory.utilization", "Gauge", "max",
          'max by (instance) (system_memory_utilization_ratio{system_memory_state="used"})',
          ["host.name"], "percentunit", "", "{{instance}}", "percentunit", {"system.memory.state": "used"}),
    Panel("Filesystem utilization", "system.filesystem.utilization", "Gauge", "max",
          "max by (instance, system_filesystem_mountpoint) (system_filesystem_utilization_ratio)",
          ["host.name", "system.filesystem.mountpoint"], "percentunit", "", "{{instance}} {{system.filesystem.mountpoint}}",
          "percentunit"),
    Panel("Network I/O", "system.network.io", "Sum", "rate",
          "sum by (instance, network_io_direction) (rate(system_network_io_bytes_total[5m]))",
          ["host.name", "network.io.direction"], "binBps", "", "{{instance}} {{network.io.direction}}", "Bps"),
    Panel("Load average (1m)", "system.cpu.load_average.1m", "Gauge", "avg",
          "avg by (instance) (system_cpu_load_average_1m)", ["host.name"], "none", "", "{{instance}}"),
]
ROWS = [("Models", MODELS), ("GPUs", GPUS), ("Host", HOST)]


def _id(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "vigil/" + "/".join(parts)))


def _signoz_key(name: str, data_type: str = "string", type_: str = "tag") -> dict:
    return {"dataType": data_type, "id": f"{name}--{data_type}--{type_}--false", "isColumn": False,
            "isJSON": False, "key": name, "type": type_}


def _signoz_query(panel: Panel, with_model_filter: bool) -> dict:
    space = panel.signoz if panel.kind == "Histogram" else ("sum" if panel.signoz == "rate" else panel.signoz)
    time_aggregation = "" if panel.kind == "Histogram" else ("rate" if panel.signoz == "rate" else panel.signoz)
    items = []
    if with_model_filter:
        items.append({"id": _id(panel.title, "model"), "key": _signoz_key("ml.model.name"), "op": "in",
                      "value": ["{{.model}}"]})
    for key, value in panel.where.items():
        items.append({"id": _id(panel.title, key), "key": _signoz_key(key), "op": "=", "value": value})
    return {
        "aggregateAttribute": {"dataType": "float64", "id": f"{panel.metric}--float64--{panel.kind}--true",
                               "isColumn": True, "isJSON": False, "key": panel.metric, "type": panel.kind},
        "aggregateOperator": panel.signoz, "dataSource": "metrics", "disabled": False, "expression": "A",
        "filters": {"items": items, "op": "AND"}, "functions": [],
        "groupBy": [_signoz_key(g) for g in panel.group_by], "having": [],
        "legend": " ".join("{{%s}}" % g for g in panel.group_by),
        "limit": None, "orderBy": [], "queryName": "A", "reduceTo": "avg", "stepInterval": 60,
        "timeAggregation": time_aggregation, "spaceAggregation": space,
    }


def _signoz_widget(wid: str, title: str, panel: Panel | None, with_model_filter: bool = False) -> dict:
    query = {"builder": {"queryData": [_signoz_query(panel, with_model_filter)] if panel else [],
                         "queryFormulas": []},
             "clickhouse_sql": [{"disabled": False, "legend": "", "name": "A", "query": ""}],
             "id": _id(wid, "query"), "promql": [{"disabled": False, "legend": "", "name": "A", "query": ""}],
             "queryType": "builder"}
    return {"description": panel.description if panel else "", "fillSpans": False, "id": wid, "isStacked": False,
            "nullZeroValues": "zero", "opacity": "1", "panelTypes": "graph" if panel else "row", "query": query,
            "softMax": None, "softMin": None, "thresholds": [], "timePreferance": "GLOBAL_TIME", "title": title,
            "yAxisUnit": panel.unit if panel else "none"}


def signoz() -> dict:
    layout, widgets, y = [], [], 0
    for row, panels in ROWS:
        wid = _id("signoz", row)
        layout.append({"h": 1, "i": wid, "maxH": 1, "minH": 1, "minW": 12, "moved": False, "static": False,
                       "w": 12, "x": 0, "y": y})
        widgets.append(_signoz_widget(wid, row, None))
        y += 1
        for n, panel in enumerate(panels):
            wid = _id("signoz", row, panel.title)
            layout.append({"h": 6, "i": wid, "moved": False, "static": False, "w": 6, "x": 6 * (n % 2),
                           "y": y + 6 * (n // 2)})
            widgets.append(_signoz_widget(wid, panel.title, panel, with_model_filter=row == "Models"))
        y += 6 * ((len(panels) + 1) // 2)
    variable = _id("signoz", "variable", "model")
    return {
        "id": _id("signoz", "dashboard"),
        "title": "Vigil: models, GPUs and host",
        "description": "Per model and version: throughput, p95 latency, errors, drift share and drifted features, "
                       "confidence, estimated vs realized accuracy; GPUs and host from Vigil's receivers.",
        "tags": ["vigil", "ml", "gpu", "hostmetrics"], "name": "vigil", "version": "v4",
        "layout": layout, "widgets": widgets,
        "variables": {variable: {
            "allSelected": True, "customValue": "", "description": "Model (ml.model.name)", "id": variable,
            "key": variable, "modificationUUID": variable, "multiSelect": True, "name": "model", "order": 0,
            "queryValue": "SELECT DISTINCT JSONExtractString(labels, 'ml.model.name') AS model "
                          "FROM signoz_metrics.distributed_time_series_v4_1day "
                          "WHERE metric_name = 'ml.model.drift.share'",
            "selectedValue": [], "showALLOption": True, "sort": "ASC", "textboxValue": "", "type": "QUERY"}},
    }


def grafana() -> dict:
    panels, y, pid = [], 0, 1
    for row, row_panels in ROWS:
        panels.append({"type": "row", "title": row, "id": pid, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid += 1
        y += 1
        for n, panel in enumerate(row_panels):
            legend = panel.legend.replace(".", "_")  # Prometheus label names
            panels.append({
                "type": "timeseries", "title": panel.title, "id": pid, "description": panel.description,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (n % 2), "y": y + 8 * (n // 2)},
                "fieldConfig": {"defaults": {"unit": panel.grafana_unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                            "tooltip": {"mode": "multi", "sort": "desc"}},
                "targets": [{"datasource": {"type": "prometheus", "uid": "${datasource}"}, "refId": "A",
                             "expr": panel.promql, "legendFormat": legend}],
            })
            pid += 1
        y += 8 * ((len(row_panels) + 1) // 2)
    return {
        "title": "Vigil: models, GPUs and host", "uid": "vigil-overview", "schemaVersion": 39, "version": 1,
        "tags": ["vigil", "ml", "gpu"], "editable": True, "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s", "timezone": "", "panels": panels,
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
            {"name": "model", "type": "query", "label": "Model", "multi": True, "includeAll": True,
             "allValue": ".*", "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(ml_model_drift_share_ratio, ml_model_name)", "refId": "model"},
             "refresh": 2},
        ]},
        "annotations": {"list": []},
    }


def main() -> None:
    for name, document in (("signoz-vigil.json", signoz()), ("grafana-vigil.json", grafana())):
        (HERE / name).write_text(json.dumps(document, indent=2) + "\n")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
