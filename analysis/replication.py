"""Which of the study's claims replicate: one row per claim (and metric / source), with a verdict.

The claims are those of docs/science.md section 1 (Jiang & Dale 2025, abstract
and results). For each: the authors' test (their least squares, as
reproduced on this table in ``ols.csv``), our test (from the mixed models
whose random effects match the design, ``analysis.stats``), the estimate with
its 95% interval and p, and a verdict by ``RULE``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from .stats import holm

__all__ = ["RULE", "replication_table", "merged_null_share"]

ALPHA = 0.05

RULE = (
    "A claim's rows form one family; their p-values are Holm-adjusted within it (p_holm). Verdict: "
    "'replicates' when p_holm < 0.05 and the estimate has the sign the authors state (where they state one); "
    "'does not replicate' when p_holm >= 0.05 or the sign is the opposite; 'not testable here' when the table "
    "lacks what the test needs (a second source, shuffled-label runs, enough epochs), when the shuffled runs "
    "are not comparable for that metric (the authors' null table merges five curves per row), when the claim "
    "is an interpretation without a test, or when the model the test rests on did not converge. Singular "
    "fits (a variance component estimated as zero) keep their verdict and are flagged in the note."
)

_COLUMNS = [
    "claim",
    "statement",
    "metric",
    "source",
    "authors_test",
    "authors_result",
    "authors_figure",
    "our_test",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "verdict",
    "note",
]

_METRICS = ("start", "end_minus_start", "max", "tmax")


def _fmt_p(p: float) -> str:
    """'= 0.27', '= 3.4e-16' or '< 1e-300', to follow 'p '."""
    if not np.isfinite(p):
        return "n/a"
    return f"= {p:.2g}" if p >= 1e-300 else "< 1e-300"


def _ols_text(ols: pd.DataFrame, metric: str, model: str) -> str:
    if ols is None or len(ols) == 0:
        return ""
    r = ols[(ols["metric"] == metric) & (ols["model"] == model)]
    if r.empty:
        return ""
    r = r.iloc[0]
    return (
        f"F({int(r['df_model'])}, {int(r['df_resid'])}) = {r['f']:.4g}, p {_fmt_p(r['p_value'])}, "
        f"adj. R^2 = {r['adj_r2']:.4f}"
    )


def merged_null_share(table: pd.DataFrame) -> dict[str, float]:
    """Per source: the share of shuffled-label rows whose tmax is off the 1/T grid of single curves.

    T is taken from the real runs of the source (the smallest tmax there is 1/T
    when any curve peaks at the first slice; otherwise the grid is inferred
    from the spacing of their values). A row off that grid cannot come from
    one curve of T slices: the authors' null table averages five (docs/science.md).
    """
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


def _t_interval(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, 95% t interval and the two-sided one-sample t test p of a sample."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return float(np.mean(v)) if v.size else np.nan, np.nan, np.nan, np.nan
    m, se = float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))
    q = float(sps.t.ppf(0.975, v.size - 1))
    if se == 0:
        return m, m, m, (0.0 if m != 0 else 1.0)
    return m, m - q * se, m + q * se, float(2 * sps.t.sf(abs(m / se), v.size - 1))


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


def _row(
    claim,
    statement,
    metric,
    source,
    authors_test,
    authors_result,
    figure,
    our_test,
    est=np.nan,
    lo=np.nan,
    hi=np.nan,
    p=np.nan,
    direction=0,
    testable=True,
    note="",
) -> dict:
    return {
        "claim": claim,
        "statement": statement,
        "metric": metric,
        "source": source,
        "authors_test": authors_test,
        "authors_result": authors_result,
        "authors_figure": figure,
        "our_test": our_test,
        "estimate": est,
        "ci_low": lo,
        "ci_high": hi,
        "p_value": p,
        "p_holm": np.nan,
        "verdict": "" if testable else "not testable here",
        "note": note,
        "_direction": direction,
    }


def _source_rows(table, mixed, ols) -> list[dict]:
    real = table[table["labels"] == "real"]
    rows = []
    sources = sorted(real["source"].unique())
    es = mixed.effect_sizes
    lrt = mixed.lrt
    models = mixed.models
    two = len(sources) == 2
    for claim, statement, metrics, direction in (
        ("1", "The metric differs by data source (authors: all p < .0001)", _METRICS, 0),
        (
            "3",
            "Larger information gain for sentences: end - start is larger for sentence than gesture",
            ("end_minus_start",),
            +1,
        ),
    ):
        for metric in metrics:
            authors = _ols_text(ols, metric, "source")
            figure = (
                "the metric by data source (their metric plots and maps, gesture vs sentence)"
                if claim == "1"
                else "end - start by data source (their metric plots)"
            )
            our = (
                "source_pairs: metric ~ source * epoch + (1 + epoch | pair) + (1 + epoch | run), REML; "
                "sentence - gesture at the mean epoch, t on (class pairs - 2) df"
            )
            if not two:
                rows.append(
                    _row(
                        claim,
                        statement,
                        metric,
                        "",
                        "lm(dv ~ source)",
                        authors,
                        figure,
                        our,
                        testable=False,
                        note="the table holds one data source",
                    )
                )
                continue
            r = (
                es[
                    (es["metric"] == metric)
                    & (es["model"] == "source_pairs")
                    & es["effect"].str.endswith("at mean epoch")
                ]
                if len(es)
                else es
            )
            m = models[(models["metric"] == metric) & (models["model"] == "source_pairs")] if len(models) else models
            if r is None or len(r) == 0 or len(m) == 0:
                rows.append(
                    _row(
                        claim,
                        statement,
                        metric,
                        "",
                        "lm(dv ~ source)",
                        authors,
                        figure,
                        our,
                        testable=False,
                        note="model source_pairs not fitted (see Notes)",
                    )
                )
                continue
            r, m = r.iloc[0], m.iloc[0]
            n_pairs = int(m["n_groups"])
            dof = max(n_pairs - 2, 1)
            se = float(r["std_error"])
            est = float(r["estimate"])
            q = float(sps.t.ppf(0.975, dof))
            p = float(2 * sps.t.sf(abs(est / se), dof)) if se > 0 else np.nan
            notes = [f"{n_pairs} class pairs; z-based p {_fmt_p(float(r['p_value']))}"]
            lr = lrt[(lrt["metric"] == metric) & (lrt["model"] == "source_pairs")] if len(lrt) else lrt
            if len(lr):
                lr = lr.iloc[0]
                notes.append(
                    f"LRT of source and source:epoch (ML, df {int(lr['df'])}): chi^2 = {lr['chisq']:.2f}, "
                    f"p {_fmt_p(float(lr['p_value']))}"
                )
            welch = _pair_means_welch(real, metric)
            if welch:
                notes.append(welch)
            if str(m["on_boundary"]):
                notes.append(f"singular fit: {m['on_boundary']}")
            converged = bool(m["converged"])
            if not converged:
                notes.append("the source_pairs fit did not converge")
            rows.append(
                _row(
                    claim,
                    statement,
                    metric,
                    "",
                    "lm(dv ~ source), rows as independent",
                    authors,
                    figure,
                    our,
                    est,
                    est - q * se,
                    est + q * se,
                    p,
                    direction,
                    converged,
                    "; ".join(notes),
                )
            )
    return rows


def _pair_rows(table, mixed, ols) -> list[dict]:
    real = table[table["labels"] == "real"]
    rows = []
    statement = "The metric differs between class pairs (class distinctions; authors: all p < .0001)"
    lrt, con, models = mixed.lrt, mixed.contrasts, mixed.models
    for source in sorted(real["source"].unique()):
        for metric in _METRICS:
            model = f"pair_{source}_slope"
            authors = _ols_text(ols, metric, f"epoch_vs_epoch_pair_{source}")
            our = (
                f"{model}: metric ~ pair * epoch + (1 + epoch | run), LRT (ML) against metric ~ epoch + "
                "(1 + epoch | run); estimate = largest class-pair contrast at the mean epoch"
            )
            lr = lrt[(lrt["metric"] == metric) & (lrt["model"] == model)] if len(lrt) else lrt
            if len(lr) == 0:
                rows.append(
                    _row(
                        "2",
                        statement,
                        metric,
                        source,
                        "lm(dv ~ epoch) vs lm(dv ~ epoch * class)",
                        authors,
                        "learning-curve maps per class pair",
                        our,
                        testable=False,
                        note="one class pair only, or the model was not fitted",
                    )
                )
                continue
            lr = lr.iloc[0]
            c = (
                con[(con["metric"] == metric) & (con["model"] == model) & (con["family"] == "level_at_mean_epoch")]
                if len(con)
                else con
            )
            est = lo = hi = np.nan
            notes = [f"LRT chi^2({int(lr['df'])}) = {lr['chisq']:.1f}"]
            if len(c):
                top = c.loc[c["estimate"].abs().idxmax()]
                sign = 1.0 if top["estimate"] >= 0 else -1.0
                est, lo, hi = sign * top["estimate"], sign * top["ci_low"], sign * top["ci_high"]
                if sign < 0:
                    lo, hi = hi, lo
                notes.append(
                    f"largest contrast: {top['level_a'] if sign > 0 else top['level_b']} - "
                    f"{top['level_b'] if sign > 0 else top['level_a']}"
                )
                for family in ("level_at_mean_epoch", "epoch_slope"):
                    f = con[(con["metric"] == metric) & (con["model"] == model) & (con["family"] == family)]
                    notes.append(
                        f"{int((f['p_holm'] < ALPHA).sum())} of {len(f)} contrasts Holm-significant "
                        f"({family.replace('_', ' ')})"
                    )
            m = models[(models["metric"] == metric) & (models["model"] == model)]
            converged = bool(lr["converged"]) and (len(m) == 0 or bool(m.iloc[0]["converged"]))
            if len(m) and str(m.iloc[0]["on_boundary"]):
                notes.append(f"singular fit: {m.iloc[0]['on_boundary']}")
            rows.append(
                _row(
                    "2",
                    statement,
                    metric,
                    source,
                    "lm(dv ~ epoch) vs lm(dv ~ epoch * class), nested F",
                    authors,
                    "learning-curve maps and metric plots per class pair",
                    our,
                    est,
                    lo,
                    hi,
                    float(lr["p_value"]),
                    0,
                    converged,
                    "; ".join(notes),
                )
            )
    rows.append(
        _row(
            "2b",
            "A prominent role of spatial semantics in gesture learning",
            "",
            "gesture",
            "none (an interpretation of which gesture class pairs differ)",
            "",
            "learning-curve maps of gesture pairs",
            "none",
            testable=False,
            note="an interpretation, not a hypothesis with a test; the class-pair "
            "contrasts (contrasts.csv) show which gesture pairs differ",
        )
    )
    return rows


def _within_trial_rows(table) -> list[dict]:
    real = table[table["labels"] == "real"]
    statement = "Non-monotonic within a trial: the curve can peak before the end (tmax < 1, max > end)"
    rows = []
    for source, d in real.groupby("source"):
        share = (d["tmax"] < 1.0 - 1e-12).groupby(d["pair"]).mean().to_numpy()
        est, lo, hi, p = _t_interval(share)
        gap = float((d["max"] - d["end"]).mean())
        rows.append(
            _row(
                "4a",
                statement,
                "tmax",
                source,
                "none (described from the maps)",
                "",
                "learning-curve maps (peaks before the last time slice)",
                "share of run x epoch curves whose first maximum comes before the last slice; mean over "
                "class pairs, t interval over class pairs",
                est,
                lo,
                hi,
                p,
                +1,
                True,
                f"{d['pair'].nunique()} class pairs; mean max - end = {gap:.4f}",
            )
        )
    return rows


def _across_epoch_rows(table, metric: str = "max", windows: int = 5) -> list[dict]:
    """Dips of the developmental trajectory: a window of epochs with a lower mean than the one before."""
    real = table[table["labels"] == "real"]
    statement = (
        "Non-monotonic across epochs: the developmental trajectory can dip (a later block of epochs "
        "lower than the one before)"
    )
    rows = []
    for source, d in real.groupby("source"):
        epochs = np.sort(d["epoch"].unique())
        test = (
            f"{metric} averaged over {windows} consecutive blocks of epochs per run; per class pair a paired "
            "t test (over replicates) of each block against the one before; estimate = the largest drop; "
            "p = its Holm-adjusted p over all pairs x block steps of the source"
        )
        if epochs.size < 2 * windows:
            rows.append(
                _row(
                    "4b",
                    statement,
                    metric,
                    source,
                    "none (described from the maps)",
                    "",
                    "learning-curve maps and metric plots",
                    test,
                    testable=False,
                    note=f"needs at least {2 * windows} epochs",
                )
            )
            continue
        edges = [chunk[0] for chunk in np.array_split(epochs, windows)]
        d = d.assign(block=np.searchsorted(edges, d["epoch"].to_numpy(), side="right") - 1)
        per_run = d.groupby(["pair", "run", "block"])[metric].mean().unstack("block")
        steps = []
        for pair, g in per_run.groupby(level="pair"):
            for k in range(1, windows):
                diff = (g[k] - g[k - 1]).to_numpy()
                m, lo, hi, p = _t_interval(diff)
                steps.append((pair, k, m, lo, hi, p))
        if not steps:
            continue
        p_adj = holm([s[5] for s in steps])
        worst = int(np.argmin([s[2] for s in steps]))
        pair, k, m, lo, hi, _ = steps[worst]
        n_sig = int(sum(1 for s, pa in zip(steps, p_adj) if s[2] < 0 and pa < ALPHA))
        rows.append(
            _row(
                "4b",
                statement,
                metric,
                source,
                "none (described from the maps)",
                "",
                "learning-curve maps and metric plots",
                test,
                m,
                lo,
                hi,
                float(p_adj[worst]),
                -1,
                True,
                f"largest drop: {pair}, block {k} vs {k - 1}; {n_sig} of {len(steps)} block steps are "
                "Holm-significant drops; p in p_value is already Holm-adjusted within the source",
            )
        )
    return rows


def _labels_rows(table, mixed, ols) -> list[dict]:
    statement = "Real labels differ from shuffled (null) labels"
    rows = []
    merged = merged_null_share(table)
    es, lrt, models = mixed.effect_sizes, mixed.lrt, mixed.models
    for source in sorted(table["source"].unique()):
        sub = table[table["source"] == source]
        for metric in _METRICS:
            model = f"labels_{source}_slope"
            authors = _ols_text(ols, metric, f"labels_{source}")
            our = (
                f"{model}: metric ~ labels * epoch + (1 + epoch | run), REML; shuffled - real at the mean epoch "
                "(Wald z); LRT (ML, df 2) in the note"
            )
            base = (
                "5",
                statement,
                metric,
                source,
                "lm(dv ~ labels) within the source, rows as independent",
                authors,
                "maps and metric plots of real vs shuffled runs",
                our,
            )
            if sub["labels"].nunique() < 2:
                rows.append(_row(*base, testable=False, note="no shuffled-label runs for this source"))
                continue
            share = merged.get(source, 0.0)
            if share > 0.5 and metric in ("max", "tmax"):
                rows.append(
                    _row(
                        *base,
                        testable=False,
                        note=(
                            f"{share:.0%} of the shuffled rows have tmax off the 1/T grid of a single curve: each row "
                            "merges several curves (the authors' null table averages five), so max is biased upward and "
                            "tmax is not comparable with single runs"
                        ),
                    )
                )
                continue
            r = es[(es["metric"] == metric) & (es["model"] == model) & es["effect"].str.endswith("at mean epoch")]
            m = models[(models["metric"] == metric) & (models["model"] == model)]
            if len(r) == 0 or len(m) == 0:
                rows.append(_row(*base, testable=False, note=f"model {model} not fitted (see Notes)"))
                continue
            r, m = r.iloc[0], m.iloc[0]
            notes = [f"{(sub['labels'] != 'real').groupby(sub['run']).first().sum()} shuffled runs"]
            if share > 0.5:
                notes.append(
                    f"{share:.0%} of shuffled rows merge several curves: their start and end are means "
                    "of curves, so their spread is smaller than a single run's"
                )
            lr = lrt[(lrt["metric"] == metric) & (lrt["model"] == model)]
            if len(lr):
                lr = lr.iloc[0]
                notes.append(f"LRT chi^2({int(lr['df'])}) = {lr['chisq']:.2f}, p {_fmt_p(float(lr['p_value']))}")
            if str(m["on_boundary"]):
                notes.append(f"singular fit: {m['on_boundary']}")
            rows.append(
                _row(
                    *base,
                    float(r["estimate"]),
                    float(r["ci_low"]),
                    float(r["ci_high"]),
                    float(r["p_value"]),
                    0,
                    bool(m["converged"]),
                    "; ".join(notes),
                )
            )
    return rows


def replication_table(table: pd.DataFrame, mixed, ols: pd.DataFrame | None) -> pd.DataFrame:
    """The replication table (columns ``_COLUMNS``), verdicts by ``RULE``."""
    rows = (
        _source_rows(table, mixed, ols)
        + _pair_rows(table, mixed, ols)
        + _within_trial_rows(table)
        + _across_epoch_rows(table)
        + _labels_rows(table, mixed, ols)
    )
    order = {c: i for i, c in enumerate(("1", "2", "2b", "3", "4a", "4b", "5"))}
    rows.sort(key=lambda r: order[r["claim"]])  # stable: metric and source order kept within a claim
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=_COLUMNS)
    for claim, idx in frame.groupby("claim").groups.items():
        sub = frame.loc[idx]
        testable = sub["verdict"] != "not testable here"
        if claim == "4b":  # already Holm-adjusted within each source
            frame.loc[sub.index[testable], "p_holm"] = sub.loc[testable, "p_value"]
        else:
            frame.loc[sub.index[testable], "p_holm"] = holm(sub.loc[testable, "p_value"].to_numpy())
    for i, r in frame.iterrows():
        if r["verdict"]:
            continue
        significant = np.isfinite(r["p_holm"]) and r["p_holm"] < ALPHA
        right_sign = r["_direction"] == 0 or np.sign(r["estimate"]) == r["_direction"]
        frame.at[i, "verdict"] = "replicates" if significant and right_sign else "does not replicate"
    return frame[_COLUMNS]
