"""The status page (`GET /` on the admin endpoint): server-rendered HTML with inline SVG charts.

No scripts, no build step, no external assets (inference hosts often have no
internet): everything is in the one response, and the page refreshes itself
every 15 seconds. Per model version, each column's reference distribution is
drawn against the last window's, on the reference profile's bins (numeric)
or categories (categorical), drifted columns first.
"""

from __future__ import annotations

import html
import math
from typing import Any

from agent.admin.report import duration, human, seconds, served_details, served_latency, served_snapshots

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2430}
header{background:#1d2430;color:#fff;padding:12px 24px}header h1{margin:0;font-size:20px}
main{padding:16px 24px}section{margin-bottom:24px}h2{font-size:16px;margin:8px 0}
table{border-collapse:collapse;background:#fff}td,th{padding:4px 10px;border-bottom:1px solid #e3e6ea;
text-align:left}th{font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.ok,.running,.ready{background:#d7f5dd;color:#17602a}.degraded{background:#fff1c7;color:#7a5600}
.failing,.not-running,.not-ready,.drifted-badge{background:#fdd9d7;color:#8a1c12}
.learning{background:#e3e6ea;color:#444}
.model{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:12px;margin-bottom:16px}
.features{display:flex;flex-wrap:wrap;gap:12px}.feature{border:1px solid #e3e6ea;border-radius:4px;padding:8px}
.feature.drifted{border-color:#d9473b;box-shadow:0 0 0 1px #d9473b}.feature h3{font-size:13px;margin:0 0 4px}
.legend span{margin-right:12px}.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
.problems,.reason{color:#8a1c12}
"""

REFERENCE_COLOUR = "#9aa5b1"
CURRENT_COLOUR = "#2f6fdb"
DRIFTED_COLOUR = "#d9473b"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _badge(text: str, cls: str | None = None) -> str:
    return f'<span class="badge {_e(cls or text.replace(" ", "-"))}">{_e(text)}</span>'


def render(status: dict[str, Any], health: dict[tuple[str, str], dict[str, Any]] | None = None) -> str:
    health = health or {}
    ready = "ready" if status.get("ready") else "not ready"
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta http-equiv="refresh" content="15">',
        '<link rel=icon href="data:,">',  # no favicon request: a browser would log its 404 as an error
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        f"<title>Vigil status</title><style>{_CSS}</style></head><body>",
        f"<header><h1>Vigil {_e(status.get('version', ''))} &mdash; {_e(status.get('state'))} "
        f"{_badge(ready)}</h1>"
        f"<div>up {_e(duration(status.get('uptime_seconds')))} &middot; config {_e(status.get('config'))}"
        f" &middot; cpu {status.get('process', {}).get('cpu_seconds', 0):.1f}s &middot; rss "
        f"{(status.get('process', {}).get('memory_rss_bytes') or 0) / 2**20:.0f} MiB</div></header><main>",
    ]
    if status.get("problems"):
        parts.append('<section class="problems"><h2>Problems</h2><ul>'
                     + "".join(f"<li>{_e(p)}</li>" for p in status["problems"]) + "</ul></section>")
    if status.get("notices"):
        parts.append('<section id=notices class="problems"><h2>Notices</h2><ul>'
                     + "".join(f"<li>{_e(n)}</li>" for n in status["notices"]) + "</ul></section>")
    parts.append(_models(status, health))
    parts.append(_served(status))
    parts.append(_components(status))
    parts.append(_pipelines(status))
    parts.append("</main></body></html>")
    return "".join(parts)


def _served(status: dict[str, Any]) -> str:
    """The inference servers' models (health and why) and the servers themselves (up, or down and why)."""
    models, servers = [], []
    for _, snapshot in served_snapshots(status):
        models += [_served_model(m) for m in snapshot.get("models", [])]
        servers += [_server(sv) for sv in snapshot["servers"]]
    if not servers:
        return ""
    return ("<section id=served><h2>Served models</h2><table><tr><th>model</th><th>version</th><th>source</th>"
            "<th>server</th><th>requests</th><th>errors</th><th>latency</th><th>ttft p95</th><th>serving</th>"
            f"<th>health</th></tr>{''.join(models)}</table>"
            "<h2>Inference servers</h2><table><tr><th>kind</th><th>endpoint</th><th>state</th><th>models</th>"
            f"<th>found by</th></tr>{''.join(servers)}</table></section>")


def _served_model(m: dict[str, Any]) -> str:
    verdict = m.get("health") or {}
    rate = m.get("error_rate")
    errors = human(m.get("errors")) + (f" ({rate:.1%})" if isinstance(rate, (int, float)) else "")
    reasons = "".join(f"<div class=reason>{_e(r)}</div>" for r in verdict.get("reasons") or [])
    return (f"<tr class=served data-model='{_e(m.get('model'))}' data-version='{_e(m.get('version') or '')}' "
            f"data-health='{_e(verdict.get('status', ''))}'><td>{_e(m.get('model'))}</td>"
            f"<td>{_e(m.get('version') or '-')}</td><td>{_e(m.get('source'))}</td><td>{_e(m.get('server'))}</td>"
            f"<td class=n>{_e(human(m.get('requests')))}</td><td class=n>{_e(errors)}</td>"
            f"<td class=n>{_e(served_latency(m))}</td><td class=n>{_e(seconds(m.get('ttft_p95_s')))}</td>"
            f"<td>{_e(', '.join(served_details(m)) or '-')}</td>"
            f"<td>{_badge(verdict.get('status', '-'))}{reasons}</td></tr>")


def _server(sv: dict[str, Any]) -> str:
    up = bool(sv.get("up"))
    why = "" if up or not sv.get("reason") else f"<div class=reason>{_e(sv['reason'])}</div>"
    return (f"<tr class=server data-kind='{_e(sv.get('kind'))}' data-up='{str(up).lower()}'>"
            f"<td>{_e(sv.get('kind'))}</td><td>{_e(sv.get('endpoint'))}</td>"
            f"<td>{_badge('up' if up else 'down', 'ok' if up else 'failing')}{why}</td>"
            f"<td class=n>{_e(human(sv.get('models')))}</td>"
            f"<td>{'discovered' if sv.get('discovered') else 'config'}</td></tr>")


def _pipelines(status: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{_e(pid)}</td><td>{_e(', '.join(p['receivers']))}</td>"
                   f"<td>{_e(', '.join(p['processors']) or '-')}</td><td>{_e(', '.join(p['exporters']))}</td></tr>"
                   for pid, p in status.get("pipelines", {}).items())
    return ("<section id=pipelines><h2>Pipelines</h2><table><tr><th>pipeline</th><th>receivers</th>"
            f"<th>processors</th><th>exporters</th></tr>{rows}</table></section>")


def _components(status: dict[str, Any]) -> str:
    rows = []
    for section, components in status.get("components", {}).items():
        for cid, c in components.items():
            counts = []
            for key, values in (c.get("items") or {}).items():
                counts.append(f"{key}: " + ", ".join(f"{what.replace('_', ' ')} {human(n)}"
                                                      for what, n in values.items()))
            queue = c.get("queue")
            fill = f"{human(queue['size'])}/{human(queue['capacity'])}" if queue else "-"
            rows.append(f"<tr class=component data-state='{_e(c['state'])}'><td>{_e(section[:-1])}</td>"
                        f"<td>{_e(cid)}</td><td>{_badge(c['state'])}</td><td>{_e('; '.join(counts))}</td>"
                        f"<td class=n>{_e(fill)}</td></tr>")
    return ("<section id=components><h2>Components</h2><table><tr><th>kind</th><th>id</th><th>state</th>"
            "<th>items</th><th>queue</th></tr>" + "".join(rows) + "</table></section>")


def _models(status: dict[str, Any], health: dict[tuple[str, str], dict[str, Any]]) -> str:
    cards = []
    for cid, c in status.get("components", {}).get("processors", {}).items():
        snapshot = c.get("status")
        if not isinstance(snapshot, dict):
            continue
        for m in snapshot.get("models", []):
            cards.append(_model(cid, m, health.get((m.get("model"), m.get("version") or ""))))
    if not cards:
        return "<section id=models><h2>Models</h2><p>No predictions seen yet.</p></section>"
    legend = (f"<div class=legend><span><i class=swatch style='background:{REFERENCE_COLOUR}'></i>reference</span>"
              f"<span><i class=swatch style='background:{CURRENT_COLOUR}'></i>last window</span>"
              f"<span><i class=swatch style='background:{DRIFTED_COLOUR}'></i>last window, drifted</span></div>")
    return f"<section id=models><h2>Models</h2>{legend}{''.join(cards)}</section>"


def _model(processor: str, m: dict[str, Any], verdict: dict[str, Any] | None) -> str:
    drift = m.get("drift") or {}
    name = f"{m.get('model')} {m.get('version') or '-'}"
    verdict_html = reasons = ""
    if verdict is not None:
        verdict_html = _badge(verdict["status"])
        reasons = "".join(f"<div class=reason>{_e(r)}</div>" for r in verdict["reasons"])
    reference = m.get("reference")
    if reference:
        ref_text = f"reference: {reference['source']} ({human(reference['rows'])} rows)"
    else:
        warmup = m.get("warmup") or {}
        ref_text = f"learning the reference: {human(warmup.get('rows'))} of {human(warmup.get('needed'))}"
    summary = (f"{human(m.get('requests'))} requests &middot; {human(m.get('windows_evaluated'))} windows &middot; "
               f"{_e(ref_text)}")
    if drift:
        summary += (f" &middot; drift share {drift.get('share', 0):.2f}"
                    + (f" &middot; drifted: {_e(', '.join(drift['drifted_features']))}"
                       if drift.get("drifted_features") else ""))
    features = drift.get("features", {})
    # Drifted first, then by effect size, largest first.
    order = sorted(features.items(), key=lambda kv: (not kv[1].get("drifted"), -(kv[1].get("score") or 0), kv[0]))
    charts = "".join(_feature(name, f) for name, f in order)
    if not charts:
        charts = "<p>No window evaluated yet.</p>"
    return (f"<div class=model data-model='{_e(m.get('model'))}' data-version='{_e(m.get('version') or '')}'>"
            f"<h2>{_e(name)} <small>({_e(processor)})</small> {verdict_html}</h2>{reasons}<div>{summary}</div>"
            f"<div class=features>{charts}</div></div>")


def _feature(name: str, f: dict[str, Any]) -> str:
    drifted = bool(f.get("drifted"))
    dist = f.get("distribution") or {}
    if "bounds" in dist:
        bounds = dist["bounds"]
        labels = [f"≤ {_num(bounds[0])}" if bounds else "all"] + [
            f"{_num(a)} – {_num(b)}" for a, b in zip(bounds, bounds[1:])] + ([f"> {_num(bounds[-1])}"] if bounds else [])
    else:
        labels = [str(c) for c in dist.get("categories", [])]
    score = f.get("score")
    detail = "not tested" if not f.get("tested") else (
        f"{f.get('method')} {score:.3f}" if isinstance(score, (int, float)) else str(f.get("method")))
    p_value = f.get("p_value")
    if isinstance(p_value, (int, float)):
        detail += f", p {p_value:.2g}"
    badge = " " + _badge("DRIFTED", "drifted-badge") if drifted else ""
    svg = _chart(name, labels, dist.get("reference") or [], dist.get("current") or [], drifted)
    return (f"<div class='feature{' drifted' if drifted else ''}' data-feature='{_e(name)}' "
            f"data-drifted='{str(drifted).lower()}'><h3>{_e(name)}{badge}</h3>{svg}"
            f"<div><small>{_e(detail)}</small></div></div>")


def _num(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


def _chart(name: str, labels: list[str], reference: list[float], current: list[float], drifted: bool,
           width: int = 300, height: int = 110) -> str:
    """Reference and current shares side by side per bin (shares, so windows of any size compare)."""
    bins = max(len(reference), len(current), 1)
    if bins > 40:  # many categories: the largest 40, by reference share
        keep = sorted(range(bins), key=lambda i: -(reference[i] if i < len(reference) else 0))[:40]
        keep.sort()
        labels = [labels[i] for i in keep if i < len(labels)]
        reference = [reference[i] for i in keep if i < len(reference)]
        current = [current[i] for i in keep if i < len(current)]
        bins = len(keep)
    ref_total, cur_total = sum(reference) or 1, sum(current) or 1
    ref_share = [v / ref_total for v in reference] + [0.0] * (bins - len(reference))
    cur_share = [v / cur_total for v in current] + [0.0] * (bins - len(current))
    top = max(ref_share + cur_share + [1e-9])
    plot_h, pad = height - 16, 2
    slot = width / bins
    bar = max((slot - 2 * pad) / 2, 1)
    colour = DRIFTED_COLOUR if drifted else CURRENT_COLOUR
    out = [f"<svg class=chart role=img aria-label='{_e(name)}: reference and last window' width={width} "
           f"height={height} viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>"]
    out.append(f"<line x1=0 y1={plot_h} x2={width} y2={plot_h} stroke='#c5ccd3'/>")
    for i in range(bins):
        label = labels[i] if i < len(labels) else ""
        x = i * slot + pad
        for j, (share, fill, what) in enumerate(((ref_share[i], REFERENCE_COLOUR, "reference"),
                                                  (cur_share[i], colour, "last window"))):
            h = share / top * (plot_h - 4)
            out.append(f"<rect class='bar {what.replace(' ', '-')}' x={x + j * bar:.1f} y={plot_h - h:.1f} "
                       f"width={bar:.1f} height={h:.1f} fill='{fill}'><title>{_e(label)}: {what} "
                       f"{share:.1%}</title></rect>")
    if labels:
        out.append(f"<text x=0 y={height - 3} font-size=10 fill='#555'>{_e(labels[0][:24])}</text>")
        if len(labels) > 1:
            out.append(f"<text x={width} y={height - 3} font-size=10 fill='#555' text-anchor=end>"
                       f"{_e(labels[-1][:24])}</text>")
    out.append("</svg>")
    return "".join(out)
