"""`vigil status`: the admin API's status as tables for people, like `kubectl get` (80 columns)."""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request
from typing import Any

from agent.admin.charts import seconds
from agent.netconfig import split_host_port

WIDTH = 80


def admin_base_url(endpoint: str) -> str:
    host, port = split_host_port(endpoint)
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"  # listening everywhere: ask over loopback
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def fetch(base_url: str, path: str, timeout: float = 5.0) -> Any:
    """GET `path` from the admin endpoint as JSON; raises OSError with a readable message."""
    try:
        with urllib.request.urlopen(base_url + path, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise OSError(f"{base_url}{path}: HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise OSError(f"cannot reach Vigil's admin endpoint at {base_url}: {exc.reason}") from None


def human(n: Any) -> str:
    if n is None:
        return "-"
    if isinstance(n, float) and not n.is_integer():
        return f"{n:.2f}"
    n = int(n)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e4)):
        if abs(n) >= size:
            return f"{n / (size if unit != 'k' else 1e3):.1f}{unit}"
    return str(n)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d{h}h" if d else f"{h}h{m}m" if h else f"{m}m{s}s" if m else f"{s}s"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """Columns as wide as their widest cell; the first column gives way when the line is too long."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    excess = sum(widths) + 2 * (len(widths) - 1) - WIDTH
    if excess > 0:
        widths[0] = max(8, widths[0] - excess)
    lines = []
    for row in [headers] + rows:
        cells = [_cut(c, widths[i]).rjust(widths[i]) if i in right else _cut(c, widths[i]).ljust(widths[i])
                 for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return lines


def render(status: dict[str, Any], models: list[dict[str, Any]] | None = None) -> str:
    out: list[str] = []
    ready = "ready" if status.get("ready") else "NOT READY"
    out.append(f"Vigil {status.get('version', '?')}  {status.get('state')}, {ready}  "
               f"up {duration(status.get('uptime_seconds'))}")
    out.append(_cut(f"config {status.get('config')}", WIDTH))
    process = status.get("process", {})
    rss = process.get("memory_rss_bytes")
    out.append(f"cpu {process.get('cpu_seconds', 0):.1f}s  rss {rss / 2**20:.0f} MiB" if rss else "")
    for problem in status.get("problems", []):
        out.append(_cut(f"! {problem}", WIDTH))
    for notice in status.get("notices", []):
        out += textwrap.wrap(notice, WIDTH, initial_indent="note: ", subsequent_indent="  ")
    reload = status.get("last_reload")
    if reload:
        out.append(_cut(f"last reload: {reload.get('status')}"
                        + (f" ({'; '.join(reload.get('problems', []))})" if reload.get("problems") else ""), WIDTH))

    out += ["", *_table(["PIPELINE", "RECEIVERS", "PROCESSORS", "EXPORTERS"],
                        [[pid, ",".join(p["receivers"]), ",".join(p["processors"]) or "-", ",".join(p["exporters"])]
                         for pid, p in status.get("pipelines", {}).items()], set())]

    components = status.get("components", {})
    rows = []
    for cid, c in components.get("receivers", {}).items():
        for i, (items, n) in enumerate(c.get("items", {}).items() or [("-", {})]):
            rows.append([cid if i == 0 else "", c["state"] if i == 0 else "", items,
                         human(n.get("accepted")), human(n.get("refused"))])
    if rows:
        out += ["", *_table(["RECEIVER", "STATE", "ITEMS", "ACCEPTED", "REFUSED"], rows, {3, 4})]
    rows = []
    for cid, c in components.get("processors", {}).items():
        for i, (pid, n) in enumerate(c.get("items", {}).items()):
            rows.append([cid if i == 0 else "", c["state"] if i == 0 else "", pid,
                         human(n.get("incoming")), human(n.get("outgoing"))])
    if rows:
        out += ["", *_table(["PROCESSOR", "STATE", "PIPELINE", "IN", "OUT"], rows, {3, 4})]
    rows = []
    for cid, c in components.get("exporters", {}).items():
        fill = queue_fill(status, cid, c)
        for i, (items, n) in enumerate(c.get("items", {}).items() or [("-", {})]):
            failed = (n.get("send_failed") or 0) + (n.get("enqueue_failed") or 0)
            rows.append([cid if i == 0 else "", c["state"] if i == 0 else "", items,
                         human(n.get("sent")), human(failed), fill if i == 0 else ""])
    if rows:
        out += ["", *_table(["EXPORTER", "STATE", "ITEMS", "SENT", "FAILED", "QUEUE"], rows, {3, 4, 5})]

    model_rows, notes = _models(status, models or [])
    if model_rows:
        out += ["", *_table(["MODEL", "VERSION", "REQUESTS", "ERRORS", "WINDOWS", "DRIFT", "HEALTH", "REFERENCE"],
                            model_rows, {2, 3, 4, 5})]
        out += notes
    out += _served(status)
    return "\n".join(out) + "\n"


def queue_fill(status: dict[str, Any], exporter: str, entry: dict[str, Any]) -> str:
    """An exporter's sending queue: requests held of its capacity in memory; a persistent queue (no
    request capacity, bounded by bytes on disk) its requests and the bytes held of its capacity."""
    queue = entry.get("queue")
    if queue:
        return f"{human(queue['size'])}/{human(queue['capacity'])}"
    found = {t.get("name"): t.get("value") for t in status.get("telemetry") or []
             if (t.get("attributes") or {}).get("exporter") == exporter}
    if "vigil_exporter_queue_capacity_bytes" not in found:
        return "-"
    return (f"{human(found.get('vigil_exporter_queue_size'))} "
            f"({size(found.get('vigil_exporter_queue_size_bytes'))} of "
            f"{size(found['vigil_exporter_queue_capacity_bytes'])} on disk)")


def size(n: Any) -> str:
    """A size in bytes as pages and `vigil status` show one: 1.5 GiB."""
    if not isinstance(n, (int, float)):
        return "-"
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def served_snapshots(status: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(receiver id, its status) for receivers that watch inference servers (a `servers` list)."""
    out = []
    for cid, c in status.get("components", {}).get("receivers", {}).items():
        snapshot = c.get("status")
        if isinstance(snapshot, dict) and isinstance(snapshot.get("servers"), list):
            out.append((cid, snapshot))
    return out


def served_latency(m: dict[str, Any]) -> str:
    """The p95 when the server has a histogram, else its mean, marked `~` (the mean of its counters)."""
    if m.get("latency_p95_s") is not None:
        return seconds(m["latency_p95_s"])
    return "~" + seconds(m["latency_mean_s"]) if m.get("latency_mean_s") is not None else "-"


def served_details(m: dict[str, Any]) -> list[str]:
    """What a served model's row has no room for: KV cache, queue, tokens, GPU, why it is not ok."""
    details = []
    if isinstance(m.get("kv_cache_usage"), (int, float)):
        details.append(f"kv cache {m['kv_cache_usage']:.0%}")
    if m.get("queue"):
        details.append(f"queue {human(m['queue'])}")
    tokens = m.get("tokens")
    if tokens and any(tokens.values()):
        details.append(f"tokens in {human(tokens.get('input'))} out {human(tokens.get('output'))}")
    gpu = m.get("gpu")
    if gpu:
        util = gpu.get("utilization")
        details.append(f"gpu {gpu.get('memory_bytes', 0) / 2**30:.1f} GiB"
                       + (f" {util:.0%}" if isinstance(util, (int, float)) else ""))
    return details


def _served(status: dict[str, Any]) -> list[str]:
    out: list[str] = []
    model_rows, server_rows, notes, server_notes = [], [], [], []
    for _, snapshot in served_snapshots(status):
        for m in snapshot.get("models", []):
            verdict = m.get("health") or {}
            rate = m.get("error_rate")
            errors = human(m.get("errors")) + (f" {rate:.1%}" if isinstance(rate, (int, float)) else "")
            model_rows.append([str(m.get("model")), m.get("version") or "-", str(m.get("source")),
                               human(m.get("requests")), errors, served_latency(m), seconds(m.get("ttft_p95_s")),
                               str(verdict.get("status", "-"))])
            name = f"  {m.get('model')} {m.get('version') or '-'}"
            for detail in served_details(m) + list(verdict.get("reasons") or []):
                notes.append(_cut(f"{name}: {detail}", WIDTH))
        for s in snapshot["servers"]:
            server_rows.append([str(s.get("kind")), str(s.get("endpoint")), "up" if s.get("up") else "down",
                                human(s.get("models")), "discovered" if s.get("discovered") else "config"])
            if not s.get("up") and s.get("reason"):
                server_notes.append(_cut(f"  {s.get('kind')} {s.get('endpoint')} down: {s['reason']}", WIDTH))
    if model_rows:
        out += ["", *_table(["SERVED MODEL", "VERSION", "SOURCE", "REQUESTS", "ERRORS", "LATENCY", "TTFT",
                             "HEALTH"], model_rows, {3, 4, 5, 6}), *notes]
    if server_rows:
        out += ["", *_table(["SERVER", "ENDPOINT", "STATE", "MODELS", "FROM"], server_rows, {3}), *server_notes]
    return out


def _models(status: dict[str, Any], health: list[dict[str, Any]]) -> tuple[list[list[str]], list[str]]:
    verdicts = {(m.get("model"), m.get("version")): m.get("health") for m in health}
    rows, notes = [], []
    for cid, c in status.get("components", {}).get("processors", {}).items():
        snapshot = c.get("status")
        if not isinstance(snapshot, dict):
            continue
        for m in snapshot.get("models", []):
            drift = m.get("drift") or {}
            reference = m.get("reference")
            if reference:
                source = f"{reference['source']} ({human(reference['rows'])})"
            else:
                warmup = m.get("warmup") or {}
                source = f"learning {human(warmup.get('rows'))}/{human(warmup.get('needed'))}"
            share = drift.get("share")
            errors, error_rate = m.get("errors"), m.get("error_rate")
            failed = "-" if errors is None else human(errors) + (
                f" {error_rate:.1%}" if isinstance(error_rate, (int, float)) else "")
            rows.append([m["model"], m.get("version") or "-", human(m.get("requests")), failed,
                         human(m.get("windows_evaluated")), "-" if share is None else f"{share:.2f}",
                         verdicts.get((m["model"], m.get("version")), "-"), source])
            details = []
            if drift.get("drifted_features"):
                details.append("drifted: " + ", ".join(drift["drifted_features"]))
            latency = m.get("latency_seconds")
            if isinstance(latency, dict) and any(isinstance(v, (int, float)) for v in latency.values()):
                details.append("latency " + " ".join(f"{k} {v * 1000:.0f}ms" for k, v in latency.items()
                                                     if isinstance(v, (int, float))))
            recent = m.get("recent") or {}
            if isinstance(recent.get("error_rate"), (int, float)):
                details.append(f"last interval: {human(recent.get('requests'))} requests, "
                               f"{human(recent.get('errors'))} errors ({recent['error_rate']:.1%})")
            for key, label in (("confidence_mean", "confidence"), ("estimated_accuracy", "est. accuracy"),
                               ("realized_accuracy", "accuracy")):
                if isinstance(m.get(key), (int, float)):
                    details.append(f"{label} {m[key]:.1%}")
            if m.get("alerts"):
                details.append("firing: " + ", ".join(map(str, m["alerts"])))
            for detail in details:
                notes.append(_cut(f"  {m['model']} {m.get('version') or '-'}: {detail}", WIDTH))
    return rows, notes


def main(endpoint: str, as_json: bool) -> int:
    import sys

    base = admin_base_url(endpoint)
    try:
        status = fetch(base, "/api/v1/status")
        models = fetch(base, "/api/v1/models").get("models", [])
    except OSError as exc:
        print(f"vigil status: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({**status, "models": models}, indent=2))
    else:
        sys.stdout.write(render(status, models))
    return 0
