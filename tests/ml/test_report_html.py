"""`vigil analyze --format html -o report.html`, run as users run it (`python -m agent` in a subprocess) on
CSV and Parquet, and the page opened in Debian's Chromium, headless: no console errors, the summary, the
drifted columns and their charts, performance and multivariate drift over chunks, data health; and the
size of a report of 100 columns x 50 chunks. Screenshots are kept in the tests' tmp dirs."""

from __future__ import annotations

import asyncio
import base64
import csv
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.admin.test_status_page import browser, problems
from tests.ml.test_offline import vigil

MAX_LARGE_REPORT_BYTES = 1_500_000

REPORT_FACTS = """(() => {
  const text = e => e ? e.textContent.trim() : null;
  return {
    title: document.title,
    summary: [...document.querySelectorAll('#summary tr.chunk-row')].map(r => [r.dataset.chunk,
        r.classList.contains('drifted'), text(r.cells[5])]),
    shareLine: (document.querySelector('#summary svg.chart path.l') || {getAttribute: () => ''}).getAttribute('d'),
    columns: [...document.querySelectorAll('#columns tr.column')].map(r => [r.dataset.column,
        r.classList.contains('drifted'), text(r.cells[3])]),
    performance: [...document.querySelectorAll('#performance .panel')].map(p => p.dataset.metric),
    // Per metric, the dashed bounds drawn and whether each lies within the plot (between the axis labels).
    bounds: Object.fromEntries([...document.querySelectorAll('#performance .panel')].map(p => {
        const height = p.querySelector('svg').height.baseVal.value;
        return [p.dataset.metric, [...p.querySelectorAll('path.bd')].map(e => {
            const box = e.getBBox();
            return [e.getAttribute('class'), box.y >= 13 && box.y + box.height <= height - 15];
        })];
    })),
    multivariate: text(document.querySelector('#multivariate p')),
    health: [...document.querySelectorAll('#health tr')].slice(1).map(r => [...r.cells].map(c => text(c))),
    chunks: [...document.querySelectorAll('section.chunk')].map(s => ({
        drifted: s.dataset.drifted,
        charts: [...s.querySelectorAll('.feature')].map(f => f.dataset.column),
        rows: s.querySelectorAll('tr.column').length})),
    chartTexts: [...document.querySelectorAll('section.chunk .feature svg text')].map(t => t.textContent),
    scripts: document.querySelectorAll('script').length,
    external: [...document.querySelectorAll('[src],link[href]')]
              .filter(e => !(e.src || e.href).startsWith('data:')).length,
  };
})()"""


def rows(n: int, seed: int, shift: float = 0.0, cities=("paris", "berlin", "<rome>")) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    age = rng.normal(40 + shift, 10, n)
    score = 1 / (1 + np.exp(-(age - 45) / 5))
    income = rng.lognormal(10, 0.5, n)
    return {"age": age.round(2).tolist(), "income": [None if i % 10 == 0 and shift else float(round(v)) for i, v
                                                     in enumerate(income)],
            "city": rng.choice(list(cities), n).tolist(), "score": score.round(3).tolist(),
            "pred": (score > 0.5).astype(int).tolist(), "label": (rng.random(n) < score).astype(int).tolist()}


def write_csv(path: Path, data: dict[str, list]) -> Path:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(data)
        out.writerows(zip(*data.values()))
    return path


def joined(*parts: dict[str, list]) -> dict[str, list]:
    return {k: [v for p in parts for v in p[k]] for k in parts[0]}


async def open_report(tmp: Path, report: Path, shot: str) -> tuple[dict[str, Any], list[str]]:
    async with browser(tmp) as tools:
        await tools.open(report.as_uri())
        facts = await tools.evaluate(REPORT_FACTS)
        image = await tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        (tmp / shot).write_bytes(base64.b64decode(image["data"]))
        await asyncio.sleep(0.2)
        await tools.evaluate("1")
        return facts, problems(tools.events)


async def test_the_html_report_of_a_drifting_csv(tmp_path):
    reference = write_csv(tmp_path / "train.csv", rows(3000, seed=0))
    current = write_csv(tmp_path / "today.csv", joined(rows(2000, seed=1), rows(2000, seed=2, shift=30,
                                                                               cities=("paris", "<rome>", "lyon"))))
    report = tmp_path / "report.html"
    done = await asyncio.to_thread(vigil, "analyze", "--reference", reference, "--current", current,
                                   "--score", "score", "--prediction", "pred", "--label", "label",
                                   "--chunk-size", "1000", "--multivariate", "mmd", "--format", "html", "-o", report)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    facts, found = await open_report(tmp_path, report, "report.png")

    assert found == [], found
    assert facts["scripts"] == 0 and facts["external"] == 0
    assert facts["title"] == f"Vigil drift report: {current}"
    assert [(i, d) for i, d, _ in facts["summary"]] == [("0", False), ("1", False), ("2", True), ("3", True)]
    assert "age" in facts["summary"][2][2] and facts["summary"][0][2] == "-"
    assert facts["shareLine"].count("M") == 1 and len(facts["shareLine"]) > 8
    columns = dict((name, (drifted, count)) for name, drifted, count in facts["columns"])
    assert columns["age"] == (True, "2 of 4") and columns["income"][0] is False
    assert [c[1] for c in facts["columns"]] == sorted((c[1] for c in facts["columns"]), reverse=True)  # drifted first
    assert {"accuracy", "roc_auc"} <= set(facts["performance"])
    # The watched metrics: each line's own bound, dashed in its colour and inside the plot; f1 is not watched.
    for metric in ("accuracy", "roc_auc"):
        assert sorted(facts["bounds"][metric]) == [["l l0 bd", True], ["l l1 bd", True]], facts["bounds"]
    assert facts["bounds"]["f1"] == []
    assert facts["multivariate"].startswith("Drifted in 2 of 4")
    health = {r[0]: r for r in facts["health"]}
    assert health["income"][1].startswith("10.0%") and "chunk 2" in health["income"][1]  # missing, where
    assert health["city"][5] != "0.0%" and "(chunk" in health["city"][5]  # unseen category: lyon
    assert health["age"][1] == "0.0%"
    assert [c["drifted"] for c in facts["chunks"]] == ["false", "false", "true", "true"]
    assert facts["chunks"][0]["charts"] == [] and "age" in facts["chunks"][2]["charts"]
    assert all(c["rows"] == 5 for c in facts["chunks"])  # age, income, city, score, pred
    assert "<rome>" in facts["chartTexts"] and "lyon" in facts["chartTexts"]  # categories by name, escaped
    assert any(t.replace(".", "").isdigit() for t in facts["chartTexts"])  # value axes
    assert (tmp_path / "report.png").stat().st_size > 20_000
    print(f"screenshot: {tmp_path / 'report.png'}")


async def test_the_html_report_of_a_parquet_file_to_stdout(tmp_path):
    reference, current = tmp_path / "train.parquet", tmp_path / "today.parquet"
    pq.write_table(pa.table(rows(2000, seed=0)), reference)
    pq.write_table(pa.table(rows(1000, seed=3, shift=20)), current)
    done = await asyncio.to_thread(vigil, "analyze", "--reference", reference, "--current", current,
                                   "--prediction", "pred", "--format", "html")
    assert done.returncode == 0, done.stderr
    report = tmp_path / "report.html"
    report.write_text(done.stdout)
    facts, found = await open_report(tmp_path, report, "report-parquet.png")
    assert found == [], found
    assert [(i, d) for i, d, _ in facts["summary"]] == [("0", True)]
    assert facts["performance"] == [] and facts["multivariate"] is None  # no labels, no --multivariate
    assert "age" in facts["chunks"][0]["charts"]


def test_a_report_of_100_columns_and_50_chunks_stays_small(tmp_path):
    rng = np.random.default_rng(0)
    n_columns, chunk = 100, 200
    reference = {f"c{i}": rng.normal(0, 1, 2000).round(3).tolist() for i in range(n_columns)}
    # Every other chunk moves every column: the most charts a report draws.
    current = {name: [v for k in range(50) for v in rng.normal(3 * (k % 2), 1, chunk).round(3).tolist()]
               for name in reference}
    for i in range(0, n_columns, 4):  # a quarter categorical, with many categories
        reference[f"c{i}"] = [f"category {int(abs(v) * 20)}" for v in reference[f"c{i}"]]
        current[f"c{i}"] = [f"category {int(abs(v) * 20)}" for v in current[f"c{i}"]]
    report = tmp_path / "report.html"
    done = vigil("analyze", "--reference", write_csv(tmp_path / "ref.csv", reference), "--current",
                 write_csv(tmp_path / "cur.csv", current), "--chunk-size", str(chunk), "--format", "html",
                 "-o", report)
    assert done.returncode == 0, done.stderr
    text = report.read_text()
    assert text.count("<section class=chunk") == 50
    charts = [part.count("class='feature drifted'") for part in text.split("<section class=chunk")[1:]]
    assert max(charts) == 12 and sum(charts) >= 25 * 12  # at most 12 charts a drifted chunk
    assert len(text.encode()) <= MAX_LARGE_REPORT_BYTES, len(text.encode())


def test_an_unknown_format_is_refused(tmp_path):
    reference = write_csv(tmp_path / "train.csv", rows(200, seed=0))
    done = vigil("analyze", "--reference", reference, "--current", reference, "--format", "pdf")
    assert done.returncode == 2 and "invalid choice: 'pdf'" in done.stderr
