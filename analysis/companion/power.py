"""The replicate rule of every study: the smallest p a family of tests can reach with the units at hand
(before and after Holm's correction), how many units it needs to reach 0.05, and, where a pilot effect
size exists, how many it needs for 80% power (docs/analysis.md, "The replicate rule").

The floor of a test is the smallest p its exact permutation version can return with these units: for a
rank or permutation test that is the test itself; a t test's p is the normal-theory approximation of the
same permutation test, and it can fall below that floor only through its normality assumption, which a
handful of units cannot check (near-identical replicates give t p-values of 1e-20 that say nothing beyond
the effect size). So one floor serves the t test and its rank counterpart alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

ALPHA = 0.05
POWER = 0.8
POWER_SEARCH = 1000  # the largest unit count the power search tries

# How a test's units are arranged; the floor depends on nothing else.
ONE_SAMPLE = "one_sample"  # paired differences or one sample, two-sided (t, sign-flip, signed rank)
ONE_SIDED = "one_sided"  # the same, one-sided (the exact sign test of a share above 1/2)
TWO_GROUPS = "two_groups"  # two independent groups of units (Welch, rank sum, a two-level factor's LRT)
K_GROUPS = "k_groups"  # k groups of r units each (a k-level factor's LRT, Kruskal-Wallis)
FRIEDMAN = "friedman"  # k groups paired within n blocks (scipy's Friedman chi-square)
CORRELATION = "correlation"  # a rank correlation over n units (every ordering of one variable equally likely)

DESIGNS = (ONE_SAMPLE, ONE_SIDED, TWO_GROUPS, K_GROUPS, FRIEDMAN, CORRELATION)

RULE = (
    "The replicate rule: a family of tests can decide only if its smallest attainable p, times the tests in "
    "its Holm family, is below 0.05. The smallest attainable p is that of the exact permutation version of "
    "the test with the units at hand: 2/2^n for n paired units or one sample (t, sign-flip, signed rank), "
    "1/2^n one-sided, 2/C(n1 + n2, n1) for two groups of units, k! (r!)^k / (k r)! for k groups of r units, "
    "chi2.sf(n (k - 1), k - 1) for Friedman's test, 2/n! for a rank correlation over n units. A verdict whose floor after Holm is 0.05 or above is "
    "'underpowered (n = ..., needs >= ...)', whatever its p. Where a pilot effect size d exists (the median "
    "standardised effect of the family's tests; for an existence claim, that of its strongest candidate), the rule "
    "also gives the units a t test needs for power 0.8 at Holm's strictest level 0.05/m for half of d (estimates "
    "from few replicates are optimistic). A result that is not significant but points the claimed way is "
    "'underpowered' too, not 'does not replicate', when its units are fewer than power 0.8 needs at half the "
    "effect the family has shown: the median standardised effect of its tests that are significant the claimed "
    "way. A test's own effect never decides its own verdict (power computed from the effect observed is a "
    "function of p alone and would call every non-significant result underpowered), so where no test of the "
    "family is significant, a non-significant result does not replicate."
)


def min_p_signed_rank(n: int) -> float:
    """Smallest two-sided p of the exact Wilcoxon signed-rank (or sign-flip) test with ``n`` pairs."""
    return 1.0 if n < 1 else min(1.0, 2.0 / 2.0 ** int(n))


def min_p_friedman(n: int, k: int) -> float:
    """Smallest p of Friedman's chi-square test (scipy's) with ``n`` blocks and ``k`` groups."""
    from scipy import stats

    if n < 2 or k < 2:
        return 1.0
    return float(stats.chi2.sf(n * (k - 1), k - 1))


def min_p_two_groups(n1: int, n2: int) -> float:
    """Smallest two-sided p of an exact permutation (or rank-sum) test of two groups of n1 and n2 units."""
    if n1 < 1 or n2 < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(int(n1) + int(n2), int(n1)))


def min_p_k_groups(k: int, r: int) -> float:
    """Smallest p of an exact permutation test of k groups of r units each (every arrangement of the units
    over the groups is equally likely; the k! orders of the groups give the same statistic)."""
    if k < 2 or r < 1:
        return 1.0
    arrangements = math.factorial(k * r) // (math.factorial(r) ** k)
    return min(1.0, math.factorial(k) / arrangements)


def smallest_p(design: str, n: int, *, n_other: int | None = None, k: int | None = None) -> float:
    """The floor of one test (see the module docstring): ``n`` units (per group, per pair, or blocks);
    ``n_other`` the other group's units (two groups); ``k`` the groups (k groups, Friedman)."""
    if design == ONE_SAMPLE:
        return min_p_signed_rank(n)
    if design == ONE_SIDED:
        return 1.0 if n < 1 else min(1.0, 1.0 / 2.0 ** int(n))
    if design == TWO_GROUPS:
        return min_p_two_groups(n, int(n_other or 0))
    if design == K_GROUPS:
        return min_p_k_groups(int(k or 0), n)
    if design == FRIEDMAN:
        return min_p_friedman(n, int(k or 0))
    if design == CORRELATION:  # the ordering and its reverse are the two most extreme of n! orderings
        return 1.0 if n < 2 else min(1.0, 2.0 / math.factorial(int(n)))
    raise ValueError(f"design={design!r}; allowed: {', '.join(DESIGNS)}")


def holm_floor(p_min: float, m: int) -> float:
    """Smallest Holm-adjusted p in a family of ``m`` tests whose smallest raw p is ``p_min``."""
    return min(1.0, float(p_min) * max(int(m), 1))


def units_needed(
    design: str, m: int, *, n_other: int | None = None, k: int | None = None, alpha: float = ALPHA, n_max: int = 1000
) -> int | None:
    """The fewest units (the ``n`` of ``smallest_p``) whose floor after Holm over ``m`` tests is below alpha."""
    for n in range(1, n_max + 1):
        if holm_floor(smallest_p(design, n, n_other=n_other, k=k), m) < alpha:
            return n
    return None


def noncentral_t_power(nc: float, df: float, alpha: float) -> float:
    """Power of a two-sided t test at level ``alpha`` with ``df`` degrees of freedom and noncentrality ``nc``:
    P(T' > crit) + P(T' < -crit) under scipy's noncentral t. scipy returns NaN for a tail far from ``nc`` (at
    Holm levels such as 0.05/1470 the negligible opposite tail comes back NaN, and with it the sum, in about
    half the unit counts); such a tail is taken from the normal approximation instead, which is as good as
    zero there, never as the whole power (a NaN once read as power 1 made 51 runs look enough where 67 are)."""
    from scipy import stats

    nc = abs(float(nc))
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    upper = float(stats.nct.sf(crit, df, nc))
    lower = float(stats.nct.cdf(-crit, df, nc))
    if not math.isfinite(upper):
        upper = float(stats.norm.sf(crit - nc))
    if not math.isfinite(lower):
        lower = float(stats.norm.cdf(-crit - nc))
    return min(1.0, upper + lower)


def t_power(d: float, n: int, alpha: float) -> float:
    """Power of the two-sided one-sample (paired) t test with ``n`` pairs at standardised effect ``d``."""
    if n < 2:
        return 0.0
    return noncentral_t_power(abs(float(d)) * math.sqrt(n), n - 1, alpha)


def two_sample_t_power(d: float, n: int, n_other: int, alpha: float) -> float:
    """Power of the two-sided two-sample t test with n and n_other units at effect ``d`` (the textbook formula,
    as statsmodels' TTestIndPower computes it, with its NaN tails handled as in ``noncentral_t_power``). The
    two-group tests run are Welch's; at equal variances this is their power, and with ``d`` scaled by the
    root of the two groups' mean variance it is the usual approximation where the variances differ."""
    if n < 2 or n_other < 2:
        return 0.0
    return noncentral_t_power(abs(float(d)) * math.sqrt(n * n_other / (n + n_other)), n + n_other - 2, alpha)


def powered_n(
    d: float, m: int, design: str, *, n_other: int | None = None, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """The fewest units for power ``power`` at Holm's strictest level alpha/m for half the pilot effect ``d``
    (t tests of one sample / pairs, or of two groups); None without a usable pilot effect or design;
    ``POWER_SEARCH + 1`` where no count up to POWER_SEARCH reaches it."""
    if not (d is not None and np.isfinite(d) and d != 0) or design not in (ONE_SAMPLE, ONE_SIDED, TWO_GROUPS):
        return None
    level = alpha / max(int(m), 1)
    if design == TWO_GROUPS and two_sample_t_power(0.5 * d, POWER_SEARCH, int(n_other or POWER_SEARCH), level) < power:
        return POWER_SEARCH + 1  # the other group's units bound the power: no count on this side reaches it
    for n in range(2, POWER_SEARCH + 1):
        if design == TWO_GROUPS:
            reached = two_sample_t_power(0.5 * d, n, int(n_other or n), level)
        else:
            reached = t_power(0.5 * d, n, level)
        if reached >= power:
            return n
    return POWER_SEARCH + 1


def replicates_needed(
    d_measured: float,
    m: int,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    test: str = "signed_rank",
    k: int = 2,
    n_max: int = 200,
) -> int:
    """The rule's ``n`` for a paired design: the smallest count meeting both the attainable and the powered
    condition (``test``: signed_rank, also the floor of a paired t test, or friedman)."""
    if test not in ("signed_rank", "friedman"):
        raise ValueError(f"test={test!r}; allowed: signed_rank, friedman")
    d_plan = 0.5 * abs(float(d_measured))
    for n in range(2, n_max + 1):
        p_min = min_p_signed_rank(n) if test == "signed_rank" else min_p_friedman(n, k)
        if holm_floor(p_min, m) < alpha and t_power(d_plan, n, alpha / max(m, 1)) >= power:
            return n
    raise ValueError(f"no n <= {n_max} reaches power {power} for d={d_measured} with {m} tests")


@dataclass(frozen=True)
class Family:
    """A family of tests as the report runs it: what is tested, how, on which units, and how many tests."""

    family: str
    test: str  # the test actually run, in words
    design: str  # one of DESIGNS
    unit: str  # the unit of replication ("replicate run", "class pair", ...)
    n: int  # units (per group / pair / blocks; the raisable count)
    m: int  # tests in the Holm family
    n_other: int | None = None  # the other group's units (TWO_GROUPS)
    k: int | None = None  # groups (K_GROUPS, FRIEDMAN)
    pilot_d: float = float("nan")  # a standardised effect measured on these units, if any

    @property
    def floor(self) -> float:
        return smallest_p(self.design, self.n, n_other=self.n_other, k=self.k)

    @property
    def floor_holm(self) -> float:
        return holm_floor(self.floor, self.m)

    @property
    def decidable(self) -> bool:
        return self.floor_holm < ALPHA

    @property
    def needed(self) -> int | None:
        return units_needed(self.design, self.m, n_other=self.n_other, k=self.k)

    @property
    def needed_powered(self) -> int | None:
        return powered_n(self.pilot_d, self.m, self.design, n_other=self.n_other)

    def lacks_power_at(self, shown_d: float) -> bool:
        """Fewer units than power 0.8 at half the effect ``shown_d`` needs (False without such an effect: NaN)."""
        need = powered_n(shown_d, self.m, self.design, n_other=self.n_other)
        return need is not None and self.n < need

    def underpowered(self, n_text: str | None = None) -> str:
        """The verdict text of a family that cannot decide: its floor after Holm is 0.05 or above."""
        need = self.needed
        return (
            f"underpowered (n = {n_text or self._n_text()}, needs >= "
            + (f"{need} {self.unit}s" if need else "more units than the rule searched")
            + ")"
        )

    def underpowered_for_power(self, shown_d: float, n_text: str | None = None) -> str:
        """The verdict text of a non-significant result in the claimed direction from too few units for power
        0.8 at half the effect ``shown_d`` that the family's significant tests have shown."""
        need = powered_n(shown_d, self.m, self.design, n_other=self.n_other)
        effect = f"power 0.8 at half the effect the family's significant tests show, d = {abs(shown_d):.2g}"
        if need is not None and need <= POWER_SEARCH:
            return f"underpowered (n = {n_text or self._n_text()}, needs >= {need} {self.unit}s for {effect})"
        if self.design == TWO_GROUPS:  # the other group's units are the bound
            return (
                f"underpowered (n = {n_text or self._n_text()}; with {self.n_other} units on the other side no "
                f"count of {self.unit}s reaches {effect})"
            )
        return f"underpowered (n = {n_text or self._n_text()}, needs > {POWER_SEARCH} {self.unit}s for {effect})"

    def _n_text(self) -> str:
        return f"{self.n} {self.unit}" + ("s" if self.n != 1 else "")


RULE_COLUMNS = [
    "family",
    "test",
    "unit",
    "n",
    "tests_in_family",
    "smallest_p",
    "smallest_p_after_holm",
    "can_reject_at_0.05",
    "n_needed_to_reach_0.05",
    "pilot_d",
    "n_needed_for_power_0.8",
]


def rule_row(family: Family) -> dict:
    """One row of the replicate rule's table of a report section."""
    return {
        "family": family.family,
        "test": family.test,
        "unit": family.unit,
        "n": int(family.n) if family.n_other is None else f"{family.n} vs {family.n_other}",
        "tests_in_family": int(family.m),
        "smallest_p": family.floor,
        "smallest_p_after_holm": family.floor_holm,
        "can_reject_at_0.05": bool(family.decidable),
        "n_needed_to_reach_0.05": family.needed,
        "pilot_d": family.pilot_d,
        "n_needed_for_power_0.8": family.needed_powered,
    }


def rule_table(families: list[Family]) -> pd.DataFrame:
    return pd.DataFrame([rule_row(f) for f in families], columns=RULE_COLUMNS)


def shown_effect(d, significant) -> float:
    """The effect a family has shown: the median |d| of its tests that are significant the claimed way
    (``significant``, a boolean per test); NaN where none is. The power check of a non-significant result
    uses this, never the result's own effect (see ``RULE``)."""
    d = np.abs(np.asarray(d, dtype=float))
    keep = np.asarray(significant, dtype=bool) & np.isfinite(d)
    return float(np.median(d[keep])) if keep.any() else float("nan")


def standardised_mean(values) -> float:
    """Mean over standard deviation of a sample (the pilot d of a one-sample / paired design); NaN if undefined."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2 or float(v.std(ddof=1)) == 0.0:
        return float("nan")
    return float(v.mean() / v.std(ddof=1))


def sign_flip_p(values, *, alternative: str = "two-sided") -> float:
    """Sign-flip permutation p of the mean of paired differences / one sample against 0 (scipy's
    ``permutation_test``): exact, every one of the 2^n sign patterns, for n <= 16; 20,000 seeded random
    patterns above. Its floor is ``min_p_signed_rank`` (two-sided) or 1/2^n (one-sided)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0 or not np.any(v != 0):
        return 1.0
    if v.size == 1:  # two sign patterns: the observed one and its mirror
        return 1.0 if alternative == "two-sided" else (0.5 if (v[0] > 0) == (alternative == "greater") else 1.0)
    res = stats.permutation_test(
        (v,),
        lambda x, axis: np.mean(x, axis=axis),
        permutation_type="samples",
        alternative=alternative,
        n_resamples=np.inf if v.size <= 16 else 20_000,
        vectorized=True,
        random_state=0,
    )
    return float(res.pvalue)


def min_p_row(family: str, test: str, n: int, m: int, *, k: int = 2, alpha: float = 0.05) -> dict:
    """One row of the rule's table for a paired design (``test``: signed_rank or friedman)."""
    design = ONE_SAMPLE if test == "signed_rank" else FRIEDMAN
    words = {"signed_rank": "exact sign-flip / signed rank", "friedman": f"Friedman, {k} groups"}[test]
    return rule_row(Family(family, words, design, "replicate", int(n), int(m), k=k))


def min_p_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=RULE_COLUMNS)


def spearman(x, y, exact_up_to: int = 8) -> tuple[float, float]:
    """Spearman's rho and its two-sided p: exact (every permutation) for up to ``exact_up_to`` pairs, where
    scipy's t approximation is far off (rho = 1 with 4 pairs gives p = 0 there, 1/12 exactly), scipy's above."""
    import itertools

    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    rho = float(stats.spearmanr(x, y).statistic)
    if n > exact_up_to or not np.isfinite(rho):
        return rho, float(stats.spearmanr(x, y).pvalue)
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    norm = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    observed = abs(float(rx @ ry)) / norm
    count = total = 0
    for perm in itertools.permutations(range(n)):
        total += 1
        count += abs(float(rx @ ry[list(perm)])) / norm >= observed - 1e-12
    return rho, count / total


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p values: analysis.stats.holm (NaN stays NaN and does not count in the family).

    Imported when called: analysis.stats brings the mixed-model stack, which a companion page does not
    otherwise need."""
    from ..stats import holm as holm_adjusted

    return holm_adjusted(pvalues)
