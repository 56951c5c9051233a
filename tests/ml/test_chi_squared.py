"""agent/ml/chi_squared.py against scipy.special.chdtrc: the chi-squared p-value without scipy.special."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from agent.ml.chi_squared import chi2_sf

TIGHT = 1e-12  # floating-point noise; abs=1e-300 lets subnormal p-values pass


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 5, 9, 10, 19, 20, 99, 100, 255, 1_000])
def test_chi2_sf_is_chdtrc(dof: int) -> None:
    # From p = 1 down past the smallest double, the mean (dof) and either side of it included.
    xs = np.concatenate([np.geomspace(1e-8, 20_000, 300), [dof - 0.5, dof, dof + 1.0]])
    for x in xs:
        assert chi2_sf(dof, float(x)) == pytest.approx(float(special.chdtrc(dof, float(x))), rel=TIGHT, abs=1e-300)


def test_chi2_sf_with_thousands_of_degrees_of_freedom_is_chdtrc() -> None:
    # e^-y y^a / Γ(a+1) at a, y in the thousands carries |a log y| · 1e-16 of rounding, here and in
    # scipy's igamc alike: the two agree to 1e-11 at p-values as small as 1e-249.
    for x in np.geomspace(100, 20_000, 200):
        assert chi2_sf(4_095, float(x)) == pytest.approx(float(special.chdtrc(4_095, float(x))), rel=1e-11,
                                                         abs=1e-300)


@pytest.mark.parametrize("dof", [1, 2, 3])
@pytest.mark.parametrize("x, expected", [(0.0, 1.0), (5e-324, 1.0), (math.inf, 0.0)])
def test_chi2_sf_at_the_ends(dof: int, x: float, expected: float) -> None:
    assert chi2_sf(dof, x) == expected == special.chdtrc(dof, x)


@pytest.mark.parametrize("x", [math.nan, -1.0])
def test_chi2_sf_outside_its_domain_is_nan(x: float) -> None:
    assert math.isnan(chi2_sf(3, x)) and math.isnan(special.chdtrc(3, x))
