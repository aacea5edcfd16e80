"""How many replicates a companion study needs to decide, and the smallest p a family of tests can
reach with the replicates at hand, before and after Holm's correction (the power rule of
docs/companion_critical_multitask.md, "Replicates: the power rule")."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def min_p_signed_rank(n: int) -> float:
    """Smallest two-sided p of the exact Wilcoxon signed-rank (or sign-flip) test with ``n`` pairs."""
    return 1.0 if n < 1 else min(1.0, 2.0 / 2.0 ** int(n))


def min_p_friedman(n: int, k: int) -> float:
    """Smallest p of Friedman's chi-square test (scipy's) with ``n`` blocks and ``k`` groups."""
    from scipy import stats

    if n < 2 or k < 2:
        return 1.0
    return float(stats.chi2.sf(n * (k - 1), k - 1))


def holm_floor(p_min: float, m: int) -> float:
    """Smallest Holm-adjusted p in a family of ``m`` tests whose smallest raw p is ``p_min``."""
    return min(1.0, float(p_min) * max(int(m), 1))


def t_power(d: float, n: int, alpha: float) -> float:
    """Power of the two-sided one-sample (paired) t test with ``n`` pairs at standardised effect ``d``."""
    from scipy import stats

    if n < 2:
        return 0.0
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(float(d)) * math.sqrt(n)
    power = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    if not math.isfinite(power):  # scipy's noncentral t returns NaN far in the tail, where power is 1
        return 1.0 if nc > crit else 0.0
    return power


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
    """The rule's ``n``: the smallest count meeting both the attainable and the powered condition."""
    if test not in ("signed_rank", "friedman"):
        raise ValueError(f"test={test!r}; allowed: signed_rank, friedman")
    d_plan = 0.5 * abs(float(d_measured))
    for n in range(2, n_max + 1):
        p_min = min_p_signed_rank(n) if test == "signed_rank" else min_p_friedman(n, k)
        if holm_floor(p_min, m) < alpha and t_power(d_plan, n, alpha / max(m, 1)) >= power:
            return n
    raise ValueError(f"no n <= {n_max} reaches power {power} for d={d_measured} with {m} tests")


def min_p_row(family: str, test: str, n: int, m: int, *, k: int = 2, alpha: float = 0.05) -> dict:
    """One row of the "smallest attainable p" table of a report section."""
    p_min = min_p_signed_rank(n) if test == "signed_rank" else min_p_friedman(n, k)
    floor = holm_floor(p_min, m)
    name = {"signed_rank": "exact signed-rank / sign-flip", "friedman": f"Friedman, {k} groups"}[test]
    return {
        "family": family,
        "tests_in_family": int(m),
        "replicates": int(n),
        "rank_test": name,
        "smallest_p": p_min,
        "smallest_p_after_holm": floor,
        "can_reject_at_0.05": bool(floor < alpha),
    }


def min_p_table(rows: list[dict]) -> pd.DataFrame:
    columns = [
        "family",
        "tests_in_family",
        "replicates",
        "rank_test",
        "smallest_p",
        "smallest_p_after_holm",
        "can_reject_at_0.05",
    ]
    return pd.DataFrame(rows, columns=columns)


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
