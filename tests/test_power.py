"""Tests for steerlab.power: exact noncentral-t oracles, textbook sample sizes, and Monte Carlo checks."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from steerlab.errors import SteerlabError
from steerlab.power import mde_paired, mde_proportions, power_paired, power_proportions


def _nct_power(d, n, alpha=0.05):
    """Two-sided one-sample t power written out from the noncentral t (the oracle)."""
    df, nc, crit = n - 1, d * math.sqrt(n), sps.t.ppf(1 - alpha / 2, n - 1)
    return 1 - sps.nct.cdf(crit, df, nc) + sps.nct.cdf(-crit, df, nc)


@pytest.mark.parametrize("n", [3, 5, 10, 34, 100, 1000])
def test_mde_paired_has_exactly_the_requested_power(n):
    d = mde_paired(n, 1.0)
    assert _nct_power(d, n) == pytest.approx(0.8, abs=1e-9)
    assert power_paired(d, n, 1.0) == pytest.approx(0.8, abs=1e-9)


def test_mde_paired_textbook_and_large_n():
    # Cohen (1988): d = 0.5 at 80% power (two-sided, 0.05) needs n = 34 (G*Power: power 0.8078)
    assert power_paired(0.5, 34, 1.0) == pytest.approx(0.8078, abs=1e-4)
    assert mde_paired(33, 1.0) > 0.5 > mde_paired(34, 1.0)
    # large n: the normal approximation (z_0.975 + z_0.8) sd / sqrt(n)
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert mde_paired(100_000, 0.3) == pytest.approx(z * 0.3 / math.sqrt(100_000), rel=1e-4)


def test_mde_paired_scales_with_sd_and_one_sided_is_smaller():
    assert mde_paired(40, 0.3) == pytest.approx(0.3 * mde_paired(40, 1.0), rel=1e-9)
    assert mde_paired(40, 1.0, alternative="greater") < mde_paired(40, 1.0)
    assert mde_paired(40, 1.0, power=0.9) > mde_paired(40, 1.0) > mde_paired(40, 1.0, alpha=0.1)
    assert mde_paired(40, 0.0) == 0.0


def test_mde_paired_matches_statsmodels():
    tp = pytest.importorskip("statsmodels.stats.power").TTestPower()
    for n in (5, 20, 100):
        ref = tp.solve_power(nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
        assert mde_paired(n, 1.0) == pytest.approx(ref, rel=1e-4)
        ref = tp.solve_power(nobs=n, alpha=0.05, power=0.8, alternative="larger")
        assert mde_paired(n, 1.0, alternative="greater") == pytest.approx(ref, rel=1e-4)


def test_mde_paired_monte_carlo():
    # 20,000 simulated t-tests at the MDE reject 80% of the time (se 0.0028)
    n, sd = 12, 0.25
    delta = mde_paired(n, sd)
    x = np.random.default_rng(0).normal(delta, sd, size=(20_000, n))
    rate = float((sps.ttest_1samp(x, 0.0, axis=1).pvalue < 0.05).mean())
    assert rate == pytest.approx(0.8, abs=0.01)


def test_fewer_than_three_units_give_nan():
    with pytest.warns(RuntimeWarning, match="fewer than 3"):
        assert math.isnan(mde_paired(2, 1.0))
    with pytest.warns(RuntimeWarning, match="fewer than 3"):
        assert math.isnan(mde_proportions(2, 0.5))
    with pytest.warns(RuntimeWarning, match="fewer than 3"):
        assert math.isnan(power_paired(0.5, 2, 1.0))


def _fleiss_n(p0, p1, alpha=0.05, power=0.8):
    """Fleiss et al. (2003) eq. 4.14 without continuity correction: units per group."""
    pbar = (p0 + p1) / 2
    za, zb = sps.norm.ppf(1 - alpha / 2), sps.norm.ppf(power)
    num = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p0 * (1 - p0) + p1 * (1 - p1))
    return (num / (p1 - p0)) ** 2


@pytest.mark.parametrize(("p0", "p1"), [(0.5, 0.6), (0.2, 0.35), (0.7, 0.5)])
def test_mde_proportions_inverts_the_fleiss_sample_size(p0, p1):
    n = _fleiss_n(p0, p1)  # 0.5 vs 0.6: 387.3 per group
    direction = "up" if p1 > p0 else "down"
    delta = abs(p1 - p0)
    assert mde_proportions(math.ceil(n), p0, direction=direction) <= delta <= mde_proportions(
        math.floor(n), p0, direction=direction
    )
    assert power_proportions(p0, p1, math.ceil(n)) >= 0.8 > power_proportions(p0, p1, math.floor(n))


def test_mde_proportions_directions():
    up, down = mde_proportions(50, 0.8, direction="up"), mde_proportions(50, 0.8, direction="down")
    assert up < down  # a fall from 0.8 moves towards 0.5, where the variance is larger
    assert mde_proportions(50, 0.8) == down  # "either" is the larger
    assert mde_proportions(50, 0.5, direction="up") == pytest.approx(mde_proportions(50, 0.5, direction="down"))
    assert mde_proportions(10, 0.95, direction="up") == math.inf  # no rise from 0.95 is detectable with 10
    assert mde_proportions(10, 0.95) == math.inf


def test_mde_proportions_monte_carlo():
    n, p0 = 150, 0.4
    p1 = p0 + mde_proportions(n, p0, direction="up")
    rng = np.random.default_rng(1)
    a, b = rng.binomial(n, p0, 20_000) / n, rng.binomial(n, p1, 20_000) / n
    pooled = (a + b) / 2
    z = (b - a) / np.sqrt(2 * pooled * (1 - pooled) / n)
    # the normal approximation is a little conservative on binomial counts (0.814 here)
    assert 0.79 < float((np.abs(z) > sps.norm.ppf(0.975)).mean()) < 0.83


def test_errors():
    with pytest.raises(SteerlabError, match="positive int"):
        mde_paired(0, 1.0)
    with pytest.raises(SteerlabError, match="sd"):
        mde_paired(10, -1.0)
    with pytest.raises(SteerlabError, match="power"):
        mde_paired(10, 1.0, power=0.01)
    with pytest.raises(SteerlabError, match="alternative"):
        mde_paired(10, 1.0, alternative="less")
    with pytest.raises(SteerlabError, match="p0"):
        mde_proportions(10, 1.5)
    with pytest.raises(SteerlabError, match="direction"):
        mde_proportions(10, 0.5, direction="sideways")
