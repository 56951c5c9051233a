"""`vigil analyze --format html`: the report as one self-contained HTML page to open or share.

No scripts and no external assets, so it works offline and in a mail
attachment; the charts are `agent.admin.charts`' (the status page's). In order:
a summary (dataset drift and the drifted columns per chunk, the drift share
over chunks), the columns that drifted (in how many chunks, the effect size
over chunks), the label-free estimate against realised performance over
chunks, multivariate drift over chunks, data health (each column's worst
chunk per check), then a section per chunk: its table and, when it drifted,
the reference against the chunk for its drifted columns (at most
`MAX_CHARTS`, the largest effects first). Every name and category is escaped.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from agent.admin import charts
from agent.admin.charts import escape as _e
from agent.admin.charts import fmt, percent
from agent.ml import distribution, drift
from agent.ml.profile import Profile
from agent.ml.tables import Table
from agent.ml.vocabulary import HEALTH_KINDS

MAX_CHARTS = 12  # distributions drawn per drifted chunk
MAX_NAMED = 8  # drifted columns named in a summary row before "+N more"
_METRICS = ("accuracy", "roc_auc", "f1", "precision", "recall", "mae", "rmse", "mape")

_CSS = charts.PAGE_CSS + """
td.bad{color:#8a1c12;font-weight:600}
.yes{background:#fdd9d7;color:#8a1c12}.no{background:#d7f5dd;color:#17602a}
details{margin:4px 0}summary{cursor:pointer}
"""


def chunk_distributions(profile: Profile, table: Table, chunk: dict[str, Any],
                        sentinels: Sequence[float | str]) -> dict[str, dict[str, Any]]:
    """The reference against the chunk for its drifted columns (the largest effects first, at most
    MAX_CHARTS): what the report draws, kept while the chunks are read."""
    features = chunk["drift"]["features"]
    drifted = sorted(chunk["drift"]["drifted_features"], key=lambda n: -_effect(features.get(n, {})))[:MAX_CHARTS]
    columns = profile.columns()
    views = drift.views(profile, table.columns, table.rows, sentinels)
    return {name: distribution.column(columns[name], views[name]) for name in drifted if name in columns}


def render(report: dict[str, Any], reference: str, current: str, distributions: list[dict[str, dict[str, Any]]],
           methods: dict[str, str] | None = None, drift_share: float | None = None) -> str:
    """The whole page; `distributions`: per chunk, `chunk_distributions`' answer."""
    chunks = report["chunks"]
    methods = methods or {}
    rows = sum(c["rows"] for c in chunks)
    drifted_chunks = sum(1 for c in chunks if c["drift"]["detected"])
    made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<link rel=icon href="data:,">',
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        f"<title>Vigil drift report: {_e(current)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>Drift report</h1><div>reference {_e(reference)} ({_e(report['reference_rows'])} rows) "
        f"&middot; current {_e(current)} ({rows} rows in {len(chunks)} chunk{'s' * (len(chunks) != 1)}) "
        f"&middot; made {made} by vigil analyze</div></header><main>",
        _summary(chunks, drift_share, drifted_chunks),
        _drifted_columns(chunks, methods),
        _performance(chunks),
        _multivariate(chunks),
        _health(chunks),
        "<section id=chunks><h2>Chunks</h2>",
    ]
    start = 0
    for chunk, dists in zip(chunks, distributions + [{}] * (len(chunks) - len(distributions))):
        parts.append(_chunk(chunk, start, dists, methods))
        start += chunk["rows"]
    parts.append("</section></main></body></html>")
    return "".join(parts)


def _effect(feature: dict[str, Any], method: str | None = None) -> float:
    stats = feature.get("statistics") or {}
    value = stats.get(method) if method else None
    if value is None:
        value = next((v for v in stats.values() if v is not None), None)
    return value if isinstance(value, (int, float)) else 0.0


def _badge(yes: bool, text: str | None = None) -> str:
    return f"<span class='badge {'yes' if yes else 'no'}'>{_e(text or ('drift' if yes else 'no drift'))}</span>"


def _chunk_label(index: float) -> str:
    return f"chunk {int(index)}"


def _summary(chunks: list[dict[str, Any]], drift_share: float | None, drifted_chunks: int) -> str:
    shares = [c["drift"].get("share") for c in chunks]
    chart = charts.time_series([("drift share", [c["index"] for c in chunks], shares)], label="drift share per chunk",
                               threshold=drift_share, y_max=1.0, x_format=_chunk_label, width=640,
                               marks=[c["index"] for c in chunks if c["drift"]["detected"]])
    rows = []
    for c in chunks:
        d = c["drift"]
        names = d["drifted_features"]
        shown = ", ".join(names[:MAX_NAMED]) + (f" (+{len(names) - MAX_NAMED} more)" if len(names) > MAX_NAMED else "")
        tested = sum(1 for f in d["features"].values() if f.get("p_value") is not None)
        mv = d.get("multivariate")
        perf = c.get("performance")
        rows.append(f"<tr class='chunk-row{' drifted' if d['detected'] else ''}' data-chunk={c['index']}>"
                    f"<td><a href='#chunk-{c['index']}'>chunk {c['index']}</a></td><td class=n>{c['rows']}</td>"
                    f"<td>{_badge(d['detected'])}</td><td class=n>{percent(d.get('share'))}</td>"
                    f"<td class=n>{len(names)} of {tested}</td><td>{_e(shown or '-')}</td>"
                    f"<td>{'-' if not mv else _badge(mv['drifted'])}</td>"
                    f"<td>{'-' if not perf else _badge(perf['degraded'], 'degraded' if perf['degraded'] else 'ok')}"
                    "</td></tr>")
    threshold = f" (threshold {percent(drift_share)})" if drift_share is not None else ""
    return (f"<section id=summary><h2>Summary</h2><p>Dataset drift in <b>{drifted_chunks}</b> of {len(chunks)} "
            f"chunks{threshold}.</p><div class=panel>{chart}</div>"
            "<table><tr><th>chunk</th><th>rows</th><th>dataset drift</th><th>share</th><th>columns drifted</th>"
            "<th>drifted columns</th><th>multivariate</th><th>performance</th></tr>"
            f"{''.join(rows)}</table></section>")


def _drifted_columns(chunks: list[dict[str, Any]], methods: dict[str, str]) -> str:
    names = list(dict.fromkeys(n for c in chunks for n in c["drift"]["features"]))
    counts = {n: sum(1 for c in chunks if n in c["drift"]["drifted_features"]) for n in names}
    order = sorted(names, key=lambda n: (-counts[n], n))
    rows = []
    for name in order:
        effects = [_effect(c["drift"]["features"].get(name, {}), methods.get(name))
                   if name in c["drift"]["features"] else None for c in chunks]
        marks = [name in c["drift"]["drifted_features"] for c in chunks]
        kind = next((c["drift"]["features"][name]["type"] for c in chunks if name in c["drift"]["features"]), "")
        rows.append(f"<tr class='column{' drifted' if counts[name] else ''}' data-column='{_e(name)}'>"
                    f"<td>{_e(name)}</td><td>{_e(kind)}</td><td>{_e(methods.get(name, '-'))}</td>"
                    f"<td class=n>{counts[name]} of {len(chunks)}</td>"
                    f"<td class=n>{fmt(max((e for e in effects if e is not None), default=None))}</td>"
                    f"<td>{charts.sparkline(effects, marks=marks, width=160)}</td></tr>")
    return ("<section id=columns><h2>Columns</h2><table><tr><th>column</th><th>type</th><th>statistic</th>"
            "<th>drifted in</th><th>largest effect</th><th>effect over chunks (red: drifted)</th></tr>"
            f"{''.join(rows)}</table></section>")


def _performance(chunks: list[dict[str, Any]]) -> str:
    perfs = [c.get("performance") or {} for c in chunks]
    if not any(perfs):
        return ""
    indexes = [c["index"] for c in chunks]
    panels = []
    for metric in _METRICS:
        estimated = [p.get(f"estimated_{metric}") for p in perfs]
        realized = [p.get(f"realized_{metric}") for p in perfs]
        if all(v is None for v in estimated + realized):
            continue
        # Each side is judged by its own bound, per chunk (it narrows with the chunk's rows): the verdict's.
        bounds = [[(p.get("bounds") or {}).get(f"{side}_{metric}") for p in perfs] for side in ("estimated", "realized")]
        panels.append(f"<div class=panel data-metric={metric}><h3>{_e(metric)}</h3>" + charts.time_series(
            [("estimated", indexes, estimated), ("realized", indexes, realized)], label=f"{metric} over chunks",
            y_min=None, bounds=bounds, x_format=_chunk_label) + "</div>")
    return ("<section id=performance><h2>Performance: the label-free estimate against realised</h2>"
            "<p class=muted>Solid: the metric per chunk, blue the label-free estimate, orange realised (from the "
            "labels). Dashed, in the same colour: the bound that line is judged by, from the reference's spread "
            "for a chunk of that size; a chunk is degraded when a line crosses its own bound (below it, or above "
            "it for an error such as mae). A metric without dashed lines is not watched.</p>"
            f"<div class=panels>{''.join(panels)}</div></section>")


def _multivariate(chunks: list[dict[str, Any]]) -> str:
    found = [(c["index"], c["drift"]["multivariate"]) for c in chunks if c["drift"].get("multivariate")]
    if not found:
        return ""
    method = found[0][1].get("method", "")
    threshold = next((m["threshold"] for _, m in found if m.get("threshold") is not None), None)
    chart = charts.time_series([("statistic", [i for i, _ in found], [m.get("statistic") for _, m in found])],
                               label="multivariate drift statistic per chunk", threshold=threshold,
                               marks=[i for i, m in found if m.get("drifted")], x_format=_chunk_label, width=640)
    drifted = sum(1 for _, m in found if m.get("drifted"))
    return (f"<section id=multivariate><h2>Multivariate drift ({_e(method)})</h2><p>Drifted in <b>{drifted}</b> of "
            f"{len(found)} chunks.</p><div class=panel>{chart}</div></section>")


def _health(chunks: list[dict[str, Any]]) -> str:
    names = list(dict.fromkeys(n for c in chunks for n in c.get("health", {})))
    rows = []
    for name in names:
        cells = []
        for kind in HEALTH_KINDS:
            worst, at = None, None
            for c in chunks:
                value = c.get("health", {}).get(name, {}).get(kind)
                if value is not None and (worst is None or value > worst):
                    worst, at = value, c["index"]
            where = f" <small>(chunk {at})</small>" if worst else ""
            cells.append(f"<td class='n{' bad' if worst else ''}'>{percent(worst)}{where}</td>")
        rows.append(f"<tr><td>{_e(name)}</td>{''.join(cells)}</tr>")
    heads = "".join(f"<th>{_e(k.replace('_', ' '))}</th>" for k in HEALTH_KINDS)
    return ("<section id=health><h2>Data health</h2><p class=muted>Each column's worst chunk per check: shares of "
            "the chunk's rows (missing) or of its present values (the others).</p>"
            f"<table><tr><th>column</th>{heads}</tr>{''.join(rows)}</table></section>")


def _chunk(chunk: dict[str, Any], start: int, dists: dict[str, dict[str, Any]], methods: dict[str, str]) -> str:
    d = chunk["drift"]
    span = f"rows {start + 1}-{start + chunk['rows']}" if chunk["rows"] else "no rows"
    rows = []
    order = sorted(d["features"].items(), key=lambda kv: (not kv[1]["drifted"], -_effect(kv[1], methods.get(kv[0]))))
    for name, f in order:
        health = chunk.get("health", {}).get(name, {})
        # Only the checks a column failed: most cells would read 0.0% (and a report may have 5,000 rows).
        problems = ", ".join(f"{k.replace('_', ' ')} {percent(health[k])}" for k in HEALTH_KINDS if health.get(k))
        state = "DRIFT" if f["drifted"] else ("ok" if f["p_value"] is not None else "untested")
        p = f["p_value"]
        rows.append(f"<tr class='column{' drifted' if f['drifted'] else ''}'><td>{_e(name)}</td>"
                    f"<td>{_e(f['type'][:3])}</td><td>{state}</td><td class=n>{'-' if p is None else f'{p:.2g}'}</td>"
                    f"<td class=n>{fmt(_effect(f, methods.get(name)) if f['statistics'] else None)}</td>"
                    f"<td{' class=bad' if problems else ''}>{problems or '-'}</td></tr>")
    charts_html = "".join(_distribution(name, dist) for name, dist in dists.items())
    if charts_html:
        more = len(d["drifted_features"]) - len(dists)
        charts_html = (f"<h3>The reference against chunk {chunk['index']}"
                       f"{f' (the {len(dists)} largest effects; {more} more drifted)' if more > 0 else ''}</h3>"
                       f"<div class=features>{charts_html}</div>")
    mv = d.get("multivariate")
    mv_html = "" if not mv else (f"<p>Multivariate drift ({_e(mv['method'])}): {_badge(mv['drifted'])} statistic "
                                 f"{fmt(mv.get('statistic'))}, threshold {fmt(mv.get('threshold'))}, p "
                                 f"{fmt(mv.get('p_value'))}</p>")
    return (f"<section class=chunk id=chunk-{chunk['index']} data-drifted='{str(d['detected']).lower()}'>"
            f"<h2>Chunk {chunk['index']}: {span} {_badge(d['detected'])}</h2>{mv_html}{charts_html}"
            f"<details{' open' if d['detected'] else ''}><summary>{len(d['features'])} columns</summary>"
            "<table><tr><th>column</th><th>type</th><th>drift</th><th>p</th><th>effect</th><th>data health</th></tr>"
            f"{''.join(rows)}</table></details></section>")


def _distribution(name: str, dist: dict[str, Any]) -> str:
    label = f"{name}: reference and chunk"
    if dist["kind"] == "numeric":
        chart = charts.histogram(dist["reference"]["bounds"], dist["reference"]["counts"], dist["current"]["bounds"],
                                 dist["current"]["counts"], label=label, drifted=True)
    else:
        chart = charts.categories(dist["categories"], dist["reference"], dist["current"], label=label, drifted=True)
    return f"<div class='feature drifted' data-column='{_e(name)}'><h3>{_e(name)}</h3>{chart}</div>"
