"""The power rule of the companion studies (analysis/companion/power.py) against scipy and statsmodels."""

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import TTestIndPower, TTestPower

from analysis.companion.power import (
    ONE_SAMPLE,
    holm,
    holm_floor,
    min_p_friedman,
    min_p_row,
    min_p_signed_rank,
    powered_n,
    replicates_needed,
    t_power,
    two_sample_t_power,
)


@pytest.mark.parametrize("n", [2, 4, 6, 8, 10])
def test_smallest_signed_rank_p_is_scipys_exact_p_for_all_positive_differences(n):
    diffs = np.arange(1, n + 1, dtype=float)
    assert min_p_signed_rank(n) == pytest.approx(stats.wilcoxon(diffs, method="exact").pvalue, rel=1e-12)


@pytest.mark.parametrize("n,k", [(4, 5), (5, 5), (6, 3), (10, 2)])
def test_smallest_friedman_p_is_scipys_p_for_identical_rankings(n, k):
    groups = [np.full(n, float(g)) + np.arange(n) * 10 for g in range(k)]
    assert (
        min_p_friedman(n, k) == pytest.approx(stats.friedmanchisquare(*groups).pvalue, rel=1e-12)
        if k > 2
        else min_p_friedman(n, k) == pytest.approx(stats.chi2.sf(n, 1))
    )
    # the numbers: 4 replicates, 5 groups -> 0.0030; Holm over 54 tests can never pass
    assert min_p_friedman(4, 5) == pytest.approx(0.0030, abs=5e-5)
    assert holm_floor(min_p_friedman(4, 5), 54) >= 0.05


@pytest.mark.parametrize("d,n,alpha", [(0.5, 10, 0.05), (1.0, 15, 0.0167), (2.0, 5, 0.025), (0.2, 40, 0.01)])
def test_t_power_is_statsmodels(d, n, alpha):
    assert t_power(d, n, alpha) == pytest.approx(TTestPower().power(d, n, alpha), abs=1e-9)


def _power_by_integration(d: float, n: int, alpha: float) -> float:
    """The one-sample t test's power by integrating the normal over the chi-square of the variance: P(|Z + nc|
    > crit sqrt(V / df)), V ~ chi2(df), without scipy's noncentral t."""
    from scipy import integrate

    df, nc = n - 1, d * np.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)

    def rejects(v):
        bar = crit * np.sqrt(v / df)
        return (stats.norm.sf(bar - nc) + stats.norm.cdf(-bar - nc)) * stats.chi2.pdf(v, df)

    return float(integrate.quad(rejects, 0, np.inf, limit=200)[0])


def test_t_power_at_strict_holm_levels_where_scipy_gives_nan():
    """At Holm's level over 1,470 steps scipy's noncentral t returns NaN for the negligible lower tail in about
    half the unit counts; the power read 1.0 there, so 51 runs looked enough for d = 1.34 / 2 where 65 are."""
    d, alpha = 1.336989 / 2, 0.05 / 1470
    powers = [t_power(d, n, alpha) for n in range(30, 80)]
    assert np.all(np.diff(powers) > 0)  # more runs, more power: no jump to 1 and back
    for n in (41, 45, 51, 65):
        assert t_power(d, n, alpha) == pytest.approx(_power_by_integration(d, n, alpha), abs=1e-6)
    assert t_power(d, 51, alpha) == pytest.approx(0.588, abs=1e-3)
    assert powered_n(1.336989, 1470, ONE_SAMPLE) == next(
        n for n in range(2, 500) if _power_by_integration(d, n, alpha) >= 0.8
    )
    # the two-sample power is statsmodels' wherever statsmodels gives a number
    for n, n_other, dd, a in ((5, 15, 1.4, 0.0125), (12, 15, 1.4, 0.0125), (40, 40, 0.3, 0.05 / 1470)):
        ref = TTestIndPower().power(effect_size=dd, nobs1=n, ratio=n_other / n, alpha=a)
        assert two_sample_t_power(dd, n, n_other, a) == pytest.approx(ref, abs=1e-9)


def test_replicate_counts_of_the_rule():
    # both conditions at the returned n, and one of them fails at n - 1
    for d, m in ((7.6, 2), (1.947, 3), (5.0, 4), (3.0, 1)):
        n = replicates_needed(d, m)
        assert holm_floor(min_p_signed_rank(n), m) < 0.05 and t_power(d / 2, n, 0.05 / m) >= 0.8
        assert holm_floor(min_p_signed_rank(n - 1), m) >= 0.05 or t_power(d / 2, n - 1, 0.05 / m) < 0.8
    assert (replicates_needed(7.6, 2), replicates_needed(1.947, 3), replicates_needed(5.0, 4)) == (7, 15, 8)
    # far in the tail scipy's noncentral t gives NaN: the power is 1 there
    assert t_power(40.0, 7, 0.025) == 1.0
    with pytest.raises(ValueError, match="allowed: signed_rank, friedman"):
        replicates_needed(1.0, 1, test="t")


def test_min_p_row_and_holm():
    row = min_p_row("f", "signed_rank", 2, 3)
    assert row["smallest_p"] == 0.5 and row["smallest_p_after_holm"] == 1.0 and not row["can_reject_at_0.05"]
    p = np.array([0.01, np.nan, 0.04, 0.03])
    out = holm(p)
    assert np.isnan(out[1]) and np.allclose(out[[0, 2, 3]], [0.03, 0.06, 0.06])


def test_exact_spearman_p_by_brute_force_and_scipy_above():
    from analysis.companion.power import spearman

    rho, p = spearman([1, 2, 3, 4], [10, 20, 30, 40])
    assert rho == pytest.approx(1.0) and p == pytest.approx(2 / 24)  # only the identity and its reverse
    x = np.arange(12.0)
    y = x + np.array([0, 3, -2, 1, 5, -4, 2, 0, -1, 3, 1, -2]) * 1.5
    assert spearman(x, y) == pytest.approx(tuple(stats.spearmanr(x, y)))
