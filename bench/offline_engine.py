"""Offline engine: `vigil analyze` against NannyML and Evidently, on the same data, in one run.

Seeded data: a reference and a current table of `--rows` rows (default
100,000 each) and 10 numeric columns of different shapes. The current table is
read in chunks of `--chunk-size` rows (default 10,000, so 10 chunks); some
columns shift in the later chunks by a known amount, others never do (see
COLUMNS). Each tool analyses the whole current table against the reference:

- Vigil, in-process: `agent.ml.offline.reference.build_profile` on the reference and
  `agent.ml.offline.analysis.analyze_chunk` on each chunk, what `vigil analyze
  --reference REF --current CUR --chunk-size N` runs once the files are read
  (drift and data health, default DriftConfig). This is the headline figure:
  like the other two, it starts from columns already in memory.
- `vigil analyze` as a subprocess on Parquet files (`--format json`): its CPU
  time (user + system, from the child's rusage) includes interpreter start-up,
  imports and reading the files; the same command on 1,000 + 1,000 rows is
  measured too and taken off, as the start-up cost.
- NannyML: `UnivariateDriftCalculator` with the `kolmogorov_smirnov` and
  `wasserstein` methods, `chunk_size` as above, `fit(reference)` then
  `calculate(current)`.
- Evidently: a `Report([DataDriftPreset()])` run per chunk against the
  reference (Evidently has no chunking of its own).

CPU time is `time.process_time()` (every thread of this process), taken
around the work only, after garbage collection; each figure is the median of
`--repeat` rounds, the tools interleaved in each round. The figures are
printed as ratios to Vigil's; the machine (2 cores, shared) is noisy. Vigil's
parts (the profile, the drift statistics, the data health) are timed again on
their own, and NannyML, which computes drift only, is also set against
Vigil's profile and drift statistics; the output says what each tool computed.

Then the verdicts, per chunk and column: drifted or not, against the known
shift and against each other. Vigil and Evidently decide on the same effect
size (Wasserstein distance normed by the reference's standard deviation,
threshold 0.1: Evidently's default for a numeric column of a reference over
1,000 rows; Vigil also requires its KS test to be significant after
Bonferroni, which at these sizes every such shift is). NannyML's own alerts
are of another kind: a chunk alerts when its statistic is more than 3 standard
deviations above the mean of the same statistic on the reference's own chunks,
a threshold relative to the reference, not an effect size; the same rule as
Vigil's is also applied to NannyML's Wasserstein values (divided by the
reference's standard deviation, >= 0.1), and that is the comparison in kind.

    make bench-deps                                      # .venv-bench: the project, NannyML, Evidently
    .venv-bench/bin/python bench/offline_engine.py       # about 2 minutes
    .venv-bench/bin/python bench/offline_engine.py --blas-threads 1 --profile

NannyML and Evidently are optional: without them (or with --skip-nannyml,
--skip-evidently) the rest still runs.
"""

from __future__ import annotations

import argparse
import os
import sys

# Parsed before numpy is imported: --blas-threads must be in the environment first.
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--rows", type=int, default=100_000, help="rows of the reference and of the current data")
parser.add_argument("--chunk-size", type=int, default=10_000, help="rows per chunk of the current data")
parser.add_argument("--repeat", type=int, default=3, help="rounds; figures are medians (at least 3)")
parser.add_argument("--seed", type=int, default=20240609, help="seed of the generated data")
parser.add_argument("--blas-threads", type=int, metavar="N",
                    help="set OPENBLAS/OMP/MKL_NUM_THREADS=N for this run and the subprocesses "
                    "(default: the environment's, i.e. the library's own choice)")
parser.add_argument("--skip-nannyml", action="store_true")
parser.add_argument("--skip-evidently", action="store_true")
parser.add_argument("--skip-cli", action="store_true", help="leave out the `vigil analyze` subprocess")
parser.add_argument("--profile", action="store_true", help="also cProfile one in-process Vigil run and print "
                    "the hot spots")
ARGS = parser.parse_args() if __name__ == "__main__" else None

if ARGS is not None and ARGS.blas_threads is not None:
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(ARGS.blas_threads)
# No usage reporting from the peers (this machine has no network anyway).
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.ml.offline.analysis import analyze_chunk  # noqa: E402
from agent.ml.offline.commands import drift_config  # noqa: E402
from agent.ml.offline.reference import build_profile  # noqa: E402
from agent.ml.columns import RawColumn  # noqa: E402
from agent.ml.tables import Table  # noqa: E402

THRESHOLD = 0.1  # Wasserstein normed: Vigil's default numeric_threshold, Evidently's default for > 1,000 rows
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)

# name, distribution, what changes in the current data, and the population Wasserstein distance
# normed by the reference's standard deviation as a function of the chunk index (the known shift).
COLUMNS = [
    ("normal_shift", "normal", "+1.0 sd from chunk 5", lambda k: 1.0 if k >= 5 else 0.0),
    ("lognormal_shift", "lognormal(0, 0.5)", "+0.3 sd from chunk 5", lambda k: 0.3 if k >= 5 else 0.0),
    ("uniform_ramp", "uniform", "+0.04 sd a chunk from chunk 4", lambda k: 0.04 * (k - 3) if k >= 4 else 0.0),
    ("exponential_small", "exponential", "+0.05 sd from chunk 5 (below 0.1)",
     lambda k: 0.05 if k >= 5 else 0.0),
    ("normal_scale", "normal", "sd x1.5 from chunk 5", lambda k: 0.5 * SQRT_2_OVER_PI if k >= 5 else 0.0),
    ("gamma_stable", "gamma(2)", "none", lambda k: 0.0),
    ("student_t_stable", "t(5)", "none", lambda k: 0.0),
    ("bimodal_weights", "0.5 N(-2,1) + 0.5 N(2,1)", "weights 0.4/0.6 from chunk 8",
     lambda k: 0.4 / math.sqrt(5) if k >= 8 else 0.0),
    ("beta_stable", "beta(2, 5)", "none", lambda k: 0.0),
    ("normal_stable", "normal", "none", lambda k: 0.0),
]
NAMES = [c[0] for c in COLUMNS]


# --- the data ----------------------------------------------------------------------


def generate(rows: int, chunk_size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference and current data (rows x columns, float64) and the known shift per chunk and column."""
    rng = np.random.default_rng(seed)
    chunks = math.ceil(rows / chunk_size)
    chunk = np.arange(rows) // chunk_size

    def base(i: int, n: int, weight: np.ndarray | float = 0.5) -> np.ndarray:
        name = NAMES[i]
        if name.startswith("normal"):
            return rng.normal(0.0, 1.0, n)
        if name.startswith("lognormal"):
            return rng.lognormal(0.0, 0.5, n)
        if name.startswith("uniform"):
            return rng.uniform(0.0, 1.0, n)
        if name.startswith("exponential"):
            return rng.exponential(1.0, n)
        if name.startswith("gamma"):
            return rng.gamma(2.0, 1.0, n)
        if name.startswith("student"):
            return rng.standard_t(5, n)
        if name.startswith("bimodal"):
            return np.where(rng.uniform(size=n) < weight, -2.0, 2.0) + rng.normal(0.0, 1.0, n)
        if name.startswith("beta"):
            return rng.beta(2.0, 5.0, n)
        raise ValueError(name)

    reference = np.empty((rows, len(COLUMNS)))
    current = np.empty((rows, len(COLUMNS)))
    known = np.array([[f(k) for f in (c[3] for c in COLUMNS)] for k in range(chunks)])
    for i, name in enumerate(NAMES):
        reference[:, i] = base(i, rows)
        if name == "bimodal_weights":
            current[:, i] = base(i, rows, weight=np.where(chunk >= 8, 0.4, 0.5))
            continue
        values = base(i, rows)
        sd = float(np.std(reference[:, i]))
        if name == "normal_scale":
            values = np.where(chunk >= 5, values * 1.5, values)
        else:  # a location shift of d sd moves the normed Wasserstein distance by exactly d
            values = values + known[chunk, i] * sd
        current[:, i] = values
    return reference, current, known


def table(values: np.ndarray) -> Table:
    rows = values.shape[0]
    return Table({name: RawColumn(np.ascontiguousarray(values[:, i]), np.full(rows, None, dtype=object))
                  for i, name in enumerate(NAMES)}, rows)


# --- the tools ---------------------------------------------------------------------


def cpu_of(function):
    """(CPU seconds of this process spent in function(), its result)."""
    gc.collect()
    start = time.process_time()
    result = function()
    return time.process_time() - start, result


def run_vigil(reference: Table, current: Table, chunk_size: int) -> list[dict]:
    """What `vigil analyze` does once the files are read (see agent.ml.offline.commands.analyze)."""
    config = drift_config()
    profile = build_profile(reference, model="reference", sentinels=config.sentinels, source="file:reference",
                            window_rows=chunk_size)
    return [analyze_chunk(profile, current.slice(start, start + chunk_size), config, index)
            for index, start in enumerate(range(0, current.rows, chunk_size))]


def vigil_parts(reference: Table, current: Table, chunk_size: int) -> dict[str, float]:
    """CPU seconds of the parts of run_vigil's work, each run on its own: the profile, the drift
    statistics (drift.evaluate) and the data health (health.column_health) of every chunk."""
    from agent.ml import drift, health

    config = drift_config()
    gc.collect()
    start = time.process_time()
    profile = build_profile(reference, model="reference", sentinels=config.sentinels, source="file:reference",
                            window_rows=chunk_size)
    parts = {"profile": time.process_time() - start}
    chunks = [current.slice(at, at + chunk_size) for at in range(0, current.rows, chunk_size)]
    start = time.process_time()
    for chunk in chunks:
        drift.evaluate(profile, chunk.columns, chunk.rows, config)
    parts["drift"] = time.process_time() - start
    start = time.process_time()
    for chunk in chunks:
        for name, column in profile.columns().items():
            health.column_health(column, chunk.columns[name], config.sentinels)
    parts["health"] = time.process_time() - start
    return parts


def vigil_verdicts(chunks: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    drifted = np.array([[c["drift"]["features"][n]["drifted"] for n in NAMES] for c in chunks])
    score = np.array([[c["drift"]["features"][n]["statistics"]["wasserstein_normed"] for n in NAMES]
                      for c in chunks], dtype=float)
    return drifted, score


def run_nannyml(nml, reference_df, current_df, chunk_size: int):
    calculator = nml.UnivariateDriftCalculator(column_names=NAMES, chunk_size=chunk_size,
                                               continuous_methods=["kolmogorov_smirnov", "wasserstein"])
    calculator.fit(reference_df)
    return calculator.calculate(current_df)


def nannyml_verdicts(result, reference: np.ndarray) -> dict[str, np.ndarray]:
    df = result.filter(period="analysis").to_df()
    sd = np.maximum(np.std(reference, axis=0), 1e-3)
    out = {"ks_alert": np.array([df[(n, "kolmogorov_smirnov", "alert")].to_numpy(bool) for n in NAMES]).T,
           "ks": np.array([df[(n, "kolmogorov_smirnov", "value")].to_numpy(float) for n in NAMES]).T,
           "ks_threshold": np.array([df[(n, "kolmogorov_smirnov", "upper_threshold")].to_numpy(float)[0]
                                     for n in NAMES]),
           "w_alert": np.array([df[(n, "wasserstein", "alert")].to_numpy(bool) for n in NAMES]).T,
           "w": np.array([df[(n, "wasserstein", "value")].to_numpy(float) for n in NAMES]).T}
    out["w_normed"] = out["w"] / sd
    out["w_rule"] = out["w_normed"] >= THRESHOLD
    return out


def run_evidently(ev, reference_df, current_df, chunk_size: int):
    definition = ev["DataDefinition"](numerical_columns=NAMES)
    reference = ev["Dataset"].from_pandas(reference_df, data_definition=definition)
    snapshots = []
    for start in range(0, len(current_df), chunk_size):
        chunk = ev["Dataset"].from_pandas(current_df.iloc[start:start + chunk_size], data_definition=definition)
        snapshots.append(ev["Report"]([ev["DataDriftPreset"]()]).run(chunk, reference).dict())
    return snapshots


P_VALUE_METHODS = ("p_value", "K-S", "chi-square", "Z-test", "Fisher", "Anderson", "Cramer", "Epps", "T-Test",
                   "Mann", "empirical")


def evidently_verdicts(snapshots: list[dict]) -> dict:
    drifted = np.zeros((len(snapshots), len(NAMES)), bool)
    score = np.full((len(snapshots), len(NAMES)), math.nan)
    methods: set[str] = set()
    counts = []
    for k, snapshot in enumerate(snapshots):
        for metric in snapshot["metrics"]:
            config = metric["config"]
            if config["type"].endswith("DriftedColumnsCount"):
                counts.append(int(metric["value"]["count"]))
            elif config["type"].endswith("ValueDrift"):
                i = NAMES.index(config["column"])
                method, threshold, value = config["method"], config["threshold"], float(metric["value"])
                methods.add(f"{method}, threshold {threshold}")
                score[k, i] = value
                # A p-value drifts below its threshold; a distance at or above it.
                drifted[k, i] = value < threshold if any(m in method for m in P_VALUE_METHODS) \
                    else value >= threshold
    return {"drifted": drifted, "score": score, "methods": sorted(methods), "counts": counts}


def run_cli(reference: Path, current: Path, chunk_size: int, out: Path) -> float:
    """Child CPU seconds of one `vigil analyze` subprocess (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "agent", "analyze", "--reference", str(reference), "--current",
                    str(current), "--chunk-size", str(chunk_size), "--format", "json", "-o", str(out)],
                   cwd=ROOT, check=True, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# --- reporting ---------------------------------------------------------------------


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "unset (the library's choice)")
    return (f"{os.cpu_count()} cores ({model or platform.machine()}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}; "
            f"OPENBLAS_NUM_THREADS {blas}")


def agreement(a: np.ndarray, b: np.ndarray) -> str:
    same = int((a == b).sum())
    return f"{same}/{a.size} ({same / a.size:.0%})"


def main() -> int:
    args = ARGS
    args.repeat = max(args.repeat, 3)
    nml = ev = None
    missing = []
    if not args.skip_nannyml:
        try:
            import nannyml as nml  # noqa: F811
        except Exception as exc:  # not installed, or it does not import here
            missing.append(f"NannyML not available ({type(exc).__name__}: {exc}); run `make bench-deps`")
    if not args.skip_evidently:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import evidently
                from evidently import DataDefinition, Dataset, Report
                from evidently.presets import DataDriftPreset
            ev = {"DataDefinition": DataDefinition, "Dataset": Dataset, "Report": Report,
                  "DataDriftPreset": DataDriftPreset, "version": evidently.__version__}
        except Exception as exc:
            missing.append(f"Evidently not available ({type(exc).__name__}: {exc}); run `make bench-deps`")
    pandas = None
    if nml is not None or ev is not None:
        import pandas

    import scipy

    reference, current, known = generate(args.rows, args.chunk_size, args.seed)
    chunks = known.shape[0]
    truth = known >= THRESHOLD
    reference_table, current_table = table(reference), table(current)
    if pandas is not None:
        reference_df = pandas.DataFrame(reference, columns=NAMES)
        current_df = pandas.DataFrame(current, columns=NAMES)

    versions = [f"numpy {np.__version__}", f"scipy {scipy.__version__}"]
    if pandas is not None:
        versions.append(f"pandas {pandas.__version__}")
    if nml is not None:
        versions.append(f"nannyml {nml.__version__}")
    if ev is not None:
        versions.append(f"evidently {ev['version']}")
    print(f"machine: {machine()}")
    print(f"versions: {', '.join(versions)}")
    print(f"data: {args.rows:,} reference + {args.rows:,} current rows x {len(NAMES)} numeric columns, "
          f"{chunks} chunks of {args.chunk_size:,} (seed {args.seed}); {args.repeat} rounds, medians")
    for line in missing:
        print(f"note: {line}")
    sys.stdout.flush()

    tmp = tempfile.TemporaryDirectory(prefix="vigil-bench-")
    cli_ok = not args.skip_cli
    if cli_ok:
        try:
            import pyarrow  # noqa: F401
            import pyarrow.parquet as pq

            def write(path: Path, values: np.ndarray) -> None:
                pq.write_table(pyarrow.table({n: values[:, i] for i, n in enumerate(NAMES)}), path)

            files = {k: Path(tmp.name) / f"{k}.parquet" for k in ("reference", "current", "tiny_ref", "tiny_cur")}
            write(files["reference"], reference)
            write(files["current"], current)
            write(files["tiny_ref"], reference[:1000])
            write(files["tiny_cur"], current[:1000])
        except ImportError:
            print("note: pyarrow not installed: the `vigil analyze` subprocess is left out")
            cli_ok = False

    times: dict[str, list[float]] = {}
    results: dict[str, object] = {}

    def record(name: str, seconds: float, result=None) -> None:
        times.setdefault(name, []).append(seconds)
        if result is not None:
            results[name] = result

    # One untimed warm-up each: lazy imports (scipy.stats, the peers' modules) are not the work.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NannyML: "the resulting number of chunks is too low"
        run_vigil(reference_table.slice(0, 2000), current_table.slice(0, 2000), 1000)
        if nml is not None:
            run_nannyml(nml, reference_df.iloc[:20000], current_df.iloc[:20000], 2000)
        if ev is not None:
            run_evidently(ev, reference_df.iloc[:2000], current_df.iloc[:2000], 2000)

    for round_ in range(args.repeat):
        record("vigil", *cpu_of(lambda: run_vigil(reference_table, current_table, args.chunk_size)))
        for part, seconds in vigil_parts(reference_table, current_table, args.chunk_size).items():
            record(f"vigil_{part}", seconds)
        if nml is not None:
            record("nannyml", *cpu_of(lambda: run_nannyml(nml, reference_df, current_df, args.chunk_size)))
        if ev is not None:
            record("evidently", *cpu_of(lambda: run_evidently(ev, reference_df, current_df, args.chunk_size)))
        if cli_ok:
            out = Path(tmp.name) / "report.json"
            record("cli", run_cli(files["reference"], files["current"], args.chunk_size, out))
            results["cli"] = json.loads(out.read_text())["chunks"]
            record("cli_startup", run_cli(files["tiny_ref"], files["tiny_cur"], 1000, Path(tmp.name) / "tiny.json"))
        print(f"round {round_ + 1}/{args.repeat} done", file=sys.stderr, flush=True)

    med = {name: statistics.median(values) for name, values in times.items()}
    spread = {name: (min(values), max(values)) for name, values in times.items()}
    vigil = med["vigil"]

    print()
    print("CPU time of the work (process CPU, all threads), median of the rounds; ratio = tool / Vigil in-process")
    print(f"  {'tool':<48} {'CPU s':>7} {'min-max':>13} {'x Vigil':>8}")

    def line(label: str, name: str, seconds: float | None = None) -> None:
        seconds = med[name] if seconds is None else seconds
        lo, hi = spread.get(name, (seconds, seconds))
        print(f"  {label:<48} {seconds:>7.3f} {f'{lo:.2f}-{hi:.2f}':>13} {seconds / vigil:>7.2f}x")

    line(f"Vigil in-process (profile + {chunks} chunks)", "vigil")
    line("  of which the reference profile", "vigil_profile")
    line("  of which drift statistics", "vigil_drift")
    line("  of which data health", "vigil_health")
    if cli_ok:
        line("vigil analyze subprocess, end to end", "cli")
        line("  of which start-up (1,000 + 1,000 rows)", "cli_startup")
        work = med["cli"] - med["cli_startup"]
        print(f"  {'  the rest: reading Parquet + the work + JSON':<48} {work:>7.3f} {'':>13} {work / vigil:>7.2f}x")
    if nml is not None:
        line("NannyML UnivariateDriftCalculator (KS + W)", "nannyml")
    if ev is not None:
        line(f"Evidently DataDriftPreset x {chunks} chunks", "evidently")

    print()
    print("Speed-up (how many times less CPU Vigil needs), against the targets:")
    if nml is not None:
        r = med["nannyml"] / vigil
        print(f"  Vigil vs NannyML:   {r:6.2f}x  (target >= 10x: {'met' if r >= 10 else f'missed, {10 / r:.1f}x short'})")
    if ev is not None:
        r = med["evidently"] / vigil
        print(f"  Vigil vs Evidently: {r:6.2f}x  (target >= 100x: "
              f"{'met' if r >= 100 else f'missed, {100 / r:.1f}x short'})")
    if cli_ok:
        for peer, label in (("nannyml", "NannyML"), ("evidently", "Evidently")):
            if peer in med:
                print(f"  {label} / `vigil analyze` subprocess: end to end {med[peer] / med['cli']:.2f}x, "
                      f"start-up taken off {med[peer] / max(med['cli'] - med['cli_startup'], 1e-9):.2f}x")
    if nml is not None:
        # NannyML computes drift only; Vigil's profile and drift statistics without its data health.
        r = med["nannyml"] / (med["vigil_profile"] + med["vigil_drift"])
        print(f"  NannyML / Vigil's profile + drift statistics alone (no data health): {r:.2f}x")

    print()
    print("What each computed, per chunk x column unless said:")
    print("  Vigil: a profile of the reference (10 quantile bins and their counts, a sorted 10,000-value "
          "reservoir, moments, range);")
    print("    the KS statistic and ks_2samp's p-value (reservoir vs chunk), Wasserstein-1 / sd, PSI and "
          "Jensen-Shannon on the bins,")
    print("    Bonferroni over the columns and the verdict; data health (missing, sentinel, type mismatch, "
          "out of range, unseen).")
    if nml is not None:
        print("  NannyML: KS statistic (no p-value) and Wasserstein, both estimated on 10,000 equal-width bins "
              "of the reference's range,")
        print(f"    for the {chunks} current chunks and the reference's own chunks (its alert thresholds).")
    if ev is not None:
        print("  Evidently: its DataDriftPreset per chunk against the whole reference (Wasserstein / sd on all "
              "values, the drifted-column count),")
        print("    Dataset.from_pandas and the report object included.")

    # --- verdicts ---
    v_drifted, v_score = vigil_verdicts(run_vigil(reference_table, current_table, args.chunk_size))
    print()
    print(f"Verdicts per chunk and column (drifted or not); known shift = population Wasserstein / reference sd, "
          f"drift when >= {THRESHOLD}")
    marks = [("T", "known shift >= 0.1", truth), ("V", "Vigil (KS significant after Bonferroni and W/sd >= 0.1)",
                                                   v_drifted)]
    if cli_ok:
        c_drifted, _ = vigil_verdicts(results["cli"])
        same = bool((c_drifted == v_drifted).all())
        print(f"  `vigil analyze` subprocess verdicts identical to in-process: {'yes' if same else 'NO'}")
    e = n = None
    if ev is not None:
        e = evidently_verdicts(run_evidently(ev, reference_df, current_df, args.chunk_size))
        print(f"  Evidently's method for these columns: {'; '.join(e['methods'])}")
        marks.append(("E", "Evidently DataDriftPreset (its default: W/sd >= 0.1)", e["drifted"]))
    if nml is not None:
        n = nannyml_verdicts(run_nannyml(nml, reference_df, current_df, args.chunk_size), reference)
        marks += [("N", "NannyML's Wasserstein / reference sd >= 0.1 (Vigil's rule on NannyML's value)",
                   n["w_rule"]),
                  ("k", "NannyML KS alert (relative: > mean + 3 sd of reference chunks)", n["ks_alert"]),
                  ("w", "NannyML Wasserstein alert (relative, same rule)", n["w_alert"])]
    for letter, text, _ in marks:
        print(f"    {letter}: {text}")
    width = max(len(name) for name in [*NAMES, "drifted columns, Vigil"])
    cell = len(marks) + 1
    print(f"  {'column':<{width}}  " + "".join(f"{f'c{k}':<{cell}}" for k in range(chunks)) + "known change")
    for i, name in enumerate(NAMES):
        cells = ["".join(letter if grid[k, i] else "." for letter, _, grid in marks) for k in range(chunks)]
        print(f"  {name:<{width}}  " + "".join(f"{c:<{cell}}" for c in cells) + COLUMNS[i][2])
    print(f"  {'drifted columns, Vigil':<{width}}  " + "".join(f"{int(v_drifted[k].sum()):<{cell}}"
                                                              for k in range(chunks)))
    if e is not None:
        print(f"  {'Evidently count':<{width}}  " + "".join(f"{c:<{cell}}" for c in e["counts"]))

    print()
    print(f"Agreement over {truth.size} chunk x column cells:")
    if e is not None:
        print(f"  Vigil vs Evidently (same kind: W/sd >= 0.1):      {agreement(v_drifted, e['drifted'])}")
    if n is not None:
        print(f"  Vigil vs NannyML's W/sd >= 0.1 (same kind):       {agreement(v_drifted, n['w_rule'])}")
        print(f"  Vigil vs NannyML KS alerts (different kind):      {agreement(v_drifted, n['ks_alert'])}")
        print(f"  Vigil vs NannyML Wasserstein alerts (different):  {agreement(v_drifted, n['w_alert'])}")
    big, small, none = truth, (known > 0) & ~truth, known == 0
    print(f"Drifted cells by known shift: >= 0.1 ({int(big.sum())} cells), > 0 but < 0.1 ({int(small.sum())}: "
          f"real but below the effect size), none ({int(none.sum())}: any alert is false)")
    print(f"  {'':<46} {'>= 0.1':>6}  {'< 0.1':>5}  {'none':>6}")
    for letter, text, grid in marks[1:]:
        print(f"  {letter} {text.split(' (')[0]:<44} {int(grid[big].sum()):>3}/{int(big.sum())}  "
              f"{int(grid[small].sum()):>3}/{int(small.sum())}  {int(grid[none].sum()):>3}/{int(none.sum())}")
    if n is not None:
        thresholds = ", ".join(f"{t:.4f}" for t in n["ks_threshold"])
        print(f"  (NannyML's KS thresholds, from the reference's own {math.ceil(args.rows / args.chunk_size)} "
              f"chunks, per column: {thresholds};")
        print("   the reference's own chunks, compared with the reference they are part of, score low, so "
              "unshifted current chunks can exceed them)")
    disagreements = []
    for k in range(chunks):
        for i, name in enumerate(NAMES):
            others = []
            if e is not None and e["drifted"][k, i] != v_drifted[k, i]:
                others.append("Evidently")
            if n is not None and n["w_rule"][k, i] != v_drifted[k, i]:
                others.append("NannyML W/sd")
            if others:
                values = f"Vigil {v_score[k, i]:.4f}"
                if e is not None:
                    values += f", Evidently {e['score'][k, i]:.4f}"
                if n is not None:
                    values += f", NannyML {n['w_normed'][k, i]:.4f}"
                disagreements.append(f"  c{k} {name}: known {known[k, i]:.3f}; W/sd {values}; "
                                     f"{' and '.join(others)} differ from Vigil")
    if disagreements:
        print("Where the same-kind verdicts differ (Vigil's W/sd is on its 10,000-value reservoir of the reference, "
              "Evidently's on all of it, NannyML's on 10,000 bins):")
        print("\n".join(disagreements))
    elif e is not None or n is not None:
        print("  The same-kind verdicts agree on every cell.")
    nearest = sorted(((abs(v_score[k, i] - THRESHOLD), k, i) for k in range(chunks) for i in range(len(NAMES))))[:4]
    print("Cells nearest the threshold, W/sd by each tool:")
    for _, k, i in sorted(nearest, key=lambda t: (t[2], t[1])):
        values = f"Vigil {v_score[k, i]:.4f}"
        if e is not None:
            values += f", Evidently {e['score'][k, i]:.4f}"
        if n is not None:
            values += f", NannyML {n['w_normed'][k, i]:.4f}"
        print(f"  c{k} {NAMES[i]}: known {known[k, i]:.3f}; {values}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")

    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        run_vigil(reference_table, current_table, args.chunk_size)
        profiler.disable()
        print("\ncProfile of one in-process Vigil run (the slowest calls by total time, then cumulative):")
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(12)
        stats.sort_stats("cumulative").print_stats(25)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
