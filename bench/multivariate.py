"""Multivariate drift (`agent.ml.multivariate`): its cost per window, and its agreement with NannyML's
data reconstruction drift on NannyML's own data.

Cost, CPU time (`time.process_time()`, BLAS on `--blas-threads` threads, default 1), median of
`--repeat` rounds, each method against a direct call in the same run:

- mmd: a window of 1,000 rows against a reference sample of 2,000, 384-dimensional embeddings
  (seeded, correlated): the whole `multivariate.test` (projection to 32 dimensions, subsamples,
  kernel, 200 permutations); the direct call is one unbiased MMD² of the full samples in 384
  dimensions, float64, no permutations (`multivariate.mmd2_unbiased`).
- reconstruction: a window of 1,000 rows of 50 numeric features against a fit on 5,000 rows;
  the direct call is scikit-learn's `PCA.transform` + `inverse_transform` of the same standardised
  rows and the norm of the difference.

Agreement (needs NannyML, in .venv-bench): `DataReconstructionDriftCalculator` on NannyML's synthetic
car-loan data (its continuous features: NannyML count-encodes the categorical ones; Vigil takes the
numeric features only), chunks of `--chunk-size` rows, fitted on its reference period and run on the
analysis period; Vigil's `fit` on the same reference and `test` on the same chunks. Printed: the
largest difference in the per-chunk reconstruction error, both thresholds, both verdicts.

False alarms (`--false-alarms`): `--references` references of 3,000 rows of 6 correlated features
(the case a fixed sample gets wrong), 60 no-drift windows of 1,000 rows each: mmd's false alarms
per reference at the defaults, and what the same windows would give with the former rule (p below
alpha and MMD² >= 0.005, no margin).

    .venv-bench/bin/python bench/multivariate.py
    .venv/bin/python bench/multivariate.py --skip-nannyml
    .venv/bin/python bench/multivariate.py --false-alarms --references 30
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# Parsed before numpy is imported: the thread count must be in the environment first.
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--repeat", type=int, default=15, help="rounds per figure (median)")
parser.add_argument("--blas-threads", type=int, default=1, help="BLAS threads (OPENBLAS/OMP/MKL_NUM_THREADS)")
parser.add_argument("--chunk-size", type=int, default=5000, help="rows per chunk in the NannyML comparison")
parser.add_argument("--skip-nannyml", action="store_true")
parser.add_argument("--false-alarms", action="store_true", help="only the no-drift sweep")
parser.add_argument("--references", type=int, default=30, help="references in the no-drift sweep")
args = parser.parse_args()
for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[name] = str(args.blas_threads)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from agent.ml import multivariate as mv  # noqa: E402

TARGET_SECONDS = 0.050


def cpu_median(function, repeat: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return float(np.median(times))


def correlated(rng: np.random.Generator, n: int, mix: np.ndarray, shift: float = 0.0) -> np.ndarray:
    return (rng.normal(size=(n, mix.shape[0])) + shift) @ mix


def bench_mmd() -> None:
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(384, 384)) / np.sqrt(384)
    reference = mv.fit(correlated(rng, 5000, mix), (mv.MMD,), sample=2000)
    window = correlated(rng, 1000, mix)
    seeds = iter(range(10 ** 6))
    ours = cpu_median(lambda: mv.test(reference, mv.MMD, window, seed=next(seeds)), args.repeat)
    full_reference = correlated(rng, 2000, mix)
    direct = cpu_median(lambda: mv.mmd2_unbiased(window, full_reference, 20.0), args.repeat)
    settings = mv.Settings()
    print(f"mmd: window 1000 x 384 against a reference sample of 2000 (test on {settings.window_sample} + "
          f"{settings.reference_sample} rows, {mv.DEFAULT_MMD_DIMS} dims, {settings.permutations} permutations)")
    print(f"  multivariate.test        {ours * 1e3:7.1f} ms CPU (target {TARGET_SECONDS * 1e3:.0f} ms: "
          f"{ours / TARGET_SECONDS:.2f} x the target)")
    print(f"  direct MMD², 384 dims    {direct * 1e3:7.1f} ms CPU (one statistic, no test): ratio {ours / direct:.2f}")


def bench_reconstruction() -> None:
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(2)
    mix = rng.normal(size=(50, 50)) / np.sqrt(50)
    rows = correlated(rng, 5000, mix)
    reference = mv.fit(rows, (mv.RECONSTRUCTION,))
    window = correlated(rng, 1000, mix)
    ours = cpu_median(lambda: mv.test(reference, mv.RECONSTRUCTION, window), args.repeat)
    pca = PCA(n_components=mv.DEFAULT_VARIANCE).fit(reference.standardize(rows))

    def direct():
        z = reference.standardize(window)
        return np.linalg.norm(z - pca.inverse_transform(pca.transform(z)), axis=1).mean()

    theirs = cpu_median(direct, args.repeat)
    print(f"reconstruction: window 1000 x 50 features ({reference.reconstruction.components.shape[0]} components)")
    print(f"  multivariate.test        {ours * 1e3:7.2f} ms CPU (target {TARGET_SECONDS * 1e3:.0f} ms: "
          f"{ours / TARGET_SECONDS:.3f} x the target)")
    print(f"  scikit-learn PCA         {theirs * 1e3:7.2f} ms CPU: ratio {ours / theirs:.2f}")


def bench_nannyml() -> None:
    try:
        import nannyml as nml
    except ImportError:
        print("NannyML: not installed (run with .venv-bench/bin/python), comparison skipped")
        return
    import logging

    logging.disable(logging.WARNING)
    reference, analysis, _ = nml.load_synthetic_car_loan_dataset()
    columns = [c for c in reference.columns if c in ("car_value", "debt_to_income_ratio", "loan_length",
                                                     "driver_tenure")]
    calculator = nml.DataReconstructionDriftCalculator(column_names=columns, chunk_size=args.chunk_size)
    calculator.fit(reference)
    result = calculator.calculate(analysis).filter(period="analysis").to_df()
    theirs = result[("reconstruction_error", "value")].to_numpy()
    upper = result[("reconstruction_error", "upper_threshold")].to_numpy()
    lower = result[("reconstruction_error", "lower_threshold")].to_numpy()
    their_alerts = result[("reconstruction_error", "alert")].to_numpy()
    fit = mv.fit(reference[columns].to_numpy(dtype=float), (mv.RECONSTRUCTION,), columns=columns)
    data = analysis[columns].to_numpy(dtype=float)
    ours = [mv.test(fit, mv.RECONSTRUCTION, data[i:i + args.chunk_size]) for i in range(0, len(data), args.chunk_size)]
    print(f"NannyML {nml.__version__} DataReconstructionDriftCalculator, car-loan data, features {', '.join(columns)}, "
          f"chunks of {args.chunk_size}:")
    print("  chunk  nannyml_error  vigil_error  nannyml_bounds      vigil_threshold  nannyml_alert  vigil_drifted")
    for i, (t, o) in enumerate(zip(theirs, ours)):
        print(f"  {i:5d}  {t:13.6f}  {o.statistic:11.6f}  [{lower[i]:.4f}, {upper[i]:.4f}]  {o.threshold:15.4f}  "
              f"{bool(their_alerts[i])!s:>13}  {o.drifted!s:>13}")
    difference = max(abs(t - o.statistic) for t, o in zip(theirs, ours))
    agree = sum(bool(a) == o.drifted for a, o in zip(their_alerts, ours))
    print(f"  largest difference in the error: {difference:.2e}; verdicts agree on {agree} of {len(ours)} chunks")


def bench_false_alarms() -> None:
    dims = 6
    cov = np.full((dims, dims), 0.8)
    np.fill_diagonal(cov, 1.0)

    def features(seed: int, n: int) -> np.ndarray:
        return np.random.default_rng(seed).multivariate_normal(np.zeros(dims), cov, size=n) * np.arange(1, dims + 1)

    ours, former = [], []
    for r in range(args.references):
        reference = mv.fit(features(r, 3000), (mv.MMD,), seed=r)
        results = [mv.test(reference, mv.MMD, features(10 ** 6 + 1000 * r + w, 1000), seed=w) for w in range(60)]
        ours.append(sum(x.drifted for x in results))
        former.append(sum(x.p_value < mv.Settings().alpha and x.statistic >= 0.005 for x in results))
    windows = 60 * args.references
    print(f"mmd false alarms, {args.references} references x 60 no-drift windows of 1000 rows (6 features):")
    print(f"  defaults (margin, MMD² floor {mv.Settings().min_mmd2}): {sum(ours)} of {windows}, "
          f"worst reference {max(ours)} of 60")
    print(f"  former rule (floor 0.005, no margin):  {sum(former)} of {windows}, worst reference {max(former)} of 60")


if __name__ == "__main__":
    if args.false_alarms:
        bench_false_alarms()
        sys.exit(0)
    print(f"BLAS threads: {args.blas_threads}; medians of {args.repeat} rounds")
    bench_mmd()
    bench_reconstruction()
    if not args.skip_nannyml:
        bench_nannyml()
