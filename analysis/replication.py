"""Which of the study's claims replicate: one row per claim (and metric / source), with a verdict.

The claims are those of docs/science.md section 1 (Jiang & Dale 2025, abstract and results). Each row
says, in one sentence, the test that matches the claim's wording, its unit of replication and how many
units there are, the estimate with its 95% interval, p, the Holm-adjusted p within the claim, the
smallest p the test could reach with these units after Holm (the replicate rule,
``analysis.companion.power``), and a verdict by ``RULE``. Which test answers which claim, and why:
docs/analysis.md ("What replicates").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from .companion.power import K_GROUPS, ONE_SAMPLE, ONE_SIDED, TWO_GROUPS, Family, rule_table, shown_effect
from .stats import holm

__all__ = [
    "RULE",
    "COLUMNS",
    "replication_table",
    "replicate_rule",
    "verdict_tables",
    "study_scope",
    "merged_null_share",
]

ALPHA = 0.05
METRICS = ("start", "end_minus_start", "max", "tmax")
UNDERPOWERED = "underpowered"

RULE = (
    "A claim's rows form one family; their p-values are Holm-adjusted within it (p_holm). Verdict: "
    "'replicates' when p_holm < 0.05 and the estimate has the sign the authors state (where they state one); "
    "'does not replicate' when p_holm >= 0.05 or the sign is the opposite; 'underpowered (n = ..., needs >= ...)' "
    "when the smallest p the test could reach with these units, after Holm (p_floor_holm, the replicate rule), "
    "is 0.05 or above, or when a variance component the test needs is estimated at zero: then neither of the "
    "other two verdicts can be given, whatever p says; also 'underpowered' when p_holm >= 0.05 with the sign "
    "the claim states (or none stated) from fewer units than power 0.8 needs at half the effect the family's "
    "replicating rows show (their median standardised effect; a row's own effect never decides its own "
    "verdict, so where no row of the family replicates, a non-significant row does not replicate); "
    "'not testable here' when the table lacks what the test "
    "needs (a second source, shuffled-label runs, a second epoch), when the shuffled runs are not comparable "
    "for that metric (the authors' null table joins five pair curves per row), when the claim is an "
    "interpretation without a test, or when the model the test rests on did not converge. Secondary rows "
    "(claim 1's level and slope) are reported beside the claim's test and get no verdict of their own."
)

COLUMNS = [
    "claim",
    "statement",
    "role",
    "metric",
    "source",
    "authors_test",
    "authors_result",
    "authors_figure",
    "our_test",
    "test",
    "unit",
    "n",
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "p_floor_holm",
    "verdict",
    "note",
]

STATEMENTS = {
    "1": "The metric differs by data source (authors: all p < .0001)",
    "2": "The metric differs between class pairs (class distinctions; authors: all p < .0001)",
    "2b": "A prominent role of spatial semantics in gesture learning",
    "3": "Larger information gain for sentences: end - start is larger for sentence than gesture",
    "4a": "Non-monotonic within a trial: the curve can peak before the end (tmax < 1, max > end)",
    "4b": "Non-monotonic across epochs: the developmental trajectory can dip (an epoch lower than the one before)",
    "5": "Real labels differ from shuffled (null) labels",
}
CLAIM_ORDER = ("1", "2", "2b", "3", "4a", "4b", "5")


def _fmt_p(p: float) -> str:
    """'= 0.27', '= 3.4e-16' or '< 1e-300', to follow 'p '."""
    if not np.isfinite(p):
        return "n/a"
    return f"= {p:.2g}" if p >= 1e-300 else "< 1e-300"


def _of(frame: pd.DataFrame | None, metric: str, model: str) -> pd.DataFrame:
    """The rows of one metric and model of a results table (none where the table is empty)."""
    if frame is None or len(frame) == 0:
        return pd.DataFrame()
    return frame[(frame["metric"] == metric) & (frame["model"] == model)]


def _ols_text(ols: pd.DataFrame | None, metric: str, model: str) -> str:
    r = _of(ols, metric, model)
    if r.empty:
        return ""
    r = r.iloc[0]
    return (
        f"F({int(r['df_model'])}, {int(r['df_resid'])}) = {r['f']:.4g}, p {_fmt_p(r['p_value'])}, "
        f"adj. R^2 = {r['adj_r2']:.4f}"
    )


# ---------------------------------------------------------------------------
# the units of replication the table holds
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Units:
    """How many independent units each test can use: class pairs per source, replicate runs per class pair,
    shuffled-label runs per source, epochs."""

    pairs: dict[str, int]
    replicates: dict[str, int]  # the fewest real runs of a class pair, per source
    replicates_most: dict[str, int]  # the most
    shuffled: dict[str, int]
    epochs: int

    @classmethod
    def of(cls, table: pd.DataFrame) -> Units:
        real = table[table["labels"] == "real"]
        shuffled = table[table["labels"] != "real"]
        per_pair = real.groupby(["source", "pair"])["run"].nunique().groupby("source")
        return cls(
            pairs={str(s): int(n) for s, n in real.groupby("source")["pair"].nunique().items()},
            replicates={str(s): int(n) for s, n in per_pair.min().items()},
            replicates_most={str(s): int(n) for s, n in per_pair.max().items()},
            shuffled={str(s): int(n) for s, n in shuffled.groupby("source")["run"].nunique().items()},
            epochs=int(table["epoch"].nunique()) if len(table) else 0,
        )

    def per_pair(self, source: str) -> str:
        """'15 class pairs x 20 runs' (or 'x 18-20 runs')."""
        lo, hi = self.replicates[source], self.replicates_most[source]
        runs = f"{lo}" if lo == hi else f"{lo}-{hi}"
        return f"{self.pairs[source]} class pairs x {runs} run{'s' if hi > 1 else ''}"


def study_scope(table: pd.DataFrame) -> dict:
    """Whether the table can stand for the study or only demonstrates the pipeline: a demonstration where a
    class pair has a single real-label run (nothing then separates the class pair from its run).
    ``{"demonstration": bool, "text": str}``."""
    units = Units.of(table)
    if not units.replicates:
        return {"demonstration": False, "text": ""}
    fewest = min(units.replicates.values())
    if fewest >= 2:
        return {"demonstration": False, "text": ""}
    parts = ", ".join(f"{s}: {units.per_pair(s)}" for s in sorted(units.pairs))
    return {
        "demonstration": True,
        "text": (
            f"A demonstration of the pipeline, not the study: {parts}, {units.epochs} epochs "
            "(the study: 20-25 replicate runs of every class pair, 50 epochs, and shuffled-label runs). With one "
            "run per class pair nothing separates a class pair from its run, so the claims that rest on replicate "
            "runs are 'underpowered' below, and their numbers describe these runs only."
        ),
    }


# ---------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------


def _row(claim: str, metric: str, source: str, **fields) -> dict:
    """A row with every column; ``family`` (a power.Family) decides the floor, ``blocked`` (a reason) makes the
    verdict underpowered, ``direction`` is the sign the authors state (0: none)."""
    row: dict[str, Any] = {c: "" for c in COLUMNS}
    row.update(
        claim=claim,
        statement=STATEMENTS[claim],
        role="primary",
        metric=metric,
        source=source,
        estimate=np.nan,
        ci_low=np.nan,
        ci_high=np.nan,
        p_value=np.nan,
        p_holm=np.nan,
        p_floor_holm=np.nan,
        _family=None,
        _blocked="",
        _direction=0,
        _holm_done=False,
    )
    row.update(fields)
    return row


def _untestable(claim: str, metric: str, source: str, note: str, **fields) -> dict:
    return _row(claim, metric, source, verdict="not testable here", note=note, **fields)


def _zero_components(models: pd.DataFrame, metric: str, model: str) -> set[str]:
    m = _of(models, metric, model)
    if len(m) == 0:
        return set()
    text = m.iloc[0]["on_boundary"]
    return {part.strip() for part in str(text).split(",") if part.strip() and str(text) != "nan"}


def _blocked(zero: set[str], needs: tuple[tuple[str, ...], ...]) -> str:
    """A reason when, for some requirement, every variance component that could carry it is estimated at zero."""
    for alternatives in needs:
        if alternatives and all(name in zero for name in alternatives):
            return (
                f"{' and '.join(alternatives)} estimated at zero: the test would rest on the scatter of single epochs"
            )
    return ""


def _model_row(models: pd.DataFrame, metric: str, model: str):
    m = _of(models, metric, model)
    return m.iloc[0] if len(m) else None


def _pair_means_welch(real: pd.DataFrame, metric: str) -> str:
    means = real.groupby(["source", "pair"])[metric].mean().reset_index()
    sources = sorted(means["source"].unique())
    if len(sources) != 2:
        return ""
    a = means.loc[means["source"] == sources[1], metric].to_numpy()
    b = means.loc[means["source"] == sources[0], metric].to_numpy()
    if a.size < 2 or b.size < 2:
        return ""
    res = sps.ttest_ind(a, b, equal_var=False)
    return (
        f"check: Welch t on class-pair means ({sources[1]} - {sources[0]}) = {a.mean() - b.mean():+.4g}, "
        f"p {_fmt_p(float(res.pvalue))}"
    )


def _pair_slopes_welch(real: pd.DataFrame, metric: str) -> str:
    """An independent check of a difference in development: each class pair's own least-squares slope per epoch
    (over its runs' rows), Welch's t test between the sources."""
    sources = sorted(real["source"].unique())
    if len(sources) != 2 or real["epoch"].nunique() < 2:
        return ""
    x = real["epoch"] - real.groupby(["source", "pair"])["epoch"].transform("mean")
    y = real[metric] - real.groupby(["source", "pair"])[metric].transform("mean")
    slopes = (x * y).groupby([real["source"], real["pair"]]).sum() / (x * x).groupby(
        [real["source"], real["pair"]]
    ).sum()
    a, b = slopes.loc[sources[1]].to_numpy(), slopes.loc[sources[0]].to_numpy()
    if a.size < 2 or b.size < 2:
        return ""
    res = sps.ttest_ind(a, b, equal_var=False)
    return f"check: Welch t on class-pair slopes per epoch ({sources[1]} - {sources[0]}), p {_fmt_p(float(res.pvalue))}"


def _pair_means_d(real: pd.DataFrame, metric: str, sources: list[str]) -> float:
    """Standardised difference of the sources' class-pair means (pooled SD): the pilot effect of claims 1, 3."""
    means = real.groupby(["source", "pair"])[metric].mean()
    a, b = means.loc[sources[1]].to_numpy(), means.loc[sources[0]].to_numpy()
    if a.size < 2 or b.size < 2:
        return float("nan")
    pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


# --- claims 1 and 3: the data sources ------------------------------------------------------------------

SOURCE_MODEL = "source_pairs: metric ~ source * epoch + (1 + epoch | pair) + (1 + epoch | run), REML / ML"
SOURCE_TESTS = {
    "lrt": (
        "Likelihood-ratio test (ML, df 2) of source and source:epoch in source_pairs, i.e. whether the sources "
        "differ in level or in development over epochs, judged against the spread of class pairs and runs."
    ),
    "level": (
        "Sentence - gesture at the mean epoch from source_pairs (REML), t on class pairs - 2 degrees of freedom."
    ),
    "slope": (
        "Sentence - gesture in slope per epoch from source_pairs (REML), t on class pairs - 2 degrees of freedom."
    ),
}
SOURCE_NEEDS = {
    "lrt": (("Var(pair: Intercept)", "Var(run: Intercept)"), ("Var(pair: epoch)", "Var(run: epoch)")),
    "level": (("Var(pair: Intercept)", "Var(run: Intercept)"),),
    "slope": (("Var(pair: epoch)", "Var(run: epoch)"),),
}
SECONDARY_ROLE = {"level": "secondary: level at the mean epoch", "slope": "secondary: slope per epoch"}
EFFECT_SUFFIX = {"level": "at mean epoch", "slope": "(slope per epoch)"}


def _source_effect(mixed, metric: str, kind: str, n_pairs: int) -> dict:
    es = _of(mixed.effect_sizes, metric, "source_pairs")
    r = es[es["effect"].str.endswith(EFFECT_SUFFIX[kind])].iloc[0]
    dof = max(n_pairs - 2, 1)
    est, se = float(r["estimate"]), float(r["std_error"])
    q = float(sps.t.ppf(0.975, dof))
    p = float(2 * sps.t.sf(abs(est / se), dof)) if se > 0 else np.nan
    return {
        "estimate": est,
        "ci_low": est - q * se,
        "ci_high": est + q * se,
        "p_value": p,
        "statistic": f"t({dof}) = {est / se:.3g}" if se > 0 else "",
        "note": f"z-based p {_fmt_p(float(r['p_value']))}",
    }


def _source_lrt(mixed, metric: str) -> dict:
    lr = _of(mixed.lrt, metric, "source_pairs")
    if len(lr) == 0:
        return {}
    lr = lr.iloc[0]
    return {
        "p_value": float(lr["p_value"]),
        "statistic": f"chi^2({int(lr['df'])}) = {lr['chisq']:.3g}",
        "_converged": bool(lr["converged"]),
    }


def _source_row(table, mixed, ols, units: Units, claim: str, metric: str, kind: str) -> dict:
    real = table[table["labels"] == "real"]
    sources = sorted(units.pairs)
    n1, n2 = units.pairs[sources[0]], units.pairs[sources[1]]
    role = SECONDARY_ROLE[kind] if claim == "1" and kind != "lrt" else "primary"
    base = {
        "role": role,
        "authors_test": "lm(dv ~ source), rows as independent",
        "authors_result": _ols_text(ols, metric, "source"),
        "authors_figure": "the metric by data source (their metric plots and maps, gesture vs sentence)",
        "our_test": SOURCE_MODEL,
        "test": SOURCE_TESTS[kind],
        "unit": "class pair",
        "n": f"{n1} {sources[0]} + {n2} {sources[1]} class pairs",
    }
    m = _model_row(mixed.models, metric, "source_pairs")
    fitted = _source_lrt(mixed, metric) if kind == "lrt" else {}
    if (
        m is None
        or (kind == "lrt" and not fitted)
        or (kind != "lrt" and len(_of(mixed.effect_sizes, metric, "source_pairs")) == 0)
    ):
        return _untestable(claim, metric, "", "model source_pairs not fitted (see Notes)", **base)
    found = fitted if kind == "lrt" else _source_effect(mixed, metric, kind, int(m["n_groups"]))
    notes = [found.pop("note")] if "note" in found else []
    checks = [_pair_means_welch(real, metric)] + ([_pair_slopes_welch(real, metric)] if kind != "level" else [])
    notes += [c for c in checks if c]
    zero = _zero_components(mixed.models, metric, "source_pairs")
    notes += [f"singular fit: {m['on_boundary']}"] if zero else []
    converged = bool(m["converged"]) and found.pop("_converged", True)
    if not converged:
        return _untestable(claim, metric, "", "the source_pairs fit did not converge", **base)
    family = Family(
        f"claim {claim}" + (" (secondary)" if role != "primary" else ""),
        base["test"],
        TWO_GROUPS,
        "class pair",
        n1,
        0,
        n_other=n2,
        pilot_d=_pair_means_d(real, metric, sources),
    )
    return _row(
        claim,
        metric,
        "",
        **base,
        **found,
        note="; ".join(notes),
        _family=family,
        _blocked=_blocked(zero, SOURCE_NEEDS[kind]),
        _direction=+1 if claim == "3" else 0,
    )


def _source_rows(table, mixed, ols, units: Units) -> list[dict]:
    if len(units.pairs) != 2:
        note = "the table holds one data source"
        return [_untestable("1", m, "", note, test=SOURCE_TESTS["lrt"]) for m in METRICS] + [
            _untestable("3", "end_minus_start", "", note, test=SOURCE_TESTS["level"])
        ]
    if min(units.pairs.values()) < 2:
        note = "a source has one class pair only: the source effect cannot be judged against class pairs"
        return [_untestable("1", m, "", note, test=SOURCE_TESTS["lrt"]) for m in METRICS] + [
            _untestable("3", "end_minus_start", "", note, test=SOURCE_TESTS["level"])
        ]
    rows = [_source_row(table, mixed, ols, units, "1", metric, "lrt") for metric in METRICS]
    rows += [_source_row(table, mixed, ols, units, "1", m, kind) for m in METRICS for kind in ("level", "slope")]
    row = _source_row(table, mixed, ols, units, "3", "end_minus_start", "level")
    row["authors_figure"] = "end - start by data source (their metric plots)"
    return rows + [row]


# --- claim 2: the class pairs ------------------------------------------------------------------------------

PAIR_TEST = (
    "Likelihood-ratio test (ML) of pair and pair:epoch in metric ~ pair * epoch + (1 + epoch | run) against "
    "metric ~ epoch + (1 + epoch | run), within a source: the class pairs are judged against the spread of "
    "their replicate runs."
)


def _pair_contrast_summary(con: pd.DataFrame, metric: str, model: str) -> tuple[dict, list[str]]:
    c = _of(con, metric, model)
    level = c[c["family"] == "level_at_mean_epoch"] if len(c) else c
    if not len(level):
        return {}, []
    top = level.loc[level["estimate"].abs().idxmax()]
    sign = 1.0 if top["estimate"] >= 0 else -1.0
    lo, hi = sorted((sign * top["ci_low"], sign * top["ci_high"]))
    a, b = (top["level_a"], top["level_b"]) if sign > 0 else (top["level_b"], top["level_a"])
    notes = [f"estimate: the largest class-pair contrast at the mean epoch, {a} - {b}"]
    for family in ("level_at_mean_epoch", "epoch_slope"):
        f = c[c["family"] == family]
        notes.append(
            f"{int((f['p_holm'] < ALPHA).sum())} of {len(f)} contrasts Holm-significant ({family.replace('_', ' ')})"
        )
    return {"estimate": sign * top["estimate"], "ci_low": lo, "ci_high": hi}, notes


def _pair_row(mixed, ols, units: Units, source: str, metric: str) -> dict:
    model = f"pair_{source}_slope"
    k, r = units.pairs[source], units.replicates[source]
    base = {
        "authors_test": "lm(dv ~ epoch) vs lm(dv ~ epoch * class), nested F",
        "authors_result": _ols_text(ols, metric, f"epoch_vs_epoch_pair_{source}"),
        "authors_figure": "learning-curve maps and metric plots per class pair",
        "our_test": f"{model}: metric ~ pair * epoch + (1 + epoch | run)",
        "test": PAIR_TEST,
        "unit": "replicate run",
        "n": units.per_pair(source),
    }
    family = Family("claim 2", PAIR_TEST, K_GROUPS, "replicate run", r, 0, k=k)
    lr = _of(mixed.lrt, metric, model)
    if k < 2:
        return _untestable("2", metric, source, "one class pair only", **base)
    if not family.decidable:  # too few runs per class pair to decide, whatever the fit says
        return _row("2", metric, source, **base, _family=family)
    if len(lr) == 0:
        return _untestable("2", metric, source, f"model {model} not fitted (see Notes)", **base)
    lr = lr.iloc[0]
    found, notes = _pair_contrast_summary(mixed.contrasts, metric, model)
    m = _model_row(mixed.models, metric, model)
    zero = _zero_components(mixed.models, metric, model)
    notes += [f"singular fit: {m['on_boundary']}"] if zero else []
    converged = bool(lr["converged"]) and (m is None or bool(m["converged"]))
    if not converged:
        return _untestable("2", metric, source, f"the {model} fit did not converge", **base)
    return _row(
        "2",
        metric,
        source,
        **base,
        **found,
        p_value=float(lr["p_value"]),
        statistic=f"chi^2({int(lr['df'])}) = {lr['chisq']:.4g}",
        note="; ".join(notes),
        _family=family,
        _blocked=_blocked(zero, (("Var(run: Intercept)",), ("Var(run: epoch)",))),
    )


def _pair_rows(mixed, ols, units: Units) -> list[dict]:
    rows = [_pair_row(mixed, ols, units, source, metric) for source in sorted(units.pairs) for metric in METRICS]
    rows.append(
        _untestable(
            "2b",
            "",
            "gesture",
            "an interpretation, not a hypothesis with a test; the class-pair contrasts (contrasts.csv) show "
            "which gesture pairs differ",
            authors_test="none (an interpretation of which gesture class pairs differ)",
            authors_figure="learning-curve maps of gesture pairs",
            our_test="none",
            test="None: an interpretation.",
        )
    )
    return rows


# --- claims 4a and 4b: non-monotonic curves and trajectories, per class pair and epoch ---------------------

PEAK_TEST = (
    "Per class pair and epoch, an exact one-sided sign test over the replicate runs that more than half of the "
    "curves end below their peak (max > end); Holm over every class pair x epoch of both sources; the row's p "
    "is its source's smallest Holm-adjusted p."
)
DIP_TEST = (
    "Per class pair and epoch step, a paired t test over the replicate runs of max(epoch) - max(epoch - 1); "
    "Holm over every class pair x step of both sources; a dip is a Holm-significant negative step; the row's p "
    "is its source's smallest Holm-adjusted p among the drops."
)


def _peak_cells(real: pd.DataFrame) -> pd.DataFrame:
    """Per source, class pair and epoch: runs, runs whose curve ends below its peak, the one-sided exact p."""
    below = (real["max"] - real["end"]) > 1e-12
    cells = (
        real.assign(below=below, drop=real["max"] - real["end"])
        .groupby(["source", "pair", "epoch"])
        .agg(runs=("below", "size"), below=("below", "sum"), drop=("drop", "mean"))
        .reset_index()
    )
    # the exact one-sided binomial test (scipy's binomtest, alternative="greater"), for every cell at once
    cells["p"] = sps.binom.sf(cells["below"].to_numpy() - 1, cells["runs"].to_numpy(), 0.5)
    cells["share"] = cells["below"] / cells["runs"]
    return cells


def _dip_cells(real: pd.DataFrame, metric: str = "max") -> pd.DataFrame:
    """Per source, class pair and epoch step: mean change over the replicate runs, its one-sample t test (scipy's
    ``ttest_1samp``, for every step of a class pair at once), 95% interval and standardised size."""
    frames = []
    for (source, pair), d in real.groupby(["source", "pair"]):
        wide = d.pivot_table(index="run", columns="epoch", values=metric).sort_index(axis=1)
        steps = wide.diff(axis=1).iloc[:, 1:].to_numpy()
        n = np.sum(np.isfinite(steps), axis=0)
        mean = np.nanmean(steps, axis=0) if len(steps) else np.full(steps.shape[1], np.nan)
        with np.errstate(all="ignore"):
            sd = np.nanstd(steps, axis=0, ddof=1) if len(steps) > 1 else np.full(steps.shape[1], np.nan)
            ok = (n >= 2) & (sd > 0)
            t = np.where(ok, mean / (sd / np.sqrt(n)), np.nan)
            half = np.where(ok, sps.t.ppf(0.975, np.maximum(n - 1, 1)) * sd / np.sqrt(n), np.nan)
            p = np.where(ok, 2 * sps.t.sf(np.abs(t), np.maximum(n - 1, 1)), np.nan)
            d_ = np.where(ok, mean / sd, np.nan)
        frames.append(
            pd.DataFrame(
                {
                    "source": source,
                    "pair": pair,
                    "epoch": wide.columns[1:].astype(int),
                    "runs": n,
                    "mean": mean,
                    "ci_low": mean - half,
                    "ci_high": mean + half,
                    "p": p,
                    "d": d_,
                }
            )
        )
    columns = ["source", "pair", "epoch", "runs", "mean", "ci_low", "ci_high", "p", "d"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _existence_rows(claim: str, cells: pd.DataFrame, units: Units, describe, check=None) -> list[dict]:
    """One row per source from per-cell tests that share one Holm family; ``describe(part) -> (fields, best)``,
    ``check(best) -> text`` an independent check of the best cell for the note."""
    cells = cells.assign(p_holm=holm(cells["p"].to_numpy()))
    m = int(cells["p"].notna().sum()) or max(len(cells), 1)  # the tests attempted, where none could run
    rows = []
    for source in sorted(units.pairs):
        part = cells[cells["source"] == source]
        r = units.replicates[source]
        test = PEAK_TEST if claim == "4a" else DIP_TEST
        fields, best = describe(part)
        pilot = float(best["d"]) if best is not None and "d" in best else np.nan
        design = ONE_SIDED if claim == "4a" else ONE_SAMPLE
        family = Family(f"claim {claim}", test, design, "replicate run", r, m, pilot_d=pilot)
        n_sig = int(((part["p_holm"] < ALPHA) & fields.pop("_qualifies")).sum())
        rows.append(
            _row(
                claim,
                "max" if claim == "4b" else "max, end",
                source,
                authors_test="none (described from the maps)",
                authors_figure="learning-curve maps" + (" and metric plots" if claim == "4b" else ""),
                our_test=f"per class pair and epoch, over replicate runs; Holm over {m} cells",
                test=test,
                unit="replicate run",
                n=f"{units.per_pair(source)}, {part['epoch'].nunique()} epochs",
                p_value=float(best["p"]) if best is not None else np.nan,
                p_holm=float(best["p_holm"]) if best is not None else np.nan,
                note=f"{n_sig} of {len(part)} cells Holm-significant; "
                + fields.pop("_note")
                + (f"; {check(best)}" if check is not None and best is not None else ""),
                _family=family,
                _holm_done=True,
                **fields,
            )
        )
    return rows


def _describe_peaks(part: pd.DataFrame):
    best = part.loc[part["p_holm"].idxmin()] if part["p_holm"].notna().any() else None
    fields = {"_qualifies": part["share"] > 0.5, "_note": "", "_direction": +1}
    if best is not None:
        fields.update(
            estimate=float(best["share"]),
            statistic=f"{int(best['below'])} of {int(best['runs'])} curves",
            _note=f"estimate: share of curves ending below their peak at {best['pair']}, epoch {int(best['epoch'])} "
            f"(mean max - end there {best['drop']:.4f}); over all cells of the source the share is "
            f"{part['below'].sum() / part['runs'].sum():.3f}",
        )
    return fields, best


def _describe_dips(part: pd.DataFrame):
    drops = part[part["mean"] < 0]
    best = drops.loc[drops["p_holm"].idxmin()] if drops["p_holm"].notna().any() else None
    fields = {"_qualifies": part["mean"] < 0, "_note": "no step of any class pair has a negative mean"}
    if best is not None:
        fields.update(
            estimate=float(best["mean"]),
            ci_low=float(best["ci_low"]),
            ci_high=float(best["ci_high"]),
            statistic=f"d = {best['d']:.2f} over {int(best['runs'])} runs",
            _direction=-1,
            _note=f"estimate: the drop of {best['pair']} from epoch {int(best['epoch']) - 1} to {int(best['epoch'])}; "
            f"{int(((part['p_holm'] < ALPHA) & (part['mean'] > 0)).sum())} cells are Holm-significant rises",
        )
    return fields, best


def _non_monotonic_rows(table: pd.DataFrame, units: Units) -> list[dict]:
    real = table[table["labels"] == "real"]
    if units.epochs < 2 or real.empty:
        return [
            _untestable(c, "max", s, "needs at least 2 epochs", test=t)
            for c, t in (("4a", PEAK_TEST), ("4b", DIP_TEST))
            for s in sorted(units.pairs)
        ]

    def signed_rank(best) -> str:
        d = real[(real["source"] == best["source"]) & (real["pair"] == best["pair"])]
        wide = d.pivot_table(index="run", columns="epoch", values="max")
        change = (wide[best["epoch"]] - wide[best["epoch"] - 1]).dropna().to_numpy()
        if change.size < 2 or not np.any(change != 0):
            return ""
        return f"check: exact signed-rank p of that step {_fmt_p(float(sps.wilcoxon(change).pvalue))}"

    return _existence_rows("4a", _peak_cells(real), units, _describe_peaks) + _existence_rows(
        "4b", _dip_cells(real), units, _describe_dips, signed_rank
    )


# --- claim 5: real vs shuffled labels --------------------------------------------------------------------

LABELS_TEST = (
    "Welch's unequal-variance t test of each run's mean over epochs: the class-pair means of the real-label "
    "runs against the shuffled-label runs of the source (shuffled - real)."
)


def merged_null_share(table: pd.DataFrame) -> dict[str, float]:
    """Per source: the share of shuffled-label rows whose tmax is off the 1/T grid of single curves.

    T is taken from the real runs of the source (the smallest tmax there is 1/T when any curve peaks at the
    first slice; otherwise the grid is inferred from the spacing of their values). A row off that grid
    cannot come from one curve of T slices: each row of the authors' null table is five pair curves joined
    end to end, 5T slices (docs/science.md)."""
    out = {}
    for source, d in table.groupby("source"):
        real = d.loc[d["labels"] == "real", "tmax"].to_numpy(dtype=np.float64)
        null = d.loc[d["labels"] != "real", "tmax"].to_numpy(dtype=np.float64)
        if real.size == 0 or null.size == 0:
            continue
        values = np.unique(np.round(real, 12))
        step = float(np.min(np.diff(values))) if values.size > 1 else float(values[0])
        T = int(round(1.0 / step)) if step > 0 else 0
        if T <= 0 or T > 100_000 or np.any(np.abs(real * T - np.round(real * T)) > 1e-6):
            continue  # the real runs are not on a 1/T grid themselves: nothing to compare with
        off = np.abs(null * T - np.round(null * T)) > 1e-6
        out[str(source)] = float(np.mean(off))
    return out


JOINED_NOTE = (
    "{share:.0%} of the shuffled rows have tmax off the 1/T grid of a single curve: each row is several pair "
    "curves joined end to end (the authors' null table joins five), so max is the maximum over all of them "
    "(biased upward) and tmax lies on a 1/(5T) grid: not comparable with single runs"
)


def _welch(real_units: np.ndarray, shuffled: np.ndarray) -> dict:
    res = sps.ttest_ind(shuffled, real_units, equal_var=False)
    ci = res.confidence_interval(0.95)
    diff = float(shuffled.mean() - real_units.mean())
    spread = np.sqrt((shuffled.var(ddof=1) + real_units.var(ddof=1)) / 2)
    return {
        "estimate": diff,
        "ci_low": float(ci.low),
        "ci_high": float(ci.high),
        "p_value": float(res.pvalue),
        "statistic": f"t({res.df:.1f}) = {res.statistic:.3g}",
        "_d": diff / spread if spread > 0 else np.nan,
        "_sd": (float(real_units.std(ddof=1)), float(shuffled.std(ddof=1))),
    }


def _labels_model_note(mixed, metric: str, model: str) -> list[str]:
    lr = _of(mixed.lrt, metric, model)
    if not len(lr):
        return []
    lr = lr.iloc[0]
    return [
        f"check (equal run variances): {model} LRT chi^2({int(lr['df'])}) = {lr['chisq']:.2f}, "
        f"p {_fmt_p(float(lr['p_value']))}"
    ]


def _labels_row(table, mixed, ols, units: Units, source: str, metric: str, joined: float) -> dict:
    sub = table[table["source"] == source]
    n_pairs, n_shuffled = units.pairs.get(source, 0), units.shuffled.get(source, 0)
    base = {
        "authors_test": "lm(dv ~ labels) within the source, rows as independent",
        "authors_result": _ols_text(ols, metric, f"labels_{source}"),
        "authors_figure": "maps and metric plots of real vs shuffled runs",
        "our_test": "run means over epochs; Welch t (unequal variances)",
        "test": LABELS_TEST,
        "unit": "class pair (real) / shuffled run",
        "n": f"{n_pairs} class pairs vs {n_shuffled} shuffled runs",
    }
    if n_shuffled == 0:
        return _untestable("5", metric, source, "no shuffled-label runs for this source", **base)
    if joined > 0.5 and metric in ("max", "tmax"):
        return _untestable("5", metric, source, JOINED_NOTE.format(share=joined), **base)
    per_run = sub.groupby(["labels", "pair", "run"])[metric].mean().reset_index()
    real_units = per_run[per_run["labels"] == "real"].groupby("pair")[metric].mean().to_numpy()
    shuffled = per_run.loc[per_run["labels"] != "real", metric].to_numpy()
    family = Family("claim 5", LABELS_TEST, TWO_GROUPS, "shuffled run", n_shuffled, 0, n_other=n_pairs)
    if real_units.size < 2 or shuffled.size < 2:
        blocked = "Welch's test needs at least 2 units on each side"
        return _row("5", metric, source, **base, _family=family, _blocked=blocked, note=blocked)
    found = _welch(real_units, shuffled)
    sd_real, sd_shuffled = found.pop("_sd")
    family = Family(
        "claim 5", LABELS_TEST, TWO_GROUPS, "shuffled run", n_shuffled, 0, n_other=n_pairs, pilot_d=found.pop("_d")
    )
    rank_sum = sps.mannwhitneyu(
        shuffled, real_units, method="exact" if real_units.size + shuffled.size <= 60 else "auto"
    )
    notes = [
        f"SD real class-pair means {sd_real:.3g}, shuffled runs {sd_shuffled:.3g}",
        f"check: exact rank-sum p {_fmt_p(float(rank_sum.pvalue))}",
    ]
    if joined > 0.5:
        notes.append(
            f"{joined:.0%} of the shuffled rows join several pair curves end to end: their start is the first "
            "curve's and their end the last curve's, single-curve values"
        )
    notes += _labels_model_note(mixed, metric, f"labels_{source}_slope")
    blocked = "" if sd_shuffled > 0 else "the shuffled runs do not vary (identical runs?)"
    return _row("5", metric, source, **base, **found, note="; ".join(notes), _family=family, _blocked=blocked)


def _labels_rows(table, mixed, ols, units: Units) -> list[dict]:
    joined = merged_null_share(table)
    return [
        _labels_row(table, mixed, ols, units, source, metric, joined.get(source, 0.0))
        for source in sorted(table["source"].unique())
        for metric in METRICS
    ]


# ---------------------------------------------------------------------------
# families, floors and verdicts
# ---------------------------------------------------------------------------


def _family_key(row: dict) -> str:
    return f"{row['claim']}:{row['role'].split(':')[0]}"


def _shows_the_claim(row: dict) -> bool:
    """Significant after Holm, the sign the claim states, and nothing keeps the row from a verdict."""
    fam = row["_family"]
    return bool(
        np.isfinite(row["p_holm"])
        and row["p_holm"] < ALPHA
        and _right_sign(row)
        and not row["_blocked"]
        and (fam is None or fam.decidable)
    )


def _right_sign(row: dict) -> bool:
    return bool(row["_direction"] == 0 or np.sign(row["estimate"]) == row["_direction"])


def _adjust(rows: list[dict]) -> None:
    """Holm within each claim's family (primary and secondary rows apart); each row's floor at the family's
    size; the family's pilot effect, the median |d| of its rows (the rule's, for every row of it); and the
    effect it has shown, the median |d| of its rows that are significant the claimed way (``_shown_d``: the
    power check of the others)."""
    families: dict[str, list[dict]] = {}
    for row in rows:
        if row["_family"] is not None and row["verdict"] != "not testable here":
            families.setdefault(_family_key(row), []).append(row)
    for members in families.values():
        for row, p in zip(members, holm([r["p_value"] for r in members])):
            fam = row["_family"]
            m = fam.m or len(members)  # m == 0: the family is the claim's rows
            row["_own_d"] = fam.pilot_d
            row["_family"] = Family(fam.family, fam.test, fam.design, fam.unit, fam.n, m, fam.n_other, fam.k)
            if not row["_holm_done"]:
                row["p_holm"] = p
            row["p_floor_holm"] = row["_family"].floor_holm
        own = [r["_own_d"] for r in members]
        pilot = shown_effect(own, [True] * len(own))  # every row's effect: the family's pilot
        shown = shown_effect(own, [_shows_the_claim(r) for r in members])
        for row in members:
            fam = row["_family"]
            row["_family"] = Family(fam.family, fam.test, fam.design, fam.unit, fam.n, fam.m, fam.n_other, fam.k, pilot)
            row["_shown_d"] = shown


def _verdict(row: dict) -> str:
    if row["verdict"]:
        return row["verdict"]
    if row["role"] != "primary":
        return "secondary (no verdict)"
    fam = row["_family"]
    if fam is not None and not fam.decidable:
        return fam.underpowered(row["n"])
    if row["_blocked"]:
        return f"{UNDERPOWERED} (n = {row['n']}; {row['_blocked']})"
    if _shows_the_claim(row):
        return "replicates"
    significant = np.isfinite(row["p_holm"]) and row["p_holm"] < ALPHA
    shown = row.get("_shown_d", np.nan)
    if not significant and _right_sign(row) and fam is not None and fam.lacks_power_at(shown):
        return fam.underpowered_for_power(shown, row["n"])
    return "does not replicate"


def _rows(table: pd.DataFrame, mixed, ols) -> list[dict]:
    units = Units.of(table)
    rows = (
        _source_rows(table, mixed, ols, units)
        + _pair_rows(mixed, ols, units)
        + _non_monotonic_rows(table, units)
        + _labels_rows(table, mixed, ols, units)
    )
    rows.sort(key=lambda r: (CLAIM_ORDER.index(r["claim"]), r["role"] != "primary"))
    _adjust(rows)
    for row in rows:
        row["verdict"] = _verdict(row)
    return rows


def replication_table(table: pd.DataFrame, mixed, ols: pd.DataFrame | None) -> pd.DataFrame:
    """The replication table (columns ``COLUMNS``), verdicts by ``RULE``."""
    return verdict_tables(table, mixed, ols)[0]


def replicate_rule(table: pd.DataFrame, mixed, ols: pd.DataFrame | None = None) -> pd.DataFrame:
    """The replicate rule's numbers for this table: one row per family of primary tests (the claim's test, its
    unit, n, the tests in its Holm family, the smallest p before and after Holm, the units it needs to reach
    0.05 and, from the median pilot effect of the family's rows, for power 0.8)."""
    return verdict_tables(table, mixed, ols)[1]


def verdict_tables(table: pd.DataFrame, mixed, ols: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The replication table and the replicate rule's table, from one pass over the claims."""
    rows = _rows(table, mixed, ols)
    frame = pd.DataFrame(rows)[COLUMNS] if rows else pd.DataFrame(columns=COLUMNS)
    return frame, _rule_of(rows)


def _rule_of(rows: list[dict]) -> pd.DataFrame:
    """One row per family of primary tests: the fewest units any of its rows has decide the floor (every row
    of a family carries the family's size and pilot effect, ``_adjust``)."""
    families: dict[str, list[Family]] = {}
    for row in rows:
        if row["_family"] is not None and row["role"] == "primary" and row["verdict"] != "not testable here":
            families.setdefault(row["_family"].family, []).append(row["_family"])
    return rule_table([min(members, key=lambda f: (f.n, f.n_other or 0)) for members in families.values()])
