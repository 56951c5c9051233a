"""`vigil analyze`'s report and `vigil profile show`'s profile rendered: as JSON, and as aligned tables
for people (drifted columns marked DRIFT, the statistic the decision used starred).
"""

from __future__ import annotations

import json
import time
from typing import Any

from agent.ml import statistics
from agent.ml.multivariate import MultivariateReference
from agent.ml.offline.analysis import number
from agent.ml.performance import CLASSIFICATION_METRICS, REGRESSION, REGRESSION_METRICS, PerformanceProfile
from agent.ml.profile import NUMERIC, ColumnProfile, Profile
from agent.ml.vocabulary import HEALTH_KINDS

# A health kind's column in the table, where its name is too wide.
HEALTH_HEADINGS = {"type_mismatch": "mismatch", "out_of_range": "out_range", "unseen_category": "unseen"}

TABLE_LEGEND = ("DRIFT: the column drifted (corrected p_value below alpha and the starred effect size at or over "
                "its threshold); untested: too few values.\np_value is corrected across the chunk's columns; "
                "health columns are shares of the chunk's rows (missing) or present values (the others).\n")


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, allow_nan=False) + "\n"


def format_report(report: dict[str, Any], reference: str, current: str,
                  methods: dict[str, str] | None = None, drift_share: float | None = None) -> str:
    parts = [report_header(reference, report["reference_rows"], current)]
    start = 0
    for chunk in report["chunks"]:
        parts.append("\n" + format_chunk(chunk, start, methods, drift_share))
        start += chunk["rows"]
    parts.append("\n" + TABLE_LEGEND)
    return "".join(parts)


def report_header(reference: str, reference_rows: int, current: str) -> str:
    return f"reference: {reference} ({reference_rows} rows)\ncurrent:   {current}\n"


def format_chunk(chunk: dict[str, Any], start_row: int, methods: dict[str, str] | None = None,
                 drift_share: float | None = None) -> str:
    """One chunk as an aligned table for people; drifted columns marked DRIFT.

    `methods` (column → the statistic the decision used) puts a `*` on that cell when it drifted.
    """
    drift_ = chunk["drift"]
    features = drift_["features"]
    tested = sum(f["p_value"] is not None for f in features.values())
    drifted = drift_["drifted_features"]
    verdict = "yes" if drift_["detected"] else "no"
    rows = chunk["rows"]
    span = f"rows {start_row + 1}-{start_row + rows}" if rows else "no rows"
    threshold = f", threshold {_percent(drift_share)}" if drift_share is not None else ""
    names = f": {', '.join(drifted)}" if drifted else ""
    lines = [f"chunk {chunk['index']}: {span} ({rows} rows): dataset drift: {verdict} ({len(drifted)} of "
             f"{tested} columns drifted{threshold}){names}"]
    header = ["column", "type", "drift", "p_value", *(s.heading for s in statistics.STATISTICS),
              *(HEALTH_HEADINGS.get(kind, kind) for kind in HEALTH_KINDS)]
    table = [header]
    for name, feature in features.items():
        state = "DRIFT" if feature["drifted"] else ("ok" if feature["p_value"] is not None else "untested")
        row = [name, feature["type"], state, _p(feature["p_value"])]
        for key in statistics.BY_NAME:
            if key not in feature["statistics"]:
                row.append("")
                continue
            cell = _stat(feature["statistics"][key])
            if feature["drifted"] and methods and methods.get(name) == key:
                cell += "*"
            row.append(cell)
        h = chunk["health"].get(name, {})
        row += [_share(h.get(key)) for key in HEALTH_KINDS]
        table.append(row)
    lines += ["  " + line for line in _align(table, right_from=3)]
    if "multivariate" in drift_:
        lines.append(format_multivariate(drift_["multivariate"]))
    if "performance" in chunk:
        lines += format_performance(chunk["performance"])
    return "\n".join(lines) + "\n"


def format_multivariate(m: dict[str, Any]) -> str:
    """A chunk's multivariate drift for people, in one line."""
    state = "DRIFT" if m["drifted"] else ("ok" if m["statistic"] is not None else "untested (too few rows)")
    return (f"  multivariate drift ({m['method']}): {state}: statistic {_stat(m['statistic'])}, threshold "
            f"{_stat(m['threshold'])}, p_value {_p(m['p_value'])}")


def format_performance(p: dict[str, Any]) -> list[str]:
    """A chunk's performance for people: one row per metric, estimated and realised, with its bound."""
    verdict = "DEGRADED: " + ", ".join(p["degraded_metrics"]) if p["degraded"] else "not degraded"
    lines = [f"  performance ({p['problem']}; {p['labeled_rows']} of {p['rows']} rows labelled): {verdict}"]
    names = REGRESSION_METRICS if p["problem"] == REGRESSION else CLASSIFICATION_METRICS
    table = [["metric", "estimated", "bound", "realized", "bound"]]
    bounds = p.get("bounds", {})
    for name in names:
        estimated, realized = p.get(f"estimated_{name}"), p.get(f"realized_{name}")
        if estimated is None and realized is None:
            continue
        cells = [name]
        for source, value in (("estimated", estimated), ("realized", realized)):
            mark = "*" if f"{source}_{name}" in p["degraded_metrics"] else ""
            cells += [_stat(value) + mark, _stat(bounds.get(f"{source}_{name}"))]
        table.append(cells)
    if len(table) > 1:
        lines += ["    " + line for line in _align(table, right_from=1)]
    return lines


# --- profiles ------------------------------------------------------------------

def profile_to_dict(profile: Profile) -> dict[str, Any]:
    """A profile as plain JSON-able data (what `vigil profile show --format json` prints)."""

    def column(c: ColumnProfile) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": c.name, "kind": c.kind, "value_type": c.value_type, "count": int(c.count),
                                 "missing": int(c.missing), "missing_share": number(c.missing_share)}
        if c.kind == NUMERIC:
            entry["numeric"] = {"mean": number(c.mean), "std": number(c.std), "min": number(c.min),
                                "max": number(c.max), "bin_edges": [number(e) for e in c.bin_edges],
                                "bin_counts": [int(n) for n in c.bin_counts],
                                "reservoir_size": int(c.reservoir.size)}
        else:
            entry["categorical"] = {"categories": {k: int(v) for k, v in c.categories.items()}}
        return entry

    out = {"model_name": profile.model_name, "model_version": profile.model_version, "rows": int(profile.rows),
           "source": profile.source, "created_time_unix_nano": int(profile.created_time_unix_nano),
           "features": [column(c) for c in profile.features.values()],
           "predictions": [column(c) for c in profile.predictions.values()]}
    if profile.multivariate:
        out["multivariate"] = [multivariate_to_dict(m) for m in profile.multivariate]
    perf = profile.performance
    if perf is not None:
        numbers = lambda d: {k: number(v) for k, v in d.items()}  # noqa: E731
        c = perf.calibration
        out["performance"] = {
            "problem": perf.problem, "positive_class": perf.positive_class or None, "classes": list(perf.classes),
            "threshold": number(perf.threshold), "labeled_rows": int(perf.labeled_rows),
            "window_rows": int(perf.window_rows), "reference": numbers(perf.reference),
            "estimated": numbers(perf.estimated), "estimated_std": numbers(perf.estimated_std),
            "realized_std": numbers(perf.realized_std),
            "calibration": None if c is None else {
                "method": c.method, "applied": bool(c.applied), "folds": int(c.folds),
                "brier_raw": number(c.brier_raw), "brier_calibrated": number(c.brier_calibrated),
                "points": int(c.x.size)}}
    return out


def multivariate_to_dict(m: MultivariateReference) -> dict[str, Any]:
    entry: dict[str, Any] = {"columns": list(m.columns), "embedding": m.embedding or None, "dims": m.dims}
    if m.mmd is not None:
        entry["mmd"] = {"sample_rows": int(m.mmd.sample.shape[0]), "projected_dims": int(m.mmd.projection.shape[0]),
                        "bandwidth": number(m.mmd.bandwidth)}
    if m.reconstruction is not None:
        r = m.reconstruction
        entry["reconstruction"] = {"components": int(r.components.shape[0]), "error_mean": number(r.error_mean),
                                   "error_std": number(r.error_std), "rows": int(r.rows)}
    return entry


def multivariate_line(m: MultivariateReference) -> str:
    parts = []
    if m.mmd is not None:
        projected = f", projected to {m.mmd.projection.shape[0]}" if m.mmd.projection.shape[0] else ""
        parts.append(f"mmd ({m.mmd.sample.shape[0]} reference rows{projected}, bandwidth {m.mmd.bandwidth:.4g})")
    if m.reconstruction is not None:
        r = m.reconstruction
        parts.append(f"reconstruction ({r.components.shape[0]} components, error {r.error_mean:.4g} ± "
                     f"{r.error_std:.4g})")
    return f"multivariate: {m.input_name} ({m.dims} dimensions): {'; '.join(parts)}"


def format_profile(profile: Profile, top: int = 5) -> str:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(profile.created_time_unix_nano / 1e9))
    lines = [f"model:    {profile.model_name or '-'}", f"version:  {profile.model_version or '-'}",
             f"rows:     {profile.rows}", f"source:   {profile.source or '-'}", f"created:  {created}"]
    if profile.performance is not None:
        lines.append(performance_line(profile.performance))
    lines += [multivariate_line(m) for m in profile.multivariate]
    for title, columns in (("features", profile.features), ("predictions", profile.predictions)):
        lines.append("")
        lines.append(f"{title} ({len(columns)})")
        if not columns:
            continue
        table = [["column", "kind", "type", "missing", "mean", "std", "min", "max", "bins", "top categories"]]
        for c in columns.values():
            row = [c.name, c.kind, c.value_type, _share(c.missing_share)]
            if c.kind == NUMERIC:
                stats = [f"{v:.6g}" if c.reservoir.size else "-" for v in (c.mean, c.std, c.min, c.max)]
                row += [*stats, str(c.bin_counts.size), ""]
            else:
                total = sum(c.categories.values())
                ranked = sorted(c.categories.items(), key=lambda item: (-item[1], item[0]))
                shown = ", ".join(f"{k} {v / total:.1%}" for k, v in ranked[:top])
                more = f", … (+{len(ranked) - top})" if len(ranked) > top else ""
                row += ["", "", "", "", "", shown + more]
            table.append(row)
        lines += ["  " + line for line in _align(table, right_from=3, right_to=9)]
        numeric = [c for c in columns.values() if c.kind == NUMERIC and c.bin_counts.size]
        if numeric:
            lines.append("  bins (inner edges; counts per bin, below the first edge to above the last):")
            for c in numeric:
                edges = ", ".join(f"{e:.6g}" for e in c.bin_edges)
                counts = ", ".join(str(int(n)) for n in c.bin_counts)
                lines.append(f"    {_printable(c.name)}: edges [{edges}]  counts [{counts}]")
    return "\n".join(lines) + "\n"


def performance_line(perf: PerformanceProfile) -> str:
    """What a profile's performance says, in one line."""
    c = perf.calibration
    calibration = "no calibration (no score or confidence)" if c is None else (
        f"{c.method} calibration {'applied' if c.applied else 'not applied'} (held-out Brier "
        f"{_stat(number(c.brier_calibrated))} vs raw {_stat(number(c.brier_raw))})")
    shown = ", ".join(f"{k} {v:.4f}" for k, v in perf.reference.items())
    positive = f", positive class {perf.positive_class!r}" if perf.positive_class else ""
    return (f"performance ({perf.problem}{positive}) from {perf.labeled_rows} labelled rows: {shown}; "
            f"{calibration}")


# --- cells -------------------------------------------------------------------

def _align(rows: list[list[str]], right_from: int, right_to: int | None = None) -> list[str]:
    """Rows of cells as aligned lines: columns [right_from, right_to) flush right (numbers), others left."""
    rows = [[_printable(cell) for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right_to = len(widths) if right_to is None else right_to
    out = []
    for row in rows:
        cells = [cell.rjust(w) if right_from <= i < right_to else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
    return out


def _printable(text: str) -> str:
    """Names and categories as one line of visible text (control characters escaped)."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2e}" if 0 < value < 1e-3 else f"{value:.4f}"


def _stat(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) >= 1000 else f"{value:.4f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _percent(value: float) -> str:
    """50%, 33.3%: a share as people write it."""
    return f"{value:.1%}".replace(".0%", "%")
