"""`vigil analyze` on tables large enough for its column threads and chunks cut across Parquet row
groups: the report is the same with one thread or two, and the same from Parquet as from CSV."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from agent.ml import parallel

REPO = Path(__file__).resolve().parents[2]
ROWS = 120_000  # over parallel.MIN_ROWS, so the reference's and the first chunk's columns use threads
CHUNK = 110_000  # cuts a 30,000-row row group; a second chunk of 10,000 rows


def table(seed: int, shift: float) -> pa.Table:
    """Numeric columns with missing values and ties, a categorical one with nulls (no blanks: CSV reads
    a blank cell as missing, Parquet an empty string as one)."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(shift, 1.0, ROWS).round(4)
    normal[rng.random(ROWS) < 0.02] = np.nan
    counts = rng.integers(0, 30, ROWS).astype(float)
    skewed = rng.lognormal(shift, 0.5, ROWS).round(4)
    city = rng.choice(np.array(["paris", "oslo", "lima", "quito"], dtype=object), ROWS, p=[0.4, 0.3, 0.2, 0.1])
    city[rng.random(ROWS) < 0.05] = None
    return pa.table({"normal": pa.array(normal, from_pandas=True), "counts": counts, "skewed": skewed,
                     "city": pa.array(city.tolist(), pa.string())})


def analyze(reference: Path, current: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "agent", "analyze", "--reference", str(reference), "--current",
                          str(current), "--chunk-size", str(CHUNK), "--categorical", "city", "--format", "json",
                          *args], capture_output=True, text=True, check=True, cwd=REPO)
    return out.stdout


def test_same_report_with_one_thread_or_two_and_from_parquet_or_csv(tmp_path) -> None:
    assert ROWS >= parallel.MIN_ROWS > CHUNK - 100_000
    paths = {}
    for name, seed, shift in (("reference", 1, 0.0), ("current", 2, 0.3)):
        data = table(seed, shift)
        paths[name, "parquet"] = tmp_path / f"{name}.parquet"
        pq.write_table(data, paths[name, "parquet"], row_group_size=30_000)
        paths[name, "csv"] = tmp_path / f"{name}.csv"
        columns = {n: data.column(n).to_pylist() for n in data.column_names}
        with open(paths[name, "csv"], "w") as f:
            f.write(",".join(columns) + "\n")
            for row in zip(*columns.values()):
                f.write(",".join("" if v is None or v != v else repr(v) if isinstance(v, float) else v
                                 for v in row) + "\n")
    one = analyze(paths["reference", "parquet"], paths["current", "parquet"], "--threads", "1")
    two = analyze(paths["reference", "parquet"], paths["current", "parquet"], "--threads", "2")
    from_csv = analyze(paths["reference", "csv"], paths["current", "csv"], "--threads", "2")
    assert '"drifted": true' in one  # the shifted columns are found, so the report says something
    assert one == two
    assert one == from_csv
