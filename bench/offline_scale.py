"""`vigil analyze` at scale: 1 M reference rows against 2 M and 10 M current rows x 20 columns
(18 numeric, 2 categorical), Parquet, 1 M-row chunks; beside NannyML and the floor, in one run.

Each contender runs as its own subprocess, one after the other in every round (the order turns
round by round); the figures are medians over `--rounds`:

- vigil: `vigil analyze --reference REF --current CUR --chunk-size 1000000 --format json -o OUT`.
- nannyml: `UnivariateDriftCalculator` (Kolmogorov-Smirnov and Wasserstein on the numeric
  columns, chi2 on the categorical ones), `chunk_size` 1 M, fit on the reference, then
  calculate on the current data, both read with pandas (pyarrow) first; needs .venv-bench
  (`make bench-deps`).
- floor: read the reference and the current file with pyarrow in 1 M-row batches and sort
  each numeric column of each batch once (`np.sort`): what any sort-based drift statistic
  must at least do.

Each is measured from its rusage when it exits (`os.wait4`): wall time, CPU time (user + system,
every thread), and peak resident memory (ru_maxrss). CPU / wall above 1 means more than one core
was used. The machine this was written on has 2 cores shared with other work: compare the
ratios of one run, not figures across runs.

The files are generated once (seeded) under `--dir` (default /tmp/vigil-offline-scale) and
reused. Some numeric columns shift in the later chunks of the current data.

    .venv-bench/bin/python bench/offline_scale.py                  # 2 M and 10 M rows, 3 rounds
    .venv-bench/bin/python bench/offline_scale.py --current-rows 2000000 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 1_000_000
NUMERIC = [f"x{i:02d}" for i in range(18)]
CATEGORICAL = ["region", "tier"]
CATEGORIES = {"region": ["eu-west", "eu-north", "us-east", "us-west", "ap-south", "ap-east"],
              "tier": ["free", "basic", "pro", "enterprise"]}

NANNYML = """
import os, sys
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
import pandas as pd, nannyml as nml
ref, cur, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = sys.argv[4].split(",")
categorical = sys.argv[5].split(",")
reference = pd.read_parquet(ref)
current = pd.read_parquet(cur)
for name in categorical:
    reference[name] = reference[name].astype("category")
    current[name] = current[name].astype("category")
calculator = nml.UnivariateDriftCalculator(column_names=names, chunk_size=chunk,
    continuous_methods=["kolmogorov_smirnov", "wasserstein"], categorical_methods=["chi2"])
calculator.fit(reference)
result = calculator.calculate(current)
print(len(result.filter(period="analysis").to_df()), "chunks")
"""


def generate(path: Path, rows: int, seed: int, shifted: bool) -> None:
    """A Parquet file of `rows` rows, written 1 M rows (one row group) at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    schema = pa.schema([*(pa.field(n, pa.float64()) for n in NUMERIC),
                        *(pa.field(n, pa.string()) for n in CATEGORICAL)])
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            late = shifted and start >= rows // 2  # the second half of the current data drifts
            columns = []
            for i, _ in enumerate(NUMERIC):
                shape = i % 3
                if shape == 0:
                    values = rng.normal(0.0, 1.0, n)
                elif shape == 1:
                    values = rng.lognormal(0.0, 0.5, n)
                else:
                    values = rng.integers(0, 50, n).astype(float)  # many ties
                if late and i % 4 == 0:
                    values = values + 0.3 * (1 + i % 2)
                values[rng.random(n) < 0.01] = np.nan  # some missing values
                columns.append(pa.array(values, from_pandas=True))
            for name in CATEGORICAL:
                options = CATEGORIES[name]
                weights = np.linspace(1.0, 2.0, len(options)) if late else np.ones(len(options))
                codes = rng.choice(len(options), n, p=weights / weights.sum())
                columns.append(pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)),
                                                              pa.array(options)).cast(pa.string()))
            writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group_size=CHUNK)
    tmp.rename(path)


def floor_main(reference: str, current: str) -> None:
    """The floor: read both files in 1 M-row batches, one np.sort per numeric column per batch."""
    import numpy as np
    import pyarrow.parquet as pq

    for path in (reference, current):
        file = pq.ParquetFile(path, pre_buffer=False)
        for batch in file.iter_batches(batch_size=CHUNK, columns=[*NUMERIC, *CATEGORICAL]):
            for name in NUMERIC:
                np.sort(batch.column(name).to_numpy(zero_copy_only=False))


def measure(command: list[str]) -> dict[str, float]:
    """Wall time, CPU time and peak RSS of `command` run to its end."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    errors = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{errors[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "vigil-offline-scale")
    parser.add_argument("--reference-rows", type=int, default=1_000_000)
    parser.add_argument("--current-rows", type=int, action="append",
                        help="rows of a current file (repeatable; default 2 M and 10 M)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vigil", default=str(ROOT / ".venv" / "bin" / "vigil"), help="the vigil command")
    parser.add_argument("--vigil-arg", action="append", default=[],
                        help="an extra argument for `vigil analyze` (repeatable)")
    parser.add_argument("--skip-nannyml", action="store_true")
    parser.add_argument("--floor", nargs=2, metavar=("REF", "CUR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        floor_main(*args.floor)
        return

    sizes = args.current_rows or [2_000_000, 10_000_000]
    args.dir.mkdir(parents=True, exist_ok=True)
    reference = args.dir / f"reference-{args.reference_rows}.parquet"
    currents = {n: args.dir / f"current-{n}.parquet" for n in sizes}
    for path, rows, seed, shifted in [(reference, args.reference_rows, 1, False),
                                      *((p, n, 2 + n, True) for n, p in currents.items())]:
        if not path.exists():
            print(f"generating {path} ({rows:,} rows)", file=sys.stderr)
            generate(path, rows, seed, shifted)

    nannyml_python = ROOT / ".venv-bench" / "bin" / "python"
    run_nannyml = not args.skip_nannyml and nannyml_python.exists()
    out = args.dir / "vigil-report.json"
    for rows, current in currents.items():
        contenders = {
            "vigil": [args.vigil, "analyze", "--reference", str(reference), "--current", str(current),
                      "--chunk-size", str(CHUNK), "--format", "json", "-o", str(out), *args.vigil_arg],
            "floor": [sys.executable, __file__, "--floor", str(reference), str(current)],
        }
        if run_nannyml:
            contenders["nannyml"] = [str(nannyml_python), "-c", NANNYML, str(reference), str(current), str(CHUNK),
                                     ",".join([*NUMERIC, *CATEGORICAL]), ",".join(CATEGORICAL)]
        results: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
        names = list(contenders)
        for round_ in range(args.rounds):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                results[name].append(measure(contenders[name]))
        med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}
        print(f"\n{args.reference_rows:,} reference + {rows:,} current rows x {len(NUMERIC) + len(CATEGORICAL)} "
              f"columns, {CHUNK:,}-row chunks, medians of {args.rounds} rounds")
        print(f"{'':10} {'wall s':>8} {'CPU s':>8} {'CPU/wall':>8} {'peak RSS MiB':>13}")
        for name, m in med.items():
            print(f"{name:10} {m['wall']:8.2f} {m['cpu']:8.2f} {m['cpu'] / m['wall']:8.2f} {m['rss_mib']:13.0f}")
        vigil = med["vigil"]
        if "nannyml" in med:
            print(f"NannyML / vigil: wall {med['nannyml']['wall'] / vigil['wall']:.2f}x, "
                  f"CPU {med['nannyml']['cpu'] / vigil['cpu']:.2f}x")
        print(f"vigil / floor:   wall {vigil['wall'] / med['floor']['wall']:.2f}x, "
              f"CPU {vigil['cpu'] / med['floor']['cpu']:.2f}x")
    if not run_nannyml and not args.skip_nannyml:
        print(f"(NannyML left out: no {nannyml_python}; `make bench-deps` builds it)")


if __name__ == "__main__":
    main()
