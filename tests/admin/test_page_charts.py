"""The charts the status page and the HTML report draw (`agent.admin.charts`), read back as SVG."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from agent.admin import charts


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs, self.parts = tag, attrs, []

    def get(self, key: str) -> str | None:
        return self.attrs.get(key)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def itertext(self) -> list[str]:
        return self.parts


class Chart(HTMLParser):
    """The chart's elements as a browser's HTML parser reads them (inline SVG, unquoted attributes)."""

    def __init__(self, svg: str) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(svg)

    def handle_starttag(self, tag, attrs):
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in ("path", "rect", "circle"):
            self._open.append(element)

    def handle_startendtag(self, tag, attrs):
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        if self._open and self._open[-1].tag == tag:
            self._open.pop()

    def handle_data(self, data):
        for element in self._open:
            if element.tag == "text":
                element.parts.append(data)

    def iter(self, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag]


def parse(svg: str) -> Chart:
    return Chart(svg)


def path_extent(d: str) -> tuple[float, float]:
    xs = [float(m) for m in re.findall(r"[MH](-?[\d.]+)", d)]
    return min(xs), max(xs)


def last_point(d: str) -> tuple[int, int]:
    """Where a line (an M, then relative moves) ends."""
    start, moves = d[1:].split("l", 1) if "l" in d else (d[1:], "")
    x, y = map(int, start.split())
    numbers = [int(n) for n in re.findall(r"-?\d+", moves)]
    return x + sum(numbers[0::2]), y + sum(numbers[1::2])


def test_a_far_shift_is_drawn_where_the_window_went():
    ref_bounds, ref_counts = [0, 1, 2, 3], [10, 30, 10]
    cur_bounds, cur_counts = [0, 1, 2, 3, 30, 60, 90], [0, 0, 0, 10, 20, 10]  # widened to the window's range
    svg = parse(charts.histogram(ref_bounds, ref_counts, cur_bounds, cur_counts, label="age", drifted=True))
    ref, cur = (p for p in svg.iter("path") if p.get("class") in ("r", "c d"))
    ref_lo, ref_hi = path_extent(ref.get("d"))
    cur_lo, cur_hi = path_extent(cur.get("d"))
    assert cur_lo >= ref_hi - 1 and cur_hi - cur_lo > 5 * (ref_hi - ref_lo)  # spread out on the right
    ticks = [t.text for t in svg.iter("text")]
    assert "0" in ticks and "90" in ticks and "45" in ticks  # the value axis reaches the window's maximum
    assert len([p for p in svg.iter("path") if p.get("class") == "rg"]) == 2  # the reference's range marked


def test_category_names_are_shown_and_escaped_the_rest_grouped():
    names = ["<b>paris</b>", "berlin", "a-very-long-category-name"] + [f"c{i}" for i in range(10)]
    svg = charts.categories(names, [50, 30, 20] + [1] * 10, [10, 30, 60] + [1] * 10, label="city", top=4)
    assert "<b>" not in svg and "&lt;b&gt;paris&lt;/b&gt;" in svg
    texts = ["".join(t.itertext()) for t in parse(svg).iter("text")]
    assert texts[0].startswith("a-very-long-ca") and "a-very-long-category-name" in texts[0]  # tooltip: whole
    assert any(t.startswith("other (10)") for t in texts)
    assert "18% → 55%" in texts  # reference share → current share (of 110 rows each)


def test_a_time_series_breaks_at_gaps_and_labels_its_axes():
    t = [10**18 + i * 60 * 10**9 for i in range(5)]
    svg = parse(charts.time_series([("p99", t, [0.1, 0.2, None, 0.3, 0.25])], label="latency",
                                   y_format=charts.seconds, threshold=0.5))
    (line,) = [p for p in svg.iter("path") if "l0" in (p.get("class") or "")]
    assert line.get("d").count("M") == 2  # a gap where the value is missing
    texts = [t.text for t in svg.iter("text")]
    assert "500ms" in texts and "0ms" in texts and texts[-1].endswith("UTC")
    assert "no data yet" in charts.time_series([("x", [], [])], label="empty")


def test_a_sparkline_marks_the_drifted_windows():
    svg = charts.sparkline([0.1, 0.5, None, 0.9], marks=[False, True, False, True])
    assert svg.count("<circle") == 2 and svg.count("M") == 2
    assert charts.sparkline([]).count("<path") == 0


def test_a_point_alone_between_gaps_is_drawn_as_a_dash():
    assert charts._line([(1, 1), None, (5, 5), None, (9, 9)]) == "M1 1m-2 0h4M5 5m-2 0h4M9 9m-2 0h4"
    assert charts._line([(1, 1), (3, 2), None, (7, 7)]) == "M1 1l2 1M7 7m-2 0h4"  # a run of two is a line
    # An idle interval between busy ones: its error rate is still on the chart.
    t = [10**18 + i * 60 * 10**9 for i in range(3)]
    svg = parse(charts.time_series([("errors", t, [None, 0.2, None])], label="error rate"))
    (line,) = [p for p in svg.iter("path") if "l0" in (p.get("class") or "")]
    assert re.fullmatch(r"M\d+ \d+m-2 0h4", line.get("d"))


def test_a_latency_reads_the_same_in_a_chart_a_table_and_vigil_status():
    from agent.admin import report

    assert charts.seconds(3.2) == report.served_latency({"latency_p95_s": 3.2}) == "3.2s"
    assert charts.seconds(0.0042) == report.served_latency({"latency_p95_s": 0.0042}) == "4.2ms"
    assert report.served_latency({"latency_mean_s": 0.25}) == "~250ms"
    assert charts.seconds(None) == charts.seconds(float("nan")) == charts.seconds("?") == "-"


def test_a_small_density_fits_the_margin_and_keeps_clear_of_the_density_label():
    # A column in the hundreds: the densest bin holds about 0.0095 of the rows per unit.
    bounds, counts = [100, 150, 200, 250, 300], [10, 95, 60, 35]
    svg = parse(charts.histogram(bounds, counts, bounds, counts, label="price"))
    texts = {t.text: t for t in svg.iter("text")}
    assert "9.5e-3" in texts  # not 0.00949, whose start the margin cut off
    peak, label = texts["9.5e-3"], texts["density"]
    # The peak's number ends left of the axis; "density" starts at the axis, on a line above it.
    assert peak.get("text-anchor") == "end" and int(peak.get("x")) <= int(label.get("x"))
    assert int(label.get("y")) < int(peak.get("y")) - 8
    assert [charts.axis(v) for v in (0.0123, 0.5, 3.25, 94.9, 123456, 0)] == ["1.2e-2", "0.5", "3.25", "94.9", "123k", "0"]


def test_each_line_gets_the_bound_it_is_judged_by_within_the_y_range():
    # Realised accuracy below the estimate's bound but above its own: the chunk is not degraded, and
    # the chart shows why (each line against its own dashed bound, in its colour).
    chunks = [0, 1, 2]
    svg = parse(charts.time_series(
        [("estimated", chunks, [0.72, 0.71, 0.70]), ("realized", chunks, [0.70, 0.69, 0.674])],
        label="accuracy", y_min=None, x_format=str,
        bounds=[[0.6951, 0.6951, 0.6951], [0.662, 0.662, 0.662]]))
    dashed = {p.get("class"): p.get("d") for p in svg.iter("path") if "bd" in (p.get("class") or "").split()}
    assert set(dashed) == {"l l0 bd", "l l1 bd"}
    texts = [t.text for t in svg.iter("text")]
    assert "0.662" in texts and "0.72" in texts  # the y range reaches down to the lowest bound
    assert "dashed: bounds" in texts
    lines = {p.get("class"): p.get("d") for p in svg.iter("path") if p.get("class") in ("l l0", "l l1")}
    last_y = {cls: last_point(d)[1] for cls, d in {**lines, **dashed}.items()}
    # SVG y grows downwards: realised's last point is below the estimate's bound and above its own.
    assert last_y["l l0 bd"] < last_y["l l1"] < last_y["l l1 bd"]
    # No bound: no dashed line, and no legend for one.
    plain = charts.time_series([("estimated", chunks, [0.7, 0.7, 0.7])], label="f1", bounds=[None], x_format=str)
    assert " bd" not in plain and "dashed" not in plain
