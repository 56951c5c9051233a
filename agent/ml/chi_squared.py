"""The chi-squared distribution's survival function for whole degrees of freedom, as
`scipy.special.chdtrc(dof, x)`, without importing scipy.special (about 26 MiB and 240 modules
resident in a running agent, for this one function and a relative entropy).

With a = dof/2 and y = x/2, chdtrc is the regularised upper incomplete gamma function Q(a, y),
which for whole and half-whole a is a finite sum (Abramowitz and Stegun 6.5.13, 26.4.4):

    dof even:  Q = sum over 0 <= i < a of e^-y y^i / i!
    dof odd:   Q = erfc(sqrt y) + sum over 1 <= i <= a - 1/2 of e^-y y^(i-1/2) / Gamma(i + 1/2)

Every term is positive, so nothing cancels; each is taken in logs (lgamma), the largest factored
out so that a sum below the smallest normal double keeps its digits. tests/ml/test_chi_squared.py
holds it to chdtrc.
"""

from __future__ import annotations

import math

import numpy as np


def chi2_sf(dof: int, x: float) -> float:
    """P(X > x) for X chi-squared with `dof` (>= 1) degrees of freedom."""
    if math.isnan(x) or x < 0:
        return math.nan
    y = x / 2.0
    if y == 0:  # x = 0, or the smallest subnormal halved
        return 1.0
    if math.isinf(x):
        return 0.0
    if dof % 2:
        powers = np.arange(1, dof // 2 + 1) - 0.5
        head = math.erfc(math.sqrt(y))
    else:
        powers = np.arange(dof // 2, dtype=float)
        head = 0.0
    if powers.size == 0:
        return head
    logs = powers * math.log(y) - y - np.array([math.lgamma(p + 1.0) for p in powers.tolist()])
    top = float(logs.max())
    if top < -745.2:  # every term below the smallest subnormal double
        return head
    return head + math.exp(top) * float(np.sum(np.exp(logs - top)))
