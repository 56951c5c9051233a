"""Drift of a window's features taken together: `mmd` and `reconstruction`.

Both read rows as vectors: a model's numeric features side by side, or one embedding column.
`fit` learns from the reference what the methods need (the profile keeps it as
`vigil.v1.MultivariateProfile`); `test` compares a window with it. Each dimension is standardised
by the reference's mean and standard deviation; a missing value becomes the reference mean, as
NannyML imputes.

- `mmd`: the unbiased squared maximum mean discrepancy with a Gaussian kernel whose bandwidth is
  the median pairwise distance of the reference sample (fixed at fit). Inputs wider than
  `DEFAULT_MMD_DIMS` are first projected on the reference's leading principal components. The
  p-value comes from a permutation test of the pooled window and reference subsamples: valid at
  any window size without asymptotics; the subsamples bound its cost per window.
- `reconstruction`: NannyML's data reconstruction drift: PCA on the standardised reference
  keeping 65 % of the variance, the mean per-row Euclidean reconstruction error of a window,
  against the reference rows' mean error plus or minus z standard errors of a window's mean
  (the reference rows' errors measured out of fold: in-sample they are too low).

A window drifts when its p-value is below `alpha` and its effect size passes a floor (MMD² for
`mmd`, the relative change of the error for `reconstruction`), as the univariate decision. For
`mmd` both are taken beyond the sample's `margin`: every window meets the same stored sample, and
a sample that chance put far from its population would otherwise make its windows drift more
often than `alpha` says (the permutation test is exact over samples, not given one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from agent.ml.columns import RawColumn, equals_any

MMD = "mmd"
RECONSTRUCTION = "reconstruction"
METHODS = (MMD, RECONSTRUCTION)

DEFAULT_SAMPLE = 2_000  # reference rows kept for mmd
DEFAULT_MMD_DIMS = 32  # wider inputs are projected to this many principal components for mmd
DEFAULT_VARIANCE = 0.65  # variance the reconstruction's components keep (NannyML's n_components)
MAX_FIT_ROWS = 100_000  # reference rows the standardisation and PCA are fitted on
RECONSTRUCTION_FOLDS = 5  # the reference's own errors are measured out of fold
MARGIN_SPLITS = 200  # random splits of mmd's sample in halves, to measure its margin


@dataclass(frozen=True)
class Settings:
    """How a window is tested; the defaults keep false alarms under 1 % of no-drift windows."""
    # One test per window (not a family of columns): alpha bounds the share of no-drift windows
    # called drifted, at half the 1 % target so that chance runs stay under it.
    alpha: float = 0.005
    # Effect-size floors: a significant change smaller than these is not called drift. MMD² 0.01:
    # no-drift windows of 1,000 rows reached 0.0098 (30 references x 60 windows of 6 correlated
    # features); a shift of embeddings by 0.2 of their spread scores 0.014.
    min_mmd2: float = 0.01
    min_error_change: float = 0.02  # relative change of the mean reconstruction error, up or down
    permutations: int = 200
    window_sample: int = 500  # window rows the permutation test uses at most
    reference_sample: int = 1_000  # reference-sample rows it uses at most
    min_rows: int = 30  # fewer usable rows: not tested


@dataclass
class MmdReference:
    projection: np.ndarray  # (k, dims) rows of the projection, or (0, dims): none
    sample: np.ndarray  # (rows, k or dims): reference rows, standardised and projected
    bandwidth: float  # the Gaussian kernel's sigma: exp(-|x - y|^2 / (2 sigma^2))
    # The MMD² by which chance alone can put this sample away from its population (at most, as
    # far as `split_margin` sees): a window must be farther than this from it to drift.
    margin: float = 0.0


@dataclass
class ReconstructionReference:
    components: np.ndarray  # (k, dims), orthonormal rows
    error_mean: float  # per-row reconstruction error of the reference rows: mean and std (ddof 1)
    error_std: float
    rows: int


@dataclass
class MultivariateReference:
    """What a reference says about its rows taken together: the numeric `columns` jointly, or
    the `embedding` column."""
    columns: list[str]
    embedding: str
    mean: np.ndarray
    scale: np.ndarray
    mmd: MmdReference | None = None
    reconstruction: ReconstructionReference | None = None

    @property
    def dims(self) -> int:
        return int(self.mean.size)

    @property
    def input_name(self) -> str:
        return f"embedding {self.embedding!r}" if self.embedding else f"features {', '.join(self.columns)}"

    def standardize(self, rows: np.ndarray) -> np.ndarray:
        """Rows standardised, a missing value at the reference mean (0)."""
        z = (rows - self.mean) / self.scale
        return np.where(np.isnan(z), 0.0, z)


@dataclass
class Result:
    method: str
    statistic: float = math.nan
    threshold: float = math.nan  # the bound the statistic was held to (reconstruction: on its side of the mean)
    p_value: float = math.nan
    drifted: bool = False
    rows: int = 0  # window rows tested
    tested: bool = False


def fit(rows: np.ndarray, methods: tuple[str, ...] = METHODS, *, columns: list[str] = (), embedding: str = "",
        sample: int = DEFAULT_SAMPLE, mmd_dims: int = DEFAULT_MMD_DIMS, variance: float = DEFAULT_VARIANCE,
        seed: int = 0) -> MultivariateReference:
    """The reference of `methods` from reference `rows` (n × dims, NaN where missing)."""
    rows = np.asarray(rows, dtype=float)
    if rows.ndim != 2 or rows.shape[0] < 2 or rows.shape[1] < 1:
        raise ValueError(f"multivariate reference needs at least 2 rows of at least 1 value, got shape {rows.shape}")
    # One generator per use: a method's fit is the same whichever others are fitted with it.
    fit_rows, mmd_rows, folds = (np.random.default_rng([seed, use]) for use in range(3))
    if rows.shape[0] > MAX_FIT_ROWS:
        rows = rows[fit_rows.choice(rows.shape[0], MAX_FIT_ROWS, replace=False)]
    # As NannyML: mean imputation, then StandardScaler (population std; a constant dimension scaled by 1).
    mean = np.nanmean(rows, axis=0)
    mean = np.where(np.isnan(mean), 0.0, mean)
    imputed = np.where(np.isnan(rows), mean, rows)
    scale = imputed.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    reference = MultivariateReference(list(columns), embedding, mean, scale)
    z = reference.standardize(rows)
    if MMD in methods:
        reference.mmd = fit_mmd(z, sample, mmd_dims, mmd_rows)
    if RECONSTRUCTION in methods:
        axes, explained = principal_axes(z)
        components = axes[:components_for(explained, variance)]
        errors = held_out_errors(z, components.shape[0], folds)
        reference.reconstruction = ReconstructionReference(components, float(errors.mean()),
                                                           float(errors.std(ddof=1)), int(z.shape[0]))
    return reference


def fit_mmd(z: np.ndarray, sample: int, dims: int, rng: np.random.Generator) -> MmdReference:
    """The sample mmd compares windows with, and how far chance alone puts it from its population.

    Every window is tested against this one sample: a sample that happens to lie far from the
    population makes every window look distant (a permutation test is exact over samples, not
    given one; one reference gave 4 % false alarms). The halves of random splits of the sample lie
    4 times as far apart (in MMD²) as the whole sample from the population: a quarter of their
    largest MMD² is the `margin` the test deducts."""
    axes = principal_axes(z)[0] if z.shape[1] > dims else None
    projection = axes[:dims] if axes is not None else np.empty((0, z.shape[1]))
    kept = z if z.shape[0] <= sample else z[rng.choice(z.shape[0], sample, replace=False)]
    kept = project(kept, projection)
    bandwidth = median_distance(kept)
    return MmdReference(projection, kept, bandwidth, margin=split_margin(kept, bandwidth, rng))


def split_margin(sample: np.ndarray, bandwidth: float, rng: np.random.Generator, splits: int = MARGIN_SPLITS) -> float:
    """A quarter of the largest unbiased MMD² between the halves of `splits` random splits of `sample`."""
    n = sample.shape[0]
    half = n // 2
    if half < 2:
        return 0.0
    kernel = gaussian_kernel(sample.astype(np.float32), sample.astype(np.float32), bandwidth)
    first = np.zeros((splits, n), dtype=np.float32)
    draws = np.argpartition(rng.random((splits, n)), half - 1, axis=1)[:, :half]
    np.put_along_axis(first, draws, 1.0, axis=1)
    return max(float(_mmd2_of_splits(kernel, first.T, half, n - half).max()) / 4.0, 0.0)


def held_out_errors(z: np.ndarray, k: int, rng: np.random.Generator, folds: int = RECONSTRUCTION_FOLDS) -> np.ndarray:
    """Each reference row's reconstruction error by `k` components fitted without it (`folds`-fold).

    In-sample errors are lower than a new window's (the components fit their own rows' noise),
    by more the more dimensions per row: a threshold from them raises false alarms."""
    if z.shape[0] < 10 * folds:
        return reconstruction_errors(z, principal_axes(z)[0][:k])
    fold = rng.permutation(z.shape[0]) % folds
    errors = np.empty(z.shape[0])
    for i in range(folds):
        held = fold == i
        errors[held] = reconstruction_errors(z[held], principal_axes(z[~held])[0][:k])
    return errors


def principal_axes(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The principal axes of centred `z` (rows, by decreasing variance) and their explained variance."""
    centred = z - z.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    return axes, singular ** 2 / max(z.shape[0] - 1, 1)


def components_for(explained: np.ndarray, variance: float) -> int:
    """How many components keep `variance` of the total, as scikit-learn's PCA(n_components=variance)."""
    total = explained.sum()
    if total <= 0:
        return 1
    ratios = np.cumsum(explained / total)
    return int(min(np.searchsorted(ratios, variance, side="right") + 1, explained.size))


def project(z: np.ndarray, projection: np.ndarray) -> np.ndarray:
    return z @ projection.T if projection.shape[0] else z


def reconstruction_errors(z: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Each row's Euclidean distance to its reconstruction from `components`."""
    return np.linalg.norm(z - (z @ components.T) @ components, axis=1)


def median_distance(sample: np.ndarray) -> float:
    """The median Euclidean distance between distinct rows (the bandwidth's median heuristic)."""
    d2 = squared_distances(sample, sample)
    upper = d2[np.triu_indices(sample.shape[0], k=1)]
    median = math.sqrt(float(np.median(upper))) if upper.size else 0.0
    return median if median > 0 else 1.0


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = a @ b.T
    d2 *= d2.dtype.type(-2.0)
    d2 += (a * a).sum(axis=1)[:, None]
    d2 += (b * b).sum(axis=1)[None, :]
    return np.maximum(d2, 0.0, out=d2)


def feature_rows(columns: list[RawColumn], sentinels: tuple[float | str, ...] | list = ()) -> np.ndarray:
    """Numeric columns side by side (rows × columns), NaN where a value is missing, not finite, a
    string or a numeric sentinel."""
    numeric = [s for s in sentinels if isinstance(s, (int, float)) and not isinstance(s, bool)]
    out = np.empty((len(columns[0]) if columns else 0, len(columns)))
    for i, column in enumerate(columns):
        values = np.where(np.isfinite(column.numbers), column.numbers, np.nan)
        if numeric:
            values[equals_any(values, numeric)] = np.nan
        out[:, i] = values
    return out


# --- testing a window ----------------------------------------------------------------

def test(reference: MultivariateReference, method: str, rows: np.ndarray, settings: Settings = Settings(),
         seed: int = 0) -> Result:
    """`method` on a window's `rows` (n × dims, NaN where missing) against `reference`.

    Rows with every value missing are left out; fewer than `settings.min_rows`: not tested."""
    rows = np.asarray(rows, dtype=float)
    if rows.ndim != 2 or rows.shape[1] != reference.dims:
        raise ValueError(f"{reference.input_name}: the window has {rows.shape[-1]} dimensions, "
                         f"the reference {reference.dims}")
    rows = rows[~np.isnan(rows).all(axis=1)]
    result = Result(method, rows=int(rows.shape[0]))
    if rows.shape[0] < settings.min_rows:
        return result
    z = reference.standardize(rows)
    if method == MMD:
        if reference.mmd is None:
            raise ValueError(f"{reference.input_name}: the reference has no mmd fit")
        return _test_mmd(reference.mmd, z, settings, np.random.default_rng(seed), result)
    if method == RECONSTRUCTION:
        if reference.reconstruction is None:
            raise ValueError(f"{reference.input_name}: the reference has no reconstruction fit")
        return _test_reconstruction(reference.reconstruction, z, settings, result)
    raise ValueError(f"unknown multivariate method {method!r} (known: {', '.join(METHODS)})")


def _test_reconstruction(ref: ReconstructionReference, z: np.ndarray, settings: Settings, result: Result) -> Result:
    errors = reconstruction_errors(z, ref.components)
    result.statistic = float(errors.mean())
    # The standard error of the window mean less the reference mean, from the reference rows' spread
    # (NannyML's sampling error, plus the reference mean's own).
    standard_error = ref.error_std * math.sqrt(1.0 / errors.size + 1.0 / max(ref.rows, 1))
    # Two-sided, as NannyML's bounds: a lower error is a change of the joint structure too.
    margin = max(NormalDist().inv_cdf(1.0 - settings.alpha / 2) * standard_error,
                 ref.error_mean * settings.min_error_change)
    above = result.statistic >= ref.error_mean
    result.threshold = ref.error_mean + margin if above else max(ref.error_mean - margin, 0.0)
    if standard_error > 0:
        result.p_value = 2.0 * (1.0 - NormalDist().cdf(abs(result.statistic - ref.error_mean) / standard_error))
    else:
        result.p_value = 1.0 if result.statistic == ref.error_mean else 0.0
    result.drifted = bool(result.statistic > result.threshold if above else result.statistic < result.threshold)
    result.tested = True
    return result


def _test_mmd(ref: MmdReference, z: np.ndarray, settings: Settings, rng: np.random.Generator,
              result: Result) -> Result:
    window = project(z, ref.projection)
    if window.shape[0] > settings.window_sample:
        window = window[rng.choice(window.shape[0], settings.window_sample, replace=False)]
    sample = ref.sample
    if sample.shape[0] > settings.reference_sample:
        sample = sample[rng.choice(sample.shape[0], settings.reference_sample, replace=False)]
    m, n = window.shape[0], sample.shape[0]
    pooled = np.concatenate([window, sample]).astype(np.float32)
    kernel = gaussian_kernel(pooled, pooled, ref.bandwidth)
    # Column 0: the observed split (the window first); the others: random splits of the pool.
    first = np.zeros((settings.permutations + 1, m + n), dtype=np.float32)
    first[0, :m] = 1.0
    draws = np.argpartition(rng.random((settings.permutations, m + n)), m - 1, axis=1)[:, :m]
    np.put_along_axis(first[1:], draws, 1.0, axis=1)
    first = first.T
    statistics = _mmd2_of_splits(kernel, first, m, n)
    observed, permuted = float(statistics[0]), statistics[1:]
    # What the window adds beyond the distance chance can put the sample from its population is
    # tested and held to the effect floor.
    excess = observed - ref.margin
    result.statistic = observed
    result.p_value = (1.0 + float(np.count_nonzero(permuted >= excess))) / (1.0 + permuted.size)
    result.threshold = max(critical_value(permuted, settings.alpha), settings.min_mmd2) + ref.margin
    result.drifted = bool(result.p_value < settings.alpha and excess >= settings.min_mmd2)
    result.tested = True
    return result


def gaussian_kernel(a: np.ndarray, b: np.ndarray, bandwidth: float) -> np.ndarray:
    d2 = squared_distances(a, b)
    d2 *= d2.dtype.type(-1.0 / (2.0 * bandwidth * bandwidth))
    return np.exp(d2, out=d2)


def _mmd2_of_splits(kernel: np.ndarray, first: np.ndarray, m: int, n: int) -> np.ndarray:
    """The unbiased MMD² of each split of the pool (a column of `first`: 1 for the m rows of one
    side), from one product with the kernel matrix (whose diagonal is 1)."""
    kx = kernel @ first  # (pool, splits)
    xx = np.einsum("ij,ij->j", first, kx, dtype=np.float64)  # sum over x, x' of k
    row_sums = kernel.sum(axis=1, dtype=np.float64)
    total = float(row_sums.sum())
    xy = first.T.astype(np.float64) @ row_sums - xx  # sum over x, y of k
    yy = total - 2.0 * xy - xx
    return (xx - m) / (m * (m - 1)) + (yy - n) / (n * (n - 1)) - 2.0 * xy / (m * n)


def critical_value(permuted: np.ndarray, alpha: float) -> float:
    """The statistic's value above which the permutation p-value is below `alpha` (inf: never)."""
    # p = (1 + count(permuted >= t)) / (1 + P) < alpha  <=>  count <= allowed.
    allowed = math.ceil(alpha * (1 + permuted.size) - 1) - 1
    if allowed < 0:
        return math.inf
    ranked = np.sort(permuted)[::-1]
    return float(ranked[min(allowed, ranked.size - 1)])


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """The unbiased MMD² of two samples (the statistic of `test`, without subsampling)."""
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = (gaussian_kernel(a, b, bandwidth) for a, b in ((x, x), (y, y), (x, y)))
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


__all__ = ["METHODS", "MMD", "RECONSTRUCTION", "MultivariateReference", "Result", "Settings", "feature_rows", "fit",
           "test"]
