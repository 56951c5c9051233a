"""The distributions behind the KS p-values, computed as scipy computes them, without scipy.stats.

`stats.ks` promises `scipy.stats.ks_2samp`'s p-value: `kstwo.sf(d, n)` (the two-sided one-sample
Kolmogorov distribution at the effective sample size) past the exact limit, and the exact two-sample
distribution below it. Asking scipy.stats for them costs more in its distribution machinery than
the arithmetic, and importing scipy.stats (or scipy.special) holds a large share of a long-running
agent's memory. So each branch scipy takes is taken here too, in the same order with the same
arithmetic, and scipy.special's Smirnov distribution as one sum: tests/ml/test_kolmogorov.py holds
every branch to scipy within 1e-12. The exact distribution of unequal sample sizes is scipy's compiled recursion,
loaded without importing scipy.stats (`stats._outer_prob_inside`).

- `kolmogorov_sf(x, n)`: `scipy.stats.kstwo.sf(x, n)`, scipy's `_kolmogn(n, x, cdf=False)`;
- `durbin_cdf(n, d)`, `pomeranz_cdf(n, d)`: P(D_n <= d) for small n, where kstwo.sf takes them;
- `smirnov_sf(n, x)`: `scipy.special.smirnov(n, x)` as one vectorised sum (scipy's is a loop in
  double-double arithmetic);
- `equal_sizes_sf(n, h)`: P(D_{n,n} >= h/n), ks_2samp's exact p-value when both samples have n values.
"""

from __future__ import annotations

import functools
import math

import numpy as np

# scipy.special is imported only for a sample of over a million values (`smirnov_sf`), where scipy's
# smirnov approximates.

_SQRT2PI = math.sqrt(2 * math.pi)
_SQRT3 = math.sqrt(3)
_PI_SQUARED, _PI_FOUR, _PI_SIX = math.pi ** 2, math.pi ** 4, math.pi ** 6
_MIN_LOG = -708
# The Durbin matrix is rescaled by 2^±128 (in long double, as scipy does) to keep it in range.
_E128 = 128
_EP128 = np.ldexp(np.longdouble(1), _E128)
_EM128 = np.ldexp(np.longdouble(1), -_E128)


def _clip(p: float) -> float:
    return min(max(float(p), 0.0), 1.0)


def kolmogorov_sf(x: float, n: int) -> float:
    """`scipy.stats.kstwo.sf(x, n)`: P(D_n > x) for the two-sided one-sample KS statistic D_n."""
    if x >= 1.0:
        return 0.0
    if x <= 0.0:
        return 1.0
    t = n * x
    if t <= 1.0:  # Ruben–Gambino: 1/2n <= x <= 1/n
        if t <= 0.5:
            return 1.0
        if n <= 140:
            cdf = np.prod(np.arange(1, n + 1) * (1.0 / n) * (2 * t - 1))
        else:
            cdf = np.exp(_log_nfactorial_div_n_pow_n(n) + n * np.log(2 * t - 1))
        return _clip(1.0 - cdf)
    if t >= n - 1:  # Ruben–Gambino
        return _clip(2 * (1.0 - x) ** n)
    if x >= 0.5:
        return _clip(2 * smirnov_sf(n, x))
    nxsquared = t * x
    if n <= 140:
        if nxsquared <= 0.754693:
            return _clip(1.0 - durbin_cdf(n, x))
        if nxsquared <= 4:
            return _clip(1.0 - _clip(pomeranz_cdf(n, x)))
        return _clip(2 * smirnov_sf(n, x))
    if nxsquared >= 370.0:
        return 0.0
    if nxsquared >= 2.2:
        return _clip(2 * smirnov_sf(n, x))
    if n <= 100_000 and n * x ** 1.5 <= 1.4:
        return _clip(1.0 - durbin_cdf(n, x))
    return _clip(1.0 - pelz_good_cdf(n, x))


def _special():
    import scipy.special

    return scipy.special


# n! / n^n in logs, by Stirling's series with n log n taken out first (scipy's coefficients).
_STIRLING_COEFFS = [-2.955065359477124183e-2, 6.4102564102564102564e-3, -1.9175269175269175269e-3,
                    8.4175084175084175084e-4, -5.952380952380952381e-4, 7.9365079365079365079e-4,
                    -2.7777777777777777778e-3, 8.3333333333333333333e-2]


def _log_nfactorial_div_n_pow_n(n: int) -> float:
    rn = 1.0 / n
    return np.log(n) / 2 - n + np.log(2 * np.pi) / 2 + rn * np.polyval(_STIRLING_COEFFS, rn / n)


def durbin_cdf(n: int, d: float) -> float:
    """P(D_n <= d) by Durbin's matrix (Marsaglia, Tsang and Wang's form): with d = (k - h)/n, the
    k-th diagonal entry of (n!/n^n)·H^n for a (2k-1)-square H. Small n·d only (scipy's `_kolmogn_DMTW`)."""
    nd = n * d
    k = math.ceil(nd)
    h = k - nd
    m = 2 * k - 1
    # H: ones-over-factorials below the diagonal band; first column and last row from h.
    intm = np.arange(1, m + 1)
    v = 1.0 - h ** intm
    w = np.empty(m)
    fac = 1.0
    for j in intm:
        w[j - 1] = fac
        fac /= j
        v[j - 1] *= fac
    tt = max(2 * h - 1.0, 0) ** m - 2 * h ** m
    v[-1] = (1.0 + tt) * fac
    H = np.zeros([m, m])
    for i in range(1, m):
        H[i - 1:, i] = w[:m - i + 1]
    H[:, 0] = v
    H[-1, :] = np.flip(v, axis=0)
    # H^n by squaring, rescaled whenever the entry that matters grows past 2^128.
    power = np.eye(m)
    nn, expnt, h_expnt = n, 0, 0
    while nn > 0:
        if nn % 2:
            power = np.matmul(power, H)
            expnt += h_expnt
        H = np.matmul(H, H)
        h_expnt *= 2
        if np.abs(H[k - 1, k - 1]) > _EP128:
            H /= _EP128
            h_expnt += _E128
        nn //= 2
    p = power[k - 1, k - 1]
    for i in range(1, n + 1):  # times n!/n^n, one factor at a time, kept above 2^-128
        p = i * p / n
        if np.abs(p) < _EM128:
            p *= _EP128
            expnt -= _E128
    if expnt != 0:
        p = np.ldexp(p, expnt)
    return float(p)


def pelz_good_cdf(n: int, x: float) -> float:
    """P(D_n <= x) by Pelz and Good's expansion, K0(z) + K1(z)/√n + K2(z)/n + K3(z)/n^1.5 at z = x√n,
    each K written through theta functions (scipy's `_kolmogn_PelzGood`, for n > 140)."""
    z = math.sqrt(n) * x
    zsquared, zthree, zfour, zsix = z ** 2, z ** 3, z ** 4, z ** 6
    qlog = -_PI_SQUARED / 8 / zsquared
    if qlog < _MIN_LOG:
        return 0.0
    q = math.exp(qlog)
    k1a, k1b = -zsquared, _PI_SQUARED / 4
    k2a = 6 * zsix + 2 * zfour
    k2b = (2 * zfour - 5 * zsquared) * _PI_SQUARED / 4
    k2c = _PI_FOUR * (1 - 2 * zsquared) / 16
    k3d = _PI_SIX * (5 - 30 * zsquared) / 64
    k3c = _PI_FOUR * (-60 * zsquared + 212 * zfour) / 16
    k3b = _PI_SQUARED * (135 * zfour - 96 * zsix) / 4
    k3a = -30 * zsix - 90 * z ** 8
    # Sums of c_k q^(k²) over odd k, by Horner's scheme in q^8k.
    k0 = k1 = k2 = k3 = 0.0
    maxk = math.ceil(16 * z / math.pi)
    for k in range(maxk, 0, -1):
        m = 2 * k - 1
        msquared, mfour, msix = m ** 2, m ** 4, m ** 6
        qpower = q ** (8 * k)
        k0 = k0 * qpower + 1.0
        k1 = k1 * qpower + (k1a + k1b * msquared)
        k2 = k2 * qpower + (k2a + k2b * msquared + k2c * mfour)
        k3 = k3 * qpower + (k3a + k3b * msquared + k3c * mfour + k3d * msix)
    k0 = k0 * q * _SQRT2PI / z
    k1 = k1 * q * _SQRT2PI / (6 * zfour)
    k2 = k2 * q * _SQRT2PI / (72 * z ** 7)
    k3 = k3 * q * _SQRT2PI / (6480 * z ** 10)
    # The terms over every k of K2 and K3.
    q = math.exp(-_PI_SQUARED / 2 / zsquared)
    ks = np.arange(maxk, 0, -1)
    ksquared = ks ** 2
    kspi = np.pi * ks
    sqrt3z = _SQRT3 * z
    qpowers = q ** ksquared
    k2 += float(np.sum(ksquared * qpowers)) * (_PI_SQUARED * _SQRT2PI / (-36 * zthree))
    k3 += float(np.sum((sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qpowers)) * (
        _PI_SQUARED * _SQRT2PI / (216 * zsix))
    root = math.sqrt(n)
    return k0 + k1 / root + k2 / n + k3 / (n * root)


# --- Pomeranz's recursion --------------------------------------------------------------------------
# scipy's `kstwo.sf(x, n)` for n <= 140 and 0.754693 < n·x² <= 4: a window of about a hundred values
# that closed on `max_age`, against a reservoir of many thousands.

def pomeranz_cdf(n: int, d: float) -> float:
    """P(D_n <= d) by Pomeranz's recursion (scipy's `_kolmogn_Pomeranz`): 2n+1 rows, each the one
    before convolved with one of three Poisson-like weight vectors. Only a band of a row can be
    non-zero (`_pomeranz_band`); a row is rescaled by 2^128 before it underflows."""
    t = n * d
    ll = int(np.floor(t))
    f = t - ll
    g = min(f, 1.0 - f)
    ceilf, roundf = (1 if f > 0 else 0), (1 if f > 0.5 else 0)
    powers = 2 * (ll + 1)
    g_powers, two_g_powers, rest_powers = (_powers_over_factorials(c, powers)
                                           for c in (g / n, 2 * g / n, (1 - 2 * g) / n))
    row, previous = np.zeros(powers), np.zeros(powers)
    row[0] = 1.0
    row_start = previous_start = 0  # the entry each row's first element stands for
    expnt = 0
    j1, j2 = _pomeranz_band(0, n, ll, ceilf, roundf)
    for i in range(1, 2 * n + 2):
        k1 = j1
        previous, row = row, previous
        previous_start, row_start = row_start, previous_start
        row.fill(0.0)
        j1, j2 = _pomeranz_band(i, n, ll, ceilf, roundf)
        weights = g_powers if i in (1, 2 * n + 1) else (two_g_powers if i % 2 else rest_powers)
        width = j2 - k1 + 1
        if width > 0:
            conv = np.convolve(previous[k1 - previous_start:k1 - previous_start + width], weights[:width])
            row[:j2 - j1 + 1] = conv[j1 - k1:j2 - k1 + 1]
            if 0 < np.max(row) < _EM128:
                row *= _EP128
                expnt -= _E128
            row_start = previous_start + j1 - k1
    p = row[n - row_start]
    for m in range(1, n + 1):  # times n!, kept below 2^128
        if np.abs(p) > _EP128:
            p *= _EM128
            expnt += _E128
        p *= m
    if expnt != 0:
        p = np.ldexp(p, expnt)
    return float(p)


def _powers_over_factorials(c: float, count: int) -> np.ndarray:
    """c^m / m! for m < count, each from the one before (as scipy computes them)."""
    out = np.empty(count)
    out[0] = 1.0
    for m in range(1, count):
        out[m] = out[m - 1] * c / m
    return out


def _pomeranz_band(i: int, n: int, ll: int, ceilf: int, roundf: int) -> tuple[int, int]:
    """The first and last entries of row i of Pomeranz's recursion that can be non-zero."""
    if i == 0:
        j1, j2 = -ll - ceilf - 1, ll + ceilf - 1
    else:
        half, odd_row_number = divmod(i + 1, 2)
        if odd_row_number == 0:  # i odd
            if half == n + 1:
                j1, j2 = n - ll - ceilf - 1, n + ll + ceilf - 1
            else:
                j1, j2 = half - 1 - ll - roundf - 1, half + ll - 1 + ceilf - 1
        else:
            j1, j2 = half - 1 - ll - 1, half + ll + roundf - 1
    return max(j1 + 2, 0), min(j2, n)


# --- the Smirnov sum ---------------------------------------------------------------------------
# scipy's `kstwo.sf(x, n)` is 2·`scipy.special.smirnov(n, x)` for x >= 0.5, for n <= 140 and
# n·x² > 4, and for n > 140 and 2.2 <= n·x² < 370 (a drifted column of a large window): an exact
# sum of about n terms in double-double arithmetic, a loop per call. The same sum is taken here in
# one vectorised pass, in a form that keeps each term's relative error near 1e-13.

_SMIRNOV_MAX_N = 1_000_000  # beyond it scipy's smirnov approximates, and so is asked itself


def smirnov_sf(n: int, x: float) -> float:
    """`scipy.special.smirnov(n, x)`, P(D+_n >= x), for 0 < x < 1 and 1/n < x, by Birnbaum–Tingey:

        x · sum over 0 <= j < n(1-x) of C(n, j) (1 - x - j/n)^(n-j) (x + j/n)^(j-1)

    Each term is taken in logs with C(n, j) written through Stirling's formula, so the large
    logarithms cancel in closed form rather than in floating point:

        log term_j = (n-j) log1p(-nx/(n-j)) + j log1p(nx/j) - log(x + j/n)
                     + ½ log(n / (2π j (n-j))) + δ(n) - δ(j) - δ(n-j),

    δ(k) = log k! - (k log k - k + ½ log 2πk), Stirling's remainder.
    """
    if n > _SMIRNOV_MAX_N:
        return float(_special().smirnov(n, x))
    nx = n * x
    j = np.arange(1.0, n - math.floor(nx))
    if j.size == 0:  # x >= 1 - 1/n: the j = 0 term alone
        return (1.0 - x) ** n
    k = n - j
    logs = (k * np.log1p(-nx / k) + j * np.log1p(nx / j) - np.log(x + j / n)
            + 0.5 * np.log(n / (2 * math.pi * j * k)) + _stirling_remainder(np.array([float(n)]))[0]
            - _stirling_remainder(j) - _stirling_remainder(k))
    top = float(logs.max())  # scaled, so a sum below the smallest normal double keeps its digits
    total = math.exp(top + math.log(x * float(np.sum(np.exp(logs - top)))))
    return (1.0 - x) ** n + total  # j = 0 adds x · (1-x)^n / x


_STIRLING_SERIES_FROM = 30
_STIRLING_SMALL = np.array([0.0] + [math.lgamma(k + 1) - (k * math.log(k) - k + 0.5 * math.log(2 * math.pi * k))
                                    for k in range(1, _STIRLING_SERIES_FROM)])


def _stirling_remainder(k: np.ndarray) -> np.ndarray:
    """δ(k) = log k! - (k log k - k + ½ log 2πk) for whole k >= 1: the asymptotic series from 30
    (its next term is below 1e-16 there), log-gamma below."""
    r = 1.0 / np.maximum(k, _STIRLING_SERIES_FROM)
    r2 = r * r
    out = r * (1 / 12 - r2 * (1 / 360 - r2 * (1 / 1260 - r2 / 1680)))
    small = k < _STIRLING_SERIES_FROM
    if small.any():
        out[small] = _STIRLING_SMALL[k[small].astype(np.intp)]
    return out


# --- the exact two-sample distribution, equal sizes ----------------------------------------------
# A loop of about n steps in Python, on arguments that recur: every full window of a column with no
# values missing has the same n, and h (its KS statistic times n) takes a few dozen values.

@functools.lru_cache(maxsize=4096)
def equal_sizes_sf(n: int, h: int) -> float:
    """P(D_{n,n} >= h/n) for two samples of n values each, 1 <= h <= n (scipy's
    `_compute_prob_outside_square`): 2·(A0 − A0·A1 + A0·A1·A2 − …), each A_k a ratio of binomials
    taken as h factors, summed from the innermost term out so nothing cancels."""
    total = 0.0
    k = n // h
    while k >= 0:
        term = 1.0
        for j in range(h):
            term = (n - k * h - j) * term / (n + k * h + j + 1)
        total = term * (1.0 - total)
        k -= 1
    return 2 * total
