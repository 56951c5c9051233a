"""The status page (`GET /` on the admin endpoint): server-rendered HTML with inline SVG charts.

No scripts, no build step, no external assets (inference hosts often have no
internet): everything is in the one response, and the page refreshes itself
every 15 seconds. The header gives the worst model health; then the alerts
(firing, pending, silenced), the host and its GPUs, and per model version
(worst first) its drift, latency, traffic, errors, confidence, performance and
multivariate drift over its recent windows, a row per column with its effect
size over time (drifted first), and the distributions of the columns that
moved most: the reference against the last window (`charts.py` draws them).
"""

from __future__ import annotations

import time
from typing import Any

from agent.admin import charts
from agent.admin.charts import escape as _e
from agent.admin.charts import fmt, percent, seconds
from agent.admin.models import HEALTH_ORDER
from agent.admin.report import (duration, human, queue_fill, served_details, served_latency, served_snapshots,
                                size)
from agent.alerts.rules import SEVERITY_ORDER

_CSS = charts.PAGE_CSS + """
.ok,.running,.ready,.up{background:#d7f5dd;color:#17602a}.degraded,.pending,.warning{background:#fff1c7;color:#7a5600}
.failing,.not-running,.not-ready,.drifted-badge,.firing,.critical{background:#fdd9d7;color:#8a1c12}
.learning,.silenced,.info{background:#e3e6ea;color:#444}
.model{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:12px;margin-bottom:16px}
.feature.drifted{box-shadow:0 0 0 1px #d9473b}
.legend span{margin-right:12px}.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
.problems,.reason{color:#8a1c12}.note{color:#556}
#alerts td.since{white-space:nowrap}#alerts td.summary{min-width:16em}#alerts td.labels{min-width:12em;overflow-wrap:anywhere}
"""

REFERENCE_COLOUR = "#9aa5b1"
CURRENT_COLOUR = "#2f6fdb"
DRIFTED_COLOUR = "#d9473b"
DETAIL = 4  # columns per model version drawn in full (drifted first); the rest get a row and a sparkline
SPARK_WINDOWS = 16  # windows a column's sparkline spans
MAX_ALERTS = 100
MAX_EXEMPLARS = 6


def _badge(text: str, cls: str | None = None) -> str:
    return f'<span class="badge {_e(cls or text.replace(" ", "-"))}">{_e(text)}</span>'


def _reasons(verdict: dict[str, Any]) -> str:
    """A verdict's reasons: red when they make it worse than ok, else neutral notes (learning the
    reference, no window yet)."""
    cls = "note" if verdict.get("status") == "ok" else "reason"
    return "".join(f"<div class={cls}>{_e(r)}</div>" for r in verdict.get("reasons") or [])


def _ago(time_s: float | None, now: float) -> str:
    """How long ago, as markup ("12m0s ago"); the full UTC time is its tooltip (a full time in a
    table cell wrapped over lines at a laptop's width)."""
    if not time_s:
        return "-"
    return (f"<span title='{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(time_s))} UTC'>"
            f"{_e(duration(max(now - time_s, 0)))} ago</span>")


def render(status: dict[str, Any], health: dict[tuple[str, str], dict[str, Any]] | None = None,
           alerts: list[dict[str, Any]] | None = None, now: float | None = None) -> str:
    """The page; `health`: each watched model version's verdict; `alerts`: per alerts processor
    {"processor", "alerts": [its alerts(), as the admin API lists them]}."""
    health = health or {}
    now = time.time() if now is None else now
    ready = "ready" if status.get("ready") else "not ready"
    verdicts = [v.get("status") for v in health.values()] + [
        (m.get("health") or {}).get("status") for _, snap in served_snapshots(status) for m in snap.get("models", [])]
    verdicts = [v for v in verdicts if v in HEALTH_ORDER]
    worst = max(verdicts, key=HEALTH_ORDER.__getitem__) if verdicts else None
    models_badge = (f" &middot; models {_badge(worst)}" if worst else " &middot; no model seen yet")
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta http-equiv="refresh" content="15">',
        '<link rel=icon href="data:,">',  # no favicon request: a browser would log its 404 as an error
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        f"<title>Vigil status</title><style>{_CSS}</style></head><body>",
        f"<header><h1 id=overall data-health='{_e(worst or '')}'>Vigil {_e(status.get('version', ''))} &mdash; "
        f"{_e(status.get('state'))} {_badge(ready)}{models_badge}</h1>"
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
    parts.append(_alerts(alerts or [], now))
    parts.append(_host(status))
    parts.append(_models(status, health, now))
    parts.append(_served(status))
    parts.append(_components(status))
    parts.append(_pipelines(status))
    parts.append("</main></body></html>")
    return "".join(parts)


# --- alerts --------------------------------------------------------------------------------------

_STATE_ORDER = {"firing": 0, "pending": 1, "silenced": 2}


def _alerts(found: list[dict[str, Any]], now: float) -> str:
    rows = []
    for source in found:
        for a in source.get("alerts") or []:
            state = "silenced" if a.get("silenced_by") else str(a.get("state"))
            rows.append((state, a, source.get("processor", "")))
    if not found:
        return ""
    rows.sort(key=lambda r: (_STATE_ORDER.get(r[0], 9), SEVERITY_ORDER.get(r[1].get("labels", {}).get("severity"), 9),
                             r[1].get("rule", "")))
    counts = {s: sum(1 for r in rows if r[0] == s) for s in _STATE_ORDER}
    summary = " &middot; ".join(f"{n} {s}" for s, n in counts.items())
    if not rows:
        return "<section id=alerts><h2>Alerts</h2><p>Nothing firing, pending or silenced.</p></section>"
    out = []
    for state, a, processor in rows[:MAX_ALERTS]:
        labels = a.get("labels") or {}
        severity = labels.get("severity", "")
        shown = ", ".join(f"{k}={v}" for k, v in labels.items() if k not in ("alertname", "severity"))
        since = a.get("fired_at") if a.get("state") == "firing" and a.get("fired_at") else a.get("active_since")
        annotations = a.get("annotations") or {}
        summary_text = annotations.get("summary") or annotations.get("description") or ""
        detail = f" ({_e(a.get('state'))}, silenced by {_e(', '.join(i[:8] for i in a['silenced_by']))})" if state == "silenced" else ""
        out.append(f"<tr class=alert data-state='{_e(state)}' data-rule='{_e(a.get('rule'))}' "
                   f"data-severity='{_e(severity)}'><td>{_badge(state)}{detail}</td>"
                   f"<td>{_badge(severity or '-', severity or 'info')}</td><td>{_e(a.get('rule'))}</td>"
                   f"<td class=labels>{_e(shown)}</td><td class=since>{_ago(since, now)}</td>"
                   f"<td class=n>{_e(fmt(a.get('value')))}</td>"
                   f"<td class=summary>{_e(summary_text)}</td><td class=muted>{_e(processor)}</td></tr>")
    more = f"<p>and {len(rows) - MAX_ALERTS} more (vigil alerts lists them all)</p>" if len(rows) > MAX_ALERTS else ""
    return (f"<section id=alerts><h2>Alerts <small>{summary}</small></h2><table><tr><th>state</th>"
            "<th>severity</th><th>rule</th><th>labels</th><th>since</th><th>value</th><th>summary</th>"
            f"<th>processor</th></tr>{''.join(out)}</table>{more}</section>")


# --- the host and its GPUs -------------------------------------------------------------------------

def _host(status: dict[str, Any]) -> str:
    host: dict[str, Any] = {}
    gpus: list[dict[str, Any]] = []
    for c in status.get("components", {}).get("receivers", {}).values():
        latest = (c.get("status") or {}).get("latest") if isinstance(c.get("status"), dict) else None
        if not isinstance(latest, dict):
            continue
        host = host or latest.get("host") or {}
        gpus += latest.get("gpus") or []
    if not host and not gpus:
        return ""
    parts = ["<section id=host><h2>Host and GPUs</h2>"]
    if host:
        history = host.get("history", {})
        memory = (f"{size(host.get('memory_used_bytes'))} of {size(host.get('memory_limit_bytes'))} "
                  f"({percent(host.get('memory_utilization'))})")
        parts.append("<table class=host><tr><th>CPU</th><th></th><th>memory</th><th></th></tr>"
                     f"<tr><td class=n data-value=cpu>{percent(host.get('cpu_utilization'))}</td>"
                     f"<td>{charts.sparkline(history.get('cpu_utilization', []), top=1.0)}</td>"
                     f"<td class=n data-value=memory>{_e(memory)}</td>"
                     f"<td>{charts.sparkline(history.get('memory_utilization', []), top=1.0)}</td></tr></table>")
    if gpus:
        rows = []
        for g in gpus:
            h = g.get("history", {})
            memory = (f"{size(g.get('memory_used_bytes'))} of {size(g.get('memory_limit_bytes'))} "
                      f"({percent(g.get('memory_utilization'))})")
            rows.append(f"<tr class=gpu data-gpu='{_e(g.get('index'))}'><td>{_e(g.get('index'))}</td>"
                        f"<td>{_e(g.get('model') or '-')}</td>"
                        f"<td class=n>{percent(g.get('utilization'))}</td>"
                        f"<td>{charts.sparkline(h.get('utilization', []), top=1.0)}</td>"
                        f"<td class=n>{_e(memory)}</td>"
                        f"<td class=n>{_e(fmt(g.get('temperature_celsius')))} °C</td>"
                        f"<td>{charts.sparkline(h.get('temperature_celsius', []))}</td>"
                        f"<td class=n>{_e(fmt(g.get('power_watts')))} W</td>"
                        f"<td>{charts.sparkline(h.get('power_watts', []))}</td></tr>")
        parts.append("<table class=gpus><tr><th>GPU</th><th>model</th><th>utilisation</th><th></th><th>memory</th>"
                     f"<th>temperature</th><th></th><th>power</th><th></th></tr>{''.join(rows)}</table>")
    parts.append("</section>")
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
    reasons = _reasons(verdict)
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
            fill = queue_fill(status, cid, c) if section == "exporters" else "-"
            rows.append(f"<tr class=component data-state='{_e(c['state'])}'><td>{_e(section[:-1])}</td>"
                        f"<td>{_e(cid)}</td><td>{_badge(c['state'])}</td><td>{_e('; '.join(counts))}</td>"
                        f"<td class=n>{_e(fill)}</td></tr>")
    return ("<section id=components><h2>Components</h2><table><tr><th>kind</th><th>id</th><th>state</th>"
            "<th>items</th><th>queue</th></tr>" + "".join(rows) + "</table></section>")


# --- models ------------------------------------------------------------------------------------------

def _models(status: dict[str, Any], health: dict[tuple[str, str], dict[str, Any]], now: float) -> str:
    cards = []
    for cid, c in status.get("components", {}).get("processors", {}).items():
        snapshot = c.get("status")
        if not isinstance(snapshot, dict):
            continue
        for m in snapshot.get("models", []):
            verdict = health.get((m.get("model"), m.get("version") or ""))
            rank = -HEALTH_ORDER.get((verdict or {}).get("status"), -1)  # no verdict: after "ok"
            cards.append((rank, str(m.get("model")), str(m.get("version")),
                          _model(cid, m, verdict, snapshot.get("drift_share_threshold"), now)))
    if not cards:
        return "<section id=models><h2>Models</h2><p>No predictions seen yet.</p></section>"
    cards.sort(key=lambda card: card[:3])  # the worst health first
    legend = (f"<div class=legend><span><i class=swatch style='background:{REFERENCE_COLOUR}'></i>reference</span>"
              f"<span><i class=swatch style='background:{CURRENT_COLOUR}'></i>last window</span>"
              f"<span><i class=swatch style='background:{DRIFTED_COLOUR}'></i>last window, drifted</span></div>")
    return f"<section id=models><h2>Models</h2>{legend}{''.join(card for *_, card in cards)}</section>"


def _model(processor: str, m: dict[str, Any], verdict: dict[str, Any] | None, threshold: float | None,
           now: float) -> str:
    drift = m.get("drift") or {}
    name = f"{m.get('model')} {m.get('version') or '-'}"
    verdict_html = reasons = ""
    if verdict is not None:
        verdict_html = _badge(verdict["status"])
        reasons = _reasons(verdict)
    reference = m.get("reference")
    if reference:
        ref_text = f"reference: {reference['source']} ({human(reference['rows'])} rows)"
    else:
        warmup = m.get("warmup") or {}
        ref_text = f"learning the reference: {human(warmup.get('rows'))} of {human(warmup.get('needed'))}"
    last = drift.get("time_unix_nano")
    summary = (f"{human(m.get('requests'))} requests &middot; {human(m.get('windows_evaluated'))} windows &middot; "
               f"{_e(ref_text)} &middot; last window <span class=last-window>"
               f"{_ago(last / 1e9 if last else None, now)}</span>")
    if drift:
        summary += (f" &middot; drift share {drift.get('share', 0):.2f}"
                    + (f" &middot; drifted: {_e(', '.join(drift['drifted_features']))}"
                       if drift.get("drifted_features") else ""))
    features = drift.get("features", {})
    # Drifted first, then by effect size, largest first.
    order = sorted(features.items(), key=lambda kv: (not kv[1].get("drifted"), -(kv[1].get("score") or 0), kv[0]))
    history = m.get("history") or {}
    charts_html = "".join(_feature(n, f) for n, f in order[:DETAIL]) or "<p>No window evaluated yet.</p>"
    return (f"<div class=model data-model='{_e(m.get('model'))}' data-version='{_e(m.get('version') or '')}'>"
            f"<h2>{_e(name)} <small>({_e(processor)})</small> {verdict_html}</h2>{reasons}<div>{summary}</div>"
            f"<div class=panels>{_panels(m, history, threshold, now)}</div>"
            f"{_columns(order, history.get('windows') or [], history.get('columns') or [])}"
            f"<h3>Distributions: the reference against the last window</h3><div class=features>{charts_html}</div>"
            f"{_exemplars(m.get('exemplars') or [])}</div>")


def _panel(kind: str, title: str, body: str) -> str:
    return f"<div class=panel data-panel={kind}><h3>{_e(title)}</h3>{body}</div>"


def _panels(m: dict[str, Any], history: dict[str, Any], threshold: float | None, now: float) -> str:
    windows, intervals, labels = history.get("windows") or [], history.get("intervals") or [], history.get("labels") or []
    if not intervals:
        intervals = _current_interval(m, now)
    w_times = [w["time_unix_nano"] for w in windows]
    out = [_panel("drift", "Drift share per window", charts.time_series(
        [("share", w_times, [w.get("share") for w in windows])], label="drift share per window",
        threshold=threshold, y_max=1.0, marks=[w["time_unix_nano"] for w in windows if w.get("detected")]))]
    i_times = [i["time_unix_nano"] for i in intervals]
    latency = [(q, i_times, [(i.get("latency_seconds") or {}).get(q) for i in intervals]) for q in ("p50", "p95", "p99")]
    current = m.get("latency_seconds") or {}
    now_text = " · ".join(f"{q} {seconds(current.get(q))}" for q in ("p50", "p95", "p99"))
    out.append(_panel("latency", f"Latency ({now_text})", charts.time_series(
        latency, label="latency quantiles per interval", y_format=seconds)))
    so_far = (m.get("recent") or {}).get("requests")
    out.append(_panel("throughput", "Requests per second", charts.time_series(
        [("requests/s", i_times, [i["requests"] / i["seconds"] if i.get("seconds") else None for i in intervals])],
        label="requests per second per interval",
        empty=f"first interval not over yet: {human(so_far)} requests so far" if so_far else "no data yet")))
    out.append(_panel("errors", f"Error rate (all time {percent(m.get('error_rate'))})", charts.time_series(
        [("errors", i_times, [i["errors"] / i["requests"] if i.get("requests") else None for i in intervals])],
        label="error rate per interval", y_format=percent)))
    features = (m.get("drift") or {}).get("features") or {}
    for output in ("ml.prediction.confidence", "ml.prediction.score"):
        if output in features:
            f = features[output]
            out.append(_panel("confidence", f"{output.rsplit('.', 1)[-1].capitalize()}: reference and last window",
                              _distribution_chart(output, f)))
            break
    metric = _performance_metric(windows, labels)
    if metric is not None:
        out.append(_panel("performance", f"{metric}: label-free estimate and realised", charts.time_series(
            [("estimated", w_times, [(w.get("estimated") or {}).get(metric) for w in windows]),
             ("realized", [x["time_unix_nano"] for x in labels], [(x.get("realized") or {}).get(metric) for x in labels])],
            label=f"{metric} estimated and realized", y_min=None)))
    multivariate = m.get("multivariate")
    if multivariate or any(w.get("multivariate") for w in windows):
        found = [(w["time_unix_nano"], w["multivariate"]) for w in windows if w.get("multivariate")]
        last = multivariate or (found[-1][1] if found else {})
        state = "drifted" if last.get("drifted") else ("not tested" if last.get("tested") is False else "no drift")
        out.append(_panel("multivariate", f"Multivariate drift ({last.get('method', '-')}, {state})", charts.time_series(
            [("statistic", [t for t, _ in found], [v.get("statistic") for _, v in found])],
            label="multivariate drift statistic per window", threshold=last.get("threshold"),
            marks=[t for t, v in found if v.get("drifted")])))
    return "".join(out)


def _current_interval(m: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """Before the first interval ends: the current one so far (the header's latency and error rate) as a
    point at `now`, without `seconds` (its length is not known yet, so no requests per second)."""
    recent = m.get("recent") or {}
    if not recent.get("requests"):
        return []
    return [{"time_unix_nano": int(now * 1e9), "requests": recent["requests"], "errors": recent.get("errors") or 0,
             "latency_seconds": m.get("latency_seconds") or {}}]


def _performance_metric(windows: list[dict[str, Any]], labels: list[dict[str, Any]]) -> str | None:
    """The metric both sides have (else either side), in the order people look for them."""
    estimated = {k for w in windows for k, v in (w.get("estimated") or {}).items() if v is not None}
    realized = {k for x in labels for k, v in (x.get("realized") or {}).items() if v is not None}
    for pool in (estimated & realized, estimated | realized):
        for name in ("accuracy", "roc_auc", "f1", "mae", "rmse"):
            if name in pool:
                return name
    return None


def _columns(order: list[tuple[str, dict[str, Any]]], windows: list[dict[str, Any]], columns: list[str]) -> str:
    """A row per column: its verdict, the last effect size and the effect size over the recent windows."""
    if not order:
        return ""
    recent = windows[-SPARK_WINDOWS:]
    index = {name: i for i, name in enumerate(columns)}
    flagged = [set(w.get("drifted") or ()) for w in recent]
    rows = []
    for name, f in order:
        drifted = bool(f.get("drifted"))
        i = index.get(name)
        past = [(None, False) if i is None or i >= len(w.get("scores") or ()) else (w["scores"][i], i in marked)
                for w, marked in zip(recent, flagged)]
        score, p_value = f.get("score"), f.get("p_value")
        # Compact rows (a model version may have hundreds of columns): the method is named below the table.
        rows.append(f"<tr class='column{' drifted' if drifted else ''}' data-feature='{_e(name)}'><td>{_e(name)}</td>"
                    f"<td>{_e(str(f.get('kind', ''))[:3])}</td>"
                    f"<td>{'DRIFTED' if drifted else 'ok' if f.get('tested') else 'untested'}</td>"
                    f"<td class=n>{_e(fmt(score))}</td>"
                    f"<td class=n>{_e(f'{p_value:.2g}' if isinstance(p_value, (int, float)) else '-')}</td>"
                    f"<td>{charts.sparkline([p[0] for p in past], marks=[bool(p[1]) for p in past])}</td></tr>")
    methods = sorted({(str(f.get("kind", ""))[:3], f.get("method")) for _, f in order if f.get("method")})
    legend = "; ".join(f"{kind}: {method}" for kind, method in methods)
    return (f"<table class=columns><tr><th>column</th><th>kind</th><th>verdict</th><th>effect</th>"
            f"<th>p</th><th>effect, last {len(recent)} windows (red: drifted)</th></tr>{''.join(rows)}</table>"
            f"<div class=muted><small>effect size by {_e(legend or '-')}; p corrected across the window's columns"
            f"</small></div>")


def _feature(name: str, f: dict[str, Any]) -> str:
    drifted = bool(f.get("drifted"))
    score = f.get("score")
    detail = "not tested" if not f.get("tested") else (
        f"{f.get('method')} {score:.3f}" if isinstance(score, (int, float)) else str(f.get("method")))
    p_value = f.get("p_value")
    if isinstance(p_value, (int, float)):
        detail += f", p {p_value:.2g}"
    badge = " " + _badge("DRIFTED", "drifted-badge") if drifted else ""
    return (f"<div class='feature{' drifted' if drifted else ''}' data-feature='{_e(name)}' "
            f"data-drifted='{str(drifted).lower()}'><h3>{_e(name)}{badge}</h3>{_distribution_chart(name, f)}"
            f"<div><small>{_e(detail)}</small></div></div>")


def _distribution_chart(name: str, f: dict[str, Any]) -> str:
    """A column's reference against its last window: densities on a value axis widened to the window's
    range (numeric), or shares per category."""
    dist = f.get("distribution") or {}
    drifted = bool(f.get("drifted"))
    label = f"{name}: reference and last window"
    if "bounds" not in dist:
        return charts.categories(dist.get("categories") or [], dist.get("reference") or [],
                                 dist.get("current") or [], label=label, drifted=drifted)
    inner = list(dist.get("bounds") or [])
    lo, hi = (dist.get("range") or [None, None])
    lo = inner[0] if lo is None and inner else lo
    hi = inner[-1] if hi is None and inner else hi
    ref_bounds = [b for b in (lo, *inner, hi) if b is not None]
    ref_counts = list(dist.get("reference") or [])
    if len(ref_bounds) != len(ref_counts) + 1:
        ref_bounds, ref_counts = [], []
    window = dist.get("window") or {}
    if window.get("bounds"):
        cur_bounds, cur_counts = window["bounds"], window.get("counts") or []
    else:
        cur_bounds, cur_counts = ref_bounds, list(dist.get("current") or [])[:len(ref_counts)]
    return charts.histogram(ref_bounds, ref_counts, cur_bounds, cur_counts, label=label, drifted=drifted)


def _exemplars(found: list[dict[str, Any]]) -> str:
    """The telling predictions (slowest, least confident, furthest out of range, failing a check), each
    leading to its trace."""
    if not found:
        return ""
    rows = []
    for e in found[:MAX_EXEMPLARS]:
        trace = e.get("trace_id", "")
        link = (f"<a href='{_e(e['trace_url'])}' rel=noreferrer>{_e(trace)}</a>" if e.get("trace_url")
                else f"<code>{_e(trace)}</code>")
        what = " ".join(str(x) for x in (e.get("feature"), e.get("check")) if x)
        rows.append(f"<tr class=exemplar data-kind='{_e(e.get('kind'))}'><td>{_e(e.get('kind'))}</td>"
                    f"<td>{_e(what or '-')}</td><td class=n>{_e(fmt(e.get('value')))}</td><td>{link}</td></tr>")
    return ("<h3>Telling predictions</h3><table class=exemplars><tr><th>kind</th><th>column</th><th>value</th>"
            f"<th>trace</th></tr>{''.join(rows)}</table>")
