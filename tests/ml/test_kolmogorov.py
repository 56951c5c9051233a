"""agent/ml/kolmogorov.py against scipy, branch by branch: the KS p-values without scipy.stats."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import special, stats as scipy_stats
from scipy.stats._stats_py import _compute_prob_outside_square

from agent.ml import kolmogorov

TIGHT = 1e-12  # floating-point noise; abs=1e-300 lets subnormal p-values (from 1e-308 down) pass


@pytest.mark.parametrize("n", [141, 500, 3_333, 5_000, 9_901, 60_000])
def test_smirnov_sum_matches_scipy_special_smirnov(n: int) -> None:
    # Where kstwo.sf uses it: 2.2 <= n·x² < 370, x < 0.5; p-values from about 0.02 down to 1e-160.
    for x in np.linspace(math.sqrt(2.2 / n), min(math.sqrt(370 / n), 0.4999), 40):
        assert kolmogorov.smirnov_sf(n, float(x)) == pytest.approx(special.smirnov(n, float(x)), rel=TIGHT)


@pytest.mark.parametrize("n", [1, 20, 140, 141, 999, 5_000, 2_000_000])
def test_kolmogorov_sf_is_kstwo_sf_on_every_branch(n: int) -> None:
    # 0, 1/(2n), 1/n (Ruben-Gambino), small n·x² (Durbin matrix, Pelz-Good), 2.2 and 370 (Smirnov, 0),
    # 0.5 and above, 1 - 1/n, 1.
    xs = [0.0, 0.4 / n, 0.5 / n, 0.75 / n, 1 / n, 0.001, 0.003, 0.01, 0.02, math.sqrt(2.2 / n),
          math.sqrt(2.2 / n) * 0.999, math.sqrt(100 / n), math.sqrt(370 / n), math.sqrt(370 / n) * 0.999, 0.3, 0.5,
          0.7, 1 - 1 / n, 1.0]
    for x in xs:
        expected = float(scipy_stats.kstwo.sf(x, n))
        assert kolmogorov.kolmogorov_sf(x, n) == pytest.approx(expected, rel=TIGHT, abs=1e-300), x


@pytest.mark.parametrize("n", [2, 60, 140, 141, 512, 850, 5_000, 30_000])
def test_kolmogorov_sf_is_kstwo_sf_across_the_range(n: int) -> None:
    # A dense sweep: every boundary between branches is crossed somewhere in it.
    for x in np.geomspace(0.3 / n, 0.999, 150):
        expected = float(scipy_stats.kstwo.sf(float(x), n))
        assert kolmogorov.kolmogorov_sf(float(x), n) == pytest.approx(expected, rel=TIGHT, abs=1e-300), x


@pytest.mark.parametrize("n", [141, 512, 1_000, 5_000, 100_000, 100_001])
def test_the_durbin_and_pelz_good_branches_meet_where_scipy_switches(n: int) -> None:
    # scipy takes Durbin's matrix up to n·x^1.5 = 1.4 (n <= 100,000), Pelz-Good past it.
    edge = (1.4 / n) ** (2 / 3)
    for x in (edge * 0.999, edge, edge * 1.001):
        expected = float(scipy_stats.kstwo.sf(x, n))
        assert kolmogorov.kolmogorov_sf(x, n) == pytest.approx(expected, rel=TIGHT), x


@pytest.mark.parametrize("n", [1, 2, 3, 10, 100, 999, 1_000, 3_000])
def test_equal_sizes_sf_is_scipys_exact_two_sample_distribution(n: int) -> None:
    for h in sorted({1, 2, n // 3 + 1, n // 2, n - 1, n, *range(1, n + 1, max(1, n // 40))}):
        if 1 <= h <= n:
            assert kolmogorov.equal_sizes_sf(n, h) == _compute_prob_outside_square(n, h), h


@pytest.mark.parametrize("n", [2, 10, 57, 100, 139, 140])
def test_pomeranz_branch_is_kstwo_sf(n: int) -> None:
    # n <= 140 and 0.754693 < n·x² <= 4: a window of about a hundred values against a large reservoir.
    for nxsquared in np.linspace(0.7547, 4.0, 80):
        x = math.sqrt(nxsquared / n)
        if 1 < n * x < n - 1 and x < 0.5:  # not a Ruben-Gambino or Smirnov case
            expected = float(scipy_stats.kstwo.sf(x, n))
            assert kolmogorov.kolmogorov_sf(x, n) == pytest.approx(expected, rel=TIGHT), x
            assert kolmogorov.pomeranz_cdf(n, x) == pytest.approx(float(scipy_stats.kstwo.cdf(x, n)), rel=TIGHT)


def test_the_live_path_imports_neither_scipy_stats_nor_scipy_special() -> None:
    # scipy.stats holds about 45 MiB of a running agent, scipy.special 26; a window's statistics need
    # neither.
    code = """
import sys
import numpy as np
from agent.ml import kolmogorov, stats
rng = np.random.default_rng(0)
ref = np.sort(rng.standard_normal(1_024))
for shift in (0.0, 0.05, 0.3, 3.0):
    stats.two_sample(ref, rng.standard_normal(1_000) + shift)  # asymptotic
    stats.two_sample(ref[:1_000], rng.standard_normal(1_000) + shift)  # exact, equal sizes
    stats.two_sample(np.sort(rng.standard_normal(10_000)), rng.standard_normal(120) + shift)  # Pomeranz
a, b = np.random.default_rng(3).standard_normal((2, 1_000))
unequal = stats.two_sample(np.sort(a), b[:987] + 0.1).ks  # exact, a few values missing
stats.chi2_two_sample(np.array([500, 500]), np.array([400, 600]))
stats.chi2_two_sample(np.array([5, 50, 500]), np.array([40, 60, 7]))
stats.jensen_shannon(np.array([5, 50, 500]), np.array([40, 60, 7]))
stats.adjust_p_values(np.array([0.01, 0.2, np.nan, 0.03]), "benjamini_hochberg")
for x in np.geomspace(1e-4, 0.999, 200):
    kolmogorov.kolmogorov_sf(float(x), 512)
    kolmogorov.kolmogorov_sf(float(x), 100)  # Pomeranz's recursion among its branches
print("scipy.stats" in sys.modules, "scipy.special" in sys.modules)
print(sorted(m for m in sys.modules if m.startswith("scipy.stats.")))
print(repr(unequal.p_value))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    package, modules, p_value = done.stdout.splitlines()
    assert package == "False False"
    assert modules == "['scipy.stats._stats_pythran']"  # the compiled routine of unequal sizes, loaded alone
    a, b = np.random.default_rng(3).standard_normal((2, 1_000))
    assert float(p_value) == pytest.approx(scipy_stats.ks_2samp(a, b[:987] + 0.1, method="exact").pvalue, rel=TIGHT)
