"""Inline SVG charts for the status page and `vigil analyze`'s HTML report: pure functions, strings out.

No scripts and no external assets: a chart is markup styled by `CSS` (which
the page that holds it includes once), so it prints, works offline and stays
small. Every text that comes from data is escaped here.

- `histogram`: a numeric column's reference and current distributions on one
  linear value axis, as densities (share of rows per unit), so bins of any width
  compare and a window that moved far shows where it went;
- `categories`: shares per category, the largest first, the rest as "other";
- `time_series`: lines over time with labelled axes, an optional threshold and, per line, the
  bound it is judged by (dashed, in its colour);
- `sparkline`: a small line with marked points, for tables.

`PAGE_CSS` is the base look of the pages that hold them (the status page, the
HTML report), `escape` their one escaping of text into markup.
"""

from __future__ import annotations

import html
import math
import time
from typing import Sequence

CSS = """
svg.chart text{font:10px system-ui,sans-serif;fill:#555}svg.chart .ax{stroke:#c5ccd3;fill:none}
svg.chart .th{stroke:#d9473b;stroke-dasharray:4 3;fill:none}svg.chart .bd{stroke-dasharray:5 3;stroke-width:1.2}svg.chart .rg{stroke:#7b8794;stroke-dasharray:2 2}
.r{fill:#9aa5b1;fill-opacity:.75}.c{fill:#2f6fdb;fill-opacity:.55}.c.d{fill:#d9473b}
.l{fill:none;stroke-width:1.6}.l0{stroke:#2f6fdb}.l1{stroke:#e8a33d}.l2{stroke:#d9473b}.l3{stroke:#6b4fbb}
text.k0{fill:#2f6fdb!important}text.k1{fill:#b87b16!important}text.k2{fill:#d9473b!important}
text.k3{fill:#6b4fbb!important}svg.spark{vertical-align:middle}svg.spark path{fill:none;stroke:#2f6fdb}
svg.spark circle{fill:#d9473b}
"""

PAGE_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2430}
header{background:#1d2430;color:#fff;padding:12px 24px}header h1{margin:0;font-size:20px}
main{padding:16px 24px}section{margin-bottom:24px}h2{font-size:16px;margin:8px 0}h3{font-size:13px;margin:0 0 4px}
table{border-collapse:collapse;background:#fff}td,th{padding:3px 8px;border-bottom:1px solid #e3e6ea;
text-align:left}th{font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.drifted td:first-child{color:#8a1c12;font-weight:600}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.panels,.features{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}
.panel,.feature{border:1px solid #e3e6ea;border-radius:4px;padding:8px;background:#fff}
.feature.drifted{border-color:#d9473b}.muted{color:#667}
""" + CSS

SERIES_CLASSES = 4  # l0..l3 / k0..k3: the colours a time series' lines take, in order


def escape(value: object) -> str:
    """`value` as text in markup or a quoted attribute."""
    return html.escape(str(value), quote=True)


_e = escape  # short, for the markup below


def fmt(x: float | None) -> str:
    """A number as an axis or a cell shows it: three significant digits, k/M/G for large ones."""
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "-"
    a = abs(x)
    for at, scale, suffix in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if a >= at:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.0f}" if a >= 1000 else f"{x:.3g}"


def axis(x: float | None) -> str:
    """A number as a y-axis label, short enough for the left margin (about 6 characters): 2 significant
    digits in scientific form below 0.1 (a density per unit of a column in the hundreds: 9.5e-3)."""
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "-"
    a = abs(x)
    if a == 0 or a >= 1:
        return fmt(x)
    if a >= 0.1:
        return f"{x:.2g}"
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def percent(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.1%}"


def seconds(x: float | None) -> str:
    """A latency or a duration, as every page and `vigil status` show one: ms below a second."""
    if not isinstance(x, (int, float)) or not math.isfinite(x):
        return "-"
    return f"{x * 1000:.3g}ms" if abs(x) < 1 else f"{x:.3g}s"


def clock(time_ns: int | None) -> str:
    return "-" if not time_ns else time.strftime("%H:%M", time.gmtime(time_ns / 1e9))


def _line(points: Sequence[tuple[float, float] | None]) -> str:
    """An SVG path through `points` (None: a gap), in whole pixels and relative moves: small markup.

    A point alone between gaps (an interval's only value) gets a short dash, not an invisible line."""
    parts, last, run = [], None, 0
    for point in (*points, None):
        if point is None:
            if run == 1:
                parts.append("m-2 0h4")
            last, run = None, 0
            continue
        px, py = round(point[0]), round(point[1])
        if last is None:
            parts.append(f"M{px} {py}")
        else:
            dx, dy = px - last[0], py - last[1]
            # After an `l`, further pairs need no letter: a space or the minus sign separates them.
            lead = "l" if not parts[-1].startswith(("l", " ", "-")) else ("" if dx < 0 else " ")
            parts.append(f"{lead}{dx}{'' if dy < 0 else ' '}{dy}")
        last, run = (px, py), run + 1
    return "".join(parts)


def _open(label: str, width: int, height: int, cls: str = "chart") -> str:
    # Inline in HTML: no namespace needed, and user units are pixels (no viewBox).
    return f"<svg class={cls} role=img aria-label='{_e(label)}' width={width} height={height}>"


def histogram(ref_bounds: Sequence[float], ref_counts: Sequence[float], cur_bounds: Sequence[float],
              cur_counts: Sequence[float], *, label: str, drifted: bool = False,
              width: int = 300, height: int = 120) -> str:
    """Reference (grey) and current (blue, red when drifted) densities on one value axis.

    Each series is its own bins: n + 1 finite bounds for n counts. Where the current values reach
    beyond the reference's range, dashed lines mark that range."""
    # The "density" label sits above the plot, clear of the axis numbers and of the bars.
    left, bottom, top = 40, 16, 14
    plot_w, plot_h = width - left - 4, height - bottom - top
    edges = [b for b in (*ref_bounds, *cur_bounds) if math.isfinite(b)]
    if not edges:
        return _open(label, width, height) + f"<text x={left} y={height // 2}>no values</text></svg>"
    lo, hi = min(edges), max(edges)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    span = hi - lo

    # A bin narrower than a fiftieth of the axis counts as that wide: one very narrow bin (a quantile
    # bin of a skewed column) would otherwise flatten every other bar.
    def densities(bounds: Sequence[float], counts: Sequence[float]) -> list[tuple[float, float, float]]:
        total = sum(counts) or 1
        return [(a, b, n / total / max(b - a, span / 50))
                for a, b, n in zip(bounds, bounds[1:], counts) if n > 0]

    ref, cur = densities(ref_bounds, ref_counts), densities(cur_bounds, cur_counts)
    peak = max([d for _, _, d in ref + cur] + [1e-12])
    base = top + plot_h

    def x(v: float) -> float:
        return left + (v - lo) / span * plot_w

    def path(bins: list[tuple[float, float, float]]) -> str:
        parts = []
        for a, b, d in bins:
            x0, x1 = x(a), max(x(b), x(a) + 1)
            parts.append(f"M{x0:.0f} {base}V{base - d / peak * plot_h:.0f}H{x1:.0f}V{base}z")
        return "".join(parts)

    out = [_open(label, width, height),
           f"<path class=ax d='M{left} {top}V{base}H{width - 4}'/>",
           f"<path class=r d='{path(ref)}'/>",
           f"<path class='c{' d' if drifted else ''}' d='{path(cur)}'/>"]
    if ref_bounds and (min(cur_bounds, default=lo) < ref_bounds[0] or max(cur_bounds, default=hi) > ref_bounds[-1]):
        for v in (ref_bounds[0], ref_bounds[-1]):
            out.append(f"<path class=rg d='M{x(v):.0f} {top}V{base}'/>")
    for v, anchor in ((lo, "start"), ((lo + hi) / 2, "middle"), (hi, "end")):
        out.append(f"<text x={x(v):.0f} y={height - 3} text-anchor={anchor}>{_e(fmt(v))}</text>")
    out.append(f"<text x={left - 3} y={top + 8} text-anchor=end>{_e(axis(peak))}</text>"
               f"<text x={left - 3} y={base} text-anchor=end>0</text>"
               f"<text x={left} y={top - 4}>density</text></svg>")
    return "".join(out)


def categories(names: Sequence[str], ref_counts: Sequence[float], cur_counts: Sequence[float], *, label: str,
               drifted: bool = False, width: int = 300, top: int = 6) -> str:
    """Reference and current shares per category, a row each (the `top` largest; the rest as "other")."""
    ref_total, cur_total = sum(ref_counts) or 1, sum(cur_counts) or 1
    rows = [(str(n), r / ref_total, c / cur_total) for n, r, c in zip(names, ref_counts, cur_counts)]
    rows.sort(key=lambda row: -max(row[1], row[2]))
    if len(rows) > top:
        rest = rows[top - 1:]
        rows = rows[:top - 1] + [(f"other ({len(rest)})", sum(r for _, r, _ in rest), sum(c for _, _, c in rest))]
    peak = max([max(r, c) for _, r, c in rows] + [1e-12])
    name_w, value_w, row_h = 92, 74, 15
    bar_w = width - name_w - value_w
    height = max(len(rows), 1) * row_h + 4
    out = [_open(label, width, height)]
    for i, (name, r, c) in enumerate(rows):
        y = i * row_h + 2
        # A cut name keeps the whole one as its tooltip.
        shown = _e(name) if len(name) <= 15 else f"<title>{_e(name)}</title>{_e(name[:14])}…"
        out.append(f"<text x=0 y={y + 10}>{shown}</text>"
                   f"<rect class=r x={name_w} y={y} width={max(r / peak * bar_w, 0.5):.0f} height=6 />"
                   f"<rect class='c{' d' if drifted else ''}' x={name_w} y={y + 6} "
                   f"width={max(c / peak * bar_w, 0.5):.0f} height=6 />"
                   f"<text x={width} y={y + 10} text-anchor=end>{r:.0%} → {c:.0%}</text>")
    if not rows:
        out.append("<text x=0 y=12>no values</text>")
    out.append("</svg>")
    return "".join(out)


def time_series(series: Sequence[tuple[str, Sequence[int], Sequence[float | None]]], *, label: str,
                y_format=fmt, threshold: float | None = None, y_min: float | None = 0.0, y_max: float | None = None,
                marks: Sequence[int] | None = None, width: int = 300, height: int = 120,
                x_format=None, bounds: Sequence[Sequence[float | None] | None] | None = None,
                empty: str = "no data yet") -> str:
    """Lines over time: each series is (name, times in ns, values; None a gap), coloured in order.

    `threshold` draws a dashed line; `bounds`, one per series (None: none), the values that series is
    judged by at its times, dashed in its colour (the y range takes them in). `marks` (times) puts a
    dot on the first series there (drifted windows). The x axis shows the first and the last time
    (UTC), the y axis its bounds. With `x_format` the x values are any numbers (chunk indexes),
    labelled by it. `empty`: what a chart without values says."""
    bounds = list(bounds or [])
    left, bottom, top = 44, 16, 14
    plot_w, plot_h = width - left - 6, height - bottom - top
    bounds = bounds + [None] * (len(series) - len(bounds))
    times = [t for (_, ts, vs), limit in zip(series, bounds) for t, v, b in zip(ts, vs, limit or [None] * len(ts))
             if v is not None or b is not None]
    values = [v for _, _, vs in series for v in vs if v is not None and math.isfinite(v)]
    limits = [v for b in bounds if b for v in b if v is not None and math.isfinite(v)]
    out = [_open(label, width, height)]
    legend_x = left
    for i, (name, _, _) in enumerate(series):
        out.append(f"<text class=k{i % SERIES_CLASSES} x={legend_x} y=10>{_e(name)}</text>")
        legend_x += 8 + 6 * len(name)
    if limits and values:
        out.append(f"<text x={legend_x} y=10>dashed: bounds</text>")
    if not values:
        out.append(f"<text x={left} y={top + plot_h // 2}>{_e(empty)}</text></svg>")
        return "".join(out)
    t0, t1 = min(times), max(times)
    lo = min(values + limits) if y_min is None else min(y_min, min(values + limits))
    hi = max(values + limits + ([threshold] if threshold is not None else []))
    if y_max is not None:
        hi = max(hi, y_max)
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    base = top + plot_h

    def x(t: int) -> float:
        return left + ((t - t0) / (t1 - t0) * plot_w if t1 > t0 else plot_w / 2)

    def y(v: float) -> float:
        return base - (v - lo) / (hi - lo) * plot_h

    out.append(f"<path class=ax d='M{left} {top}V{base}H{left + plot_w}'/>")
    if threshold is not None:
        out.append(f"<path class=th d='M{left} {y(threshold):.0f}H{left + plot_w}'/>")
    for i, (_, ts, vs) in enumerate(series):
        line = _line([None if v is None or not math.isfinite(v) else (x(t), y(v)) for t, v in zip(ts, vs)])
        out.append(f"<path class='l l{i % SERIES_CLASSES}' d='{line}'/>")
        limit = bounds[i]
        if limit and any(v is not None and math.isfinite(v) for v in limit):
            line = _line([None if v is None or not math.isfinite(v) else (x(t), y(v)) for t, v in zip(ts, limit)])
            out.append(f"<path class='l l{i % SERIES_CLASSES} bd' d='{line}'/>")
    if marks and series:
        _, ts, vs = series[0]
        at = dict(zip(ts, vs))
        for t in marks:
            v = at.get(t)
            if v is not None:
                out.append(f"<circle cx={x(t):.0f} cy={y(v):.0f} r=2.5 fill='#d9473b'/>")
    out.append(f"<text x={left - 3} y={top + 8} text-anchor=end>{_e(y_format(hi))}</text>"
               f"<text x={left - 3} y={base} text-anchor=end>{_e(y_format(lo))}</text>"
               f"<text x={left} y={height - 3}>{_e(x_format(t0) if x_format else clock(t0))}</text>"
               f"<text x={left + plot_w} y={height - 3} text-anchor=end>"
               f"{_e(x_format(t1) if x_format else clock(t1) + ' UTC')}</text></svg>")
    return "".join(out)


def sparkline(values: Sequence[float | None], *, marks: Sequence[bool] | None = None, width: int = 96,
              height: int = 18, top: float | None = None) -> str:
    """A small line of `values` (evenly spaced; None a gap), a red dot where `marks` is true."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    out = [f"<svg class=spark width={width} height={height}>"]
    if finite:
        peak = max(finite + [top or 0.0]) or 1.0
        step = (width - 4) / max(len(values) - 1, 1)
        points = [None if v is None or not math.isfinite(v) else (2 + i * step, height - 2 - max(v, 0) / peak * (height - 4))
                  for i, v in enumerate(values)]
        out.append(f"<path d='{_line(points)}'/>")
        out += [f"<circle cx={p[0]:.0f} cy={p[1]:.0f} r=2 />" for i, p in enumerate(points)
                if p is not None and marks and i < len(marks) and marks[i]]
    out.append("</svg>")
    return "".join(out)
