"""One self-contained ``report.html``: what to read first, figures and tables with captions.

Figures are embedded as base64 PNG; the page has no external resources.
"""

from __future__ import annotations

import base64
import html
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["ReportInput", "render_report"]

_BOUNDARY_HINT = "The MLE may be on the boundary of the parameter space"


@dataclass
class ReportInput:
    """Everything the report shows."""

    title: str
    source_description: str
    table: pd.DataFrame
    ols: pd.DataFrame
    mixed: object  # analysis.stats.StatsResults
    figures: dict[str, bytes]
    skipped: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    smooth: bool = True
    # companion-study sections: {"title", "html", "tables", "study"} (analysis/companion)
    companion: list[dict] = field(default_factory=list)
    # the replication table (analysis.replication) and the rule its verdicts follow
    replication: pd.DataFrame | None = None
    replication_rule: str = ""
    # diagnostics sections, rendered right after the replication section: {"title", "html", "tables":
    # {name: DataFrame}} (training health, probe tie share, ...); each table is shown complete
    diagnostics: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------


def _fmt_p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    p = float(p)
    if p == 0.0:
        return "< 1e-300"
    if p < 1e-3:
        return f"{p:.1e}"
    return f"{p:.3f}"


def _fmt_num(x) -> str:
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if math.isnan(x):
            return ""
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.3e}"
        return f"{x:.4g}"
    return str(x)


#: Tables longer than this show their first rows and link the CSV file that holds them all.
LONG_TABLE_ROWS = 150


def _table(
    frame: pd.DataFrame,
    p_columns=("p_value", "p_holm"),
    max_rows: int | None = None,
    csv: str | None = None,
    wrap: bool = False,
) -> str:
    """An HTML table; every row unless longer than ``max_rows`` (default LONG_TABLE_ROWS), then ``csv`` linked."""
    if frame is None or len(frame) == 0:
        return "<p class='muted'>(no rows)</p>"
    limit = LONG_TABLE_ROWS if max_rows is None else max_rows
    shown = frame.head(limit)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for column, value in zip(shown.columns, row):
            text = _fmt_p(value) if column in p_columns else _fmt_num(value)
            numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            cells.append(f"<td class='num'>{html.escape(text)}</td>" if numeric else f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if len(frame) > limit:
        where = f"<a href='{html.escape(csv)}'><code>{html.escape(csv)}</code></a>" if csv else "the CSV file"
        more = (
            f"<p class='muted'>The first {limit} of {len(frame)} rows; all of them are in {where} (next to "
            "this report).</p>"
        )
    cls = "data wrap" if wrap else "data"
    return f"<div class='tablebox'><table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>{more}"


def _figure(figures: dict[str, bytes], name: str, caption: str) -> str:
    data = figures.get(name)
    if data is None:
        return ""
    b64 = base64.b64encode(data).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'/>"
        f"<figcaption><b>{html.escape(name)}</b>. {caption}</figcaption></figure>"
    )


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------


def _overview(inp: ReportInput) -> str:
    t = inp.table
    real = t[t["labels"] == "real"]
    items = [
        f"Input: {html.escape(inp.source_description)}",
        f"{t['run'].nunique()} runs, {len(t)} run x epoch rows; data sources: "
        f"{html.escape(', '.join(sorted(t['source'].unique())))}; labels: "
        f"{html.escape(', '.join(sorted(t['labels'].unique())))}",
    ]
    for source, d in real.groupby("source"):
        reps = d.groupby("pair")["run"].nunique()
        items.append(
            f"{html.escape(source)} (real labels): {d['pair'].nunique()} class pairs, "
            f"{reps.min()}-{reps.max()} replicates per pair, epochs {d['epoch'].min()}-{d['epoch'].max()}"
        )
    items.append(
        "Curves smoothed with Tukey's 3RS3R (R's smooth()) before the metrics were taken."
        if inp.smooth
        else "Metrics taken on the raw (unsmoothed) curves."
    )
    if inp.skipped is not None and len(inp.skipped):
        items.append(f"<b>{len(inp.skipped)} run folder(s) skipped</b> (see Warnings).")
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


_KEY_ORDER = ("source_pairs",)


def _key_results(inp: ReportInput) -> str:
    lrt = inp.mixed.lrt
    if lrt is None or len(lrt) == 0:
        return "<p class='muted'>No likelihood-ratio tests could be run on this table.</p>"
    key = lrt[lrt["model"].isin(_KEY_ORDER) | lrt["model"].str.endswith("_slope")]
    if key.empty:
        return "<p class='muted'>No likelihood-ratio tests of the key models could be run on this table.</p>"
    cells = key.copy()
    singular = cells["singular"].fillna("").astype(str) if "singular" in cells else pd.Series("", index=cells.index)
    cells["cell"] = [
        (
            f"&chi;&sup2;({int(df)}) = {chisq:.1f}, p {html.escape(('= ' + _fmt_p(p)) if p > 0 else '< 1e-300')}"
            + ("" if conv else " (did not converge)")
            + (" (singular)" if sing else "")
        )
        if np.isfinite(chisq)
        else "failed"
        for chisq, df, p, conv, sing in zip(
            cells["chisq"], cells["df"].fillna(0), cells["p_value"].fillna(1), cells["converged"].astype(bool), singular
        )
    ]
    pivot = cells.pivot(index="metric", columns="model", values="cell")
    order = [m for m in _KEY_ORDER if m in pivot.columns]
    order += sorted(c for c in pivot.columns if c.startswith("pair_"))
    order += sorted(c for c in pivot.columns if c.startswith("labels_"))
    pivot = pivot[order]
    head = "<th>metric</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in pivot.columns)
    rows = "".join(
        "<tr><td>" + html.escape(str(m)) + "</td>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>"
        for m, r in zip(pivot.index, pivot.fillna("").to_numpy())
    )
    return (
        "<p>Likelihood-ratio tests (ML) of the models whose random effects match the design: the factor and its "
        "interaction with epoch against epoch alone, under the same random effects. "
        "<code>source_pairs</code>: <code>metric ~ source * epoch + (1 + epoch | pair) + (1 + epoch | run)</code> "
        "(class pair coded within its source), so a source difference is judged against the spread of class "
        "pairs in level and in slope; <code>pair_&lt;source&gt;_slope</code> and "
        "<code>labels_&lt;source&gt;_slope</code>: <code>(1 + epoch | run)</code>. A small p says the factor "
        "matters somewhere (in level or in slope); the replication table above gives the size of the "
        "difference at the mean epoch. Models with random intercepts only (<code>source</code>, "
        "<code>pair_*</code>, <code>labels_*</code>, <code>source_pair_re</code>) understate the standard "
        "error of every epoch term and are kept further down for comparison only.</p>"
        f"<div class='tablebox'><table class='data wrap'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
        "</table></div>"
    )


def _replication(inp: ReportInput) -> str:
    rep = inp.replication
    if rep is None or len(rep) == 0:
        return "<p class='muted'>No replication table (the table supports none of the study's tests).</p>"
    counts = rep["verdict"].value_counts()
    summary = ", ".join(f"{n} {html.escape(v)}" for v, n in counts.items())
    body = []
    for claim, group in rep.groupby("claim", sort=False):
        first = group.iloc[0]
        body.append(
            f"<tr class='claimhead'><td colspan='7'><b>Claim {html.escape(str(claim))}.</b> "
            f"{html.escape(str(first['statement']))}<br/><span class='muted'><b>Authors:</b> "
            f"{html.escape(str(first['authors_test']))}; figure: {html.escape(str(first['authors_figure']))}. "
            f"<b>Ours:</b> {html.escape(str(first['our_test']))}.</span></td></tr>"
        )
        for r in group.itertuples(index=False):
            est = ""
            if np.isfinite(r.estimate):
                est = f"{r.estimate:+.4g}"
                if np.isfinite(r.ci_low):
                    est += f" [{r.ci_low:+.4g}, {r.ci_high:+.4g}]"
            cls = {"replicates": "yes", "does not replicate": "no"}.get(r.verdict, "na")
            where = " / ".join(x for x in (str(r.metric), str(r.source)) if x and x != "nan")
            body.append(
                f"<tr class='{cls}'><td>{html.escape(where)}</td><td>{html.escape(str(r.authors_result))}</td>"
                f"<td>{html.escape(est)}</td><td>{html.escape(_fmt_p(r.p_value))}</td>"
                f"<td>{html.escape(_fmt_p(r.p_holm))}</td><td class='verdict'>{html.escape(str(r.verdict))}</td>"
                f"<td class='note'>{html.escape(str(r.note))}</td></tr>"
            )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "metric / source",
            "authors' test on this table",
            "estimate [95% CI]",
            "p",
            "p (Holm)",
            "verdict",
            "note",
        )
    )
    return (
        f"<p>Each claim of the study (docs/science.md section 1), tested on this table: {summary}. "
        f"<b>Rule:</b> {html.escape(inp.replication_rule)} The same rows, with the full test descriptions, "
        "are in <a href='replication.csv'><code>replication.csv</code></a>.</p>"
        f"<div class='tablebox'><table class='data wrap replication'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _diagnostics(inp: ReportInput) -> list[str]:
    out = []
    # A section's html shows its summaries; its tables (per run and epoch: thousands of rows in a
    # study) are written next to the report as <name>.csv (analysis/cli.py) and linked here.
    for section in inp.diagnostics:
        parts = [f"<h2>{html.escape(str(section.get('title', 'Diagnostics')))}</h2>", str(section.get("html", ""))]
        links = [
            f"<a href='{html.escape(name)}.csv'><code>{html.escape(name)}.csv</code></a> ({len(frame)} rows)"
            for name, frame in (section.get("tables") or {}).items()
        ]
        if links:
            parts.append("<p class='muted'>Every row, next to this report: " + ", ".join(links) + ".</p>")
        out.append("".join(parts))
    return out


def _warnings(inp: ReportInput) -> str:
    parts = []
    if inp.skipped is not None and len(inp.skipped):
        reasons = inp.skipped["reason"].value_counts()
        parts.append(
            f"<h3>Skipped run folders ({len(inp.skipped)})</h3><p>These folders are not in any table or "
            "figure. Reasons: "
            + "; ".join(f"{html.escape(r)} ({n})" for r, n in reasons.items())
            + ". The list is in <code>skipped_runs.csv</code>.</p>"
            + _table(inp.skipped[["study", "run_id", "reason"]], max_rows=100)
        )
    notes = list(inp.notes) + list(getattr(inp.mixed, "notes", []))
    if notes:
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    models = inp.mixed.models
    warn_list = list(getattr(inp.mixed, "warnings", []))
    boundary = [w for w in warn_list if _BOUNDARY_HINT in w]
    other = [w for w in warn_list if _BOUNDARY_HINT not in w and "variance estimated as zero" not in w]
    if models is not None and len(models):
        failed = models[~models["converged"].astype(bool)]
        if len(failed):
            parts.append(
                "<h3>Models that did not converge</h3><p>Their coefficients are flagged "
                "(<code>converged = no</code>); those of the extra models are left out of "
                "<code>mixed_effects.csv</code>.</p>" + _table(failed[["metric", "model", "warnings"]])
            )
        singular = models[models["on_boundary"].astype(str) != ""]
        if len(singular):
            parts.append(
                "<h3>Singular fits</h3><p>A variance component estimated as zero (or a perfect "
                "intercept-slope correlation): the data do not support that part of the random-effect "
                "structure. As lme4 does, the fit is kept (its fixed effects and the likelihood-ratio "
                "test remain valid; the boundary makes the test, if anything, conservative) and flagged "
                "in the <code>singular</code> column and in the replication table's note; nothing "
                "falls back to a simpler model. Models that did not converge are listed above; a "
                "replication verdict that rests on one is 'not testable here'.</p>"
                + _table(singular[["metric", "model", "on_boundary"]])
            )
    if other:
        parts.append(
            "<h3>Convergence and fitting warnings</h3><ul>"
            + "".join(f"<li><code>{html.escape(w)}</code></li>" for w in other)
            + "</ul>"
        )
    if boundary:
        names = sorted({w.split(":")[0] for w in boundary})
        parts.append(
            f"<h3>statsmodels: &ldquo;{_BOUNDARY_HINT}&rdquo; ({len(boundary)} models)</h3><p>statsmodels issues "
            "this ConvergenceWarning whenever an estimated random-effect variance is below 0.01 in absolute "
            "units. The metrics are proportions whose variances are of order 0.001, so it fires on fits whose "
            "variances are clearly positive; the fits where a variance really is zero are listed under "
            "Singular fits. Models concerned: " + html.escape(", ".join(names)) + ".</p>"
        )
    if not parts:
        return "<p>No warnings: every run folder was read, every model converged.</p>"
    return "".join(parts)


_CAPTIONS = {
    "maps": "Learning-curve maps: each panel is one class pair; the horizontal axis is the training epoch, the "
    "vertical axis the time slice of the input sequence, the colour the accuracy of a 3-nearest-"
    "neighbour classifier on the network's hidden states at that time slice (training samples, "
    "resubstitution), averaged over replicates. One colour scale for every map figure (real and shuffled "
    "runs alike), with the probe's chance level marked on the colour bar (see the figure's note). Reading up a column shows how class information builds "
    "up within a sequence (information-processing trajectory); reading along a row shows how it changes "
    "with training (developmental trajectory).",
    "metric": "Per data source: the mean over runs (bold) with its 95% t interval over runs (band), and each class "
    "pair's mean over replicates (thin grey lines). Runs with shuffled labels dashed, with their "
    "interval. The interval treats runs as independent and so ignores the spread between class pairs; "
    "the replication table tests the source difference against it. Where each shuffled row merges "
    "several curves (the authors' null table merges five), their max is biased upward and their tmax "
    "is not comparable with single runs.",
    "tmax": "Developmental trajectory of each class pair, one panel per data source x class pair: how early the "
    "peak of the within-sequence curve comes (tmax) against how much the curve rises from first to last "
    "time slice (end - start). Each point is the mean over replicates at one epoch, coloured by epoch and "
    "joined in epoch order; the grey dots are every pair's points, for comparison.",
    "difference": "Real minus shuffled labels: the mean map of real-label runs minus the mean map of "
    "shuffled-label runs of the same source, per class pair (shuffled runs are pooled over pairs "
    "when they have no pair of their own). One diverging colour scale centred on zero for every "
    "panel; red = real labels above the shuffled ones.",
    "average": "Average learning-curve map per data source and labels (mean over class pairs and replicates), on "
    "the same colour scale as the per-pair maps; the white contour is the chance level of the probe.",
    "startmax": "Developmental trajectory of each class pair, one panel per data source x class pair: accuracy "
    "at the first time slice (start) against the peak accuracy (max), mean over replicates per epoch, "
    "coloured by epoch; grey: every pair's points.",
}


def render_report(inp: ReportInput) -> str:
    """The report as one HTML string."""
    from .figures import METRIC_LABELS

    mixed = inp.mixed
    sections = []
    sections.append(
        f"<h1>{html.escape(inp.title)}</h1><p class='muted'>Generated {time.strftime('%Y-%m-%d %H:%M')}.</p>"
    )
    sections.append("<h2>What replicates</h2>" + _replication(inp))
    sections.extend(_diagnostics(inp))
    sections.append("<h2>Overview</h2>" + _overview(inp))
    sections.append("<h2>Key results</h2>" + _key_results(inp))
    sections.append("<h2>Warnings</h2>" + _warnings(inp))

    figs = inp.figures
    fig_html = []
    for name in sorted(
        n for n in figs if n.startswith("maps_") and not n.startswith("maps_difference") and n != "maps_average.png"
    ):
        fig_html.append(_figure(figs, name, _CAPTIONS["maps"]))
    for name in sorted(n for n in figs if n.startswith("maps_difference")):
        fig_html.append(_figure(figs, name, _CAPTIONS["difference"]))
    fig_html.append(_figure(figs, "maps_average.png", _CAPTIONS["average"]))
    for name in [n for n in figs if n.startswith("metric_")]:
        metric = name[len("metric_") : -4]
        fig_html.append(
            _figure(figs, name, f"{html.escape(METRIC_LABELS.get(metric, metric))}. " + _CAPTIONS["metric"])
        )
    fig_html.append(_figure(figs, "trajectory_tmax_vs_end_minus_start.png", _CAPTIONS["tmax"]))
    fig_html.append(_figure(figs, "trajectory_start_vs_max.png", _CAPTIONS["startmax"]))
    if any(fig_html):
        sections.append("<h2>Figures</h2>" + "".join(fig_html))

    me = mixed.mixed_effects
    is_key = (
        (me["model"].isin(_KEY_ORDER) | me["model"].str.endswith("_slope")) & (me["model"] != "source_slope")
        if len(me)
        else pd.Series(dtype=bool)
    )
    main = me[is_key] if len(me) else me
    cols = [
        "metric",
        "model",
        "term",
        "estimate",
        "std_error",
        "z",
        "p_value",
        "ci_low",
        "ci_high",
        "converged",
        "singular",
    ]
    sections.append(
        "<h2>Mixed-effects models (<code>mixed_effects.csv</code>)</h2>"
        "<p>Fixed effects of the key models, REML: <code>source_pairs</code> (<code>metric ~ source * epoch + "
        "(1 + epoch | pair) + (1 + epoch | run)</code>, real labels), <code>pair_&lt;source&gt;_slope</code> "
        "(<code>metric ~ pair * epoch + (1 + epoch | run)</code>) and <code>labels_&lt;source&gt;_slope</code>. "
        "Epoch is the raw epoch number, so a main effect is the difference at epoch 0 (extrapolated) and an "
        "<code>:epoch</code> term a difference in slope per epoch. Categorical levels are in sorted order; the "
        "first is the reference. p-values are Wald z tests with lme4's standard errors; ci = 95% Wald interval. "
        "<code>singular</code> names a variance component estimated as zero or an intercept-slope correlation of "
        "+-1; the fixed effects of a singular fit are kept (as lme4 keeps them) and flagged.</p>"
        + _table(main[cols] if len(main) else main, csv="mixed_effects.csv", wrap=True)
    )
    extra = me[~me.index.isin(main.index)] if len(me) else me
    if len(extra):
        sections.append(
            "<h3>For comparison: random intercepts only, and partial structures</h3><p><code>source</code>, "
            "<code>pair_&lt;source&gt;</code>, <code>labels_&lt;source&gt;</code>: <code>(1 | run)</code>, fitted "
            "by statsmodels; <code>source_slope</code>: <code>(1 + epoch | run)</code>; "
            "<code>source_pair_re</code>: <code>(1 | pair) + (1 | run)</code>. Without a random slope the "
            "<code>:epoch</code> terms are tested against the residual scatter of single epochs, so their "
            "standard errors are several times too small; do not quote them.</p>"
            + _table(extra[cols + ["engine"]], csv="mixed_effects.csv", wrap=True)
        )

    sections.append(
        "<h2>Likelihood-ratio tests (<code>lrt.csv</code>)</h2><p>ML fits of the model with and without the "
        "factor and its interaction with epoch, under the same random effects; chisq = 2 x difference in "
        "log-likelihood on df = the difference in the number of fixed effects.</p>"
        + _table(
            mixed.lrt[["metric", "model", "full_formula", "chisq", "df", "p_value", "converged", "singular"]]
            if len(mixed.lrt)
            else mixed.lrt,
            wrap=True,
        )
    )

    sections.append(
        "<h2>Effect sizes (<code>effect_sizes.csv</code>)</h2><p>Sentence - gesture (from "
        "<code>source_pairs</code>) and shuffled - real (from <code>labels_&lt;source&gt;_slope</code>) at the first, "
        "mean and last epoch and in slope, with 95% Wald intervals. <code>d</code> divides the difference by the "
        "standard deviation of a single observation around the fixed effects (random-effect plus residual "
        "variance, averaged over the epochs); its interval is the difference's interval on the same scale.</p>"
        + _table(
            mixed.effect_sizes[
                ["metric", "model", "effect", "estimate", "ci_low", "ci_high", "p_value", "d", "d_ci_low", "d_ci_high"]
            ]
            if len(mixed.effect_sizes)
            else mixed.effect_sizes,
            csv="effect_sizes.csv",
        )
    )

    con = mixed.contrasts
    if len(con):
        summary = (
            con.assign(significant=con["p_holm"] < 0.05)
            .groupby(["metric", "model", "family"], sort=False)
            .agg(
                contrasts=("contrast", "size"),
                significant_holm_05=("significant", "sum"),
                largest_abs_d=("d", lambda d: float(np.max(np.abs(d)))),
            )
            .reset_index()
        )
        top = (
            con.assign(abs_d=con["d"].abs())
            .sort_values("abs_d", ascending=False)
            .groupby(["metric", "model", "family"], sort=False)
            .head(3)
        )
        sections.append(
            "<h2>Class-pair contrasts (<code>contrasts.csv</code>)</h2><p>Every pair of class pairs within a "
            "source, from <code>metric ~ pair * epoch + (1 + epoch | run)</code> (a random slope per run, so that "
            "slope differences are judged against the spread of the runs' slopes): the difference at the mean "
            "epoch and the difference in slope per epoch, Wald z tests with Holm's correction within each "
            "metric x model x family. How many differ at the 5% level, and the three largest per family (all "
            "contrasts: <a href='contrasts.csv'><code>contrasts.csv</code></a>):</p>"
            + _table(summary)
            + _table(top[["metric", "model", "family", "contrast", "estimate", "ci_low", "ci_high", "p_holm", "d"]])
        )

    ols = inp.ols
    ols_cols = ["metric", "model", "formula", "n", "adj_r2", "f", "df_model", "df_resid", "p_value"]
    if len(ols) and "delta_r2" in ols.columns:
        ols_cols.append("delta_r2")
    sections.append(
        "<h2>The authors' least squares (<code>ols.csv</code>)</h2><p>Jiang &amp; Dale's models, reproduced as R's "
        "<code>lm</code> gives them: every run x epoch row is treated as an independent observation, which "
        "overstates the evidence (pseudo-replication); they are here for comparison with the paper. For the "
        "nested test <code>epoch_vs_epoch_pair_&lt;source&gt;</code> (their \u201cEpoch*Class - Epoch\u201d row) "
        "<code>adj_r2</code> is the larger model's adjusted R&sup2; and <code>delta_r2</code> the change in "
        "R&sup2; from <code>metric ~ epoch</code> to <code>metric ~ epoch * pair</code>, the number the authors "
        "report in that row.</p>" + _table(ols[ols_cols] if len(ols) else ols, wrap=True)
    )

    models = mixed.models
    if len(models):
        sections.append(
            "<h2>Model fits (<code>models.csv</code>, <code>random_effects.csv</code>)</h2>"
            "<p>Per model: observations, groups, convergence, REML log-likelihood, Nakagawa-Schielzeth "
            "marginal R&sup2; (fixed effects) and conditional R&sup2; (fixed + random).</p>"
            + _table(
                models[
                    [
                        "metric",
                        "model",
                        "engine",
                        "n_obs",
                        "n_groups",
                        "converged",
                        "loglik",
                        "r2_marginal",
                        "r2_conditional",
                        "on_boundary",
                        "seconds",
                    ]
                ],
                wrap=True,
            )
            + _table(mixed.random_effects, csv="random_effects.csv")
        )

    for extra_section in inp.companion:
        sections.append(f"<h2>{html.escape(extra_section['title'])}</h2>" + extra_section["html"])
    if inp.files:
        sections.append(
            "<h2>Files</h2><ul>" + "".join(f"<li><code>{html.escape(f)}</code></li>" for f in inp.files) + "</ul>"
        )
    if inp.timings:
        sections.append(
            "<p class='muted'>Timings: "
            + ", ".join(f"{html.escape(k)} {v:.1f} s" for k, v in inp.timings.items())
            + ".</p>"
        )
    style = (
        "body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;"
        "margin:2em auto;padding:0 1em;color:#222;line-height:1.45}"
        "table{border-collapse:collapse;font-size:12px;margin:0.5em 0}"
        "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap;vertical-align:top}"
        "th{background:#f3f3f3}td:first-child,td:nth-child(2),td:nth-child(3){text-align:left}"
        "table.wrap td,table.wrap th{white-space:normal;text-align:left}"
        "table.data td.num{white-space:nowrap;text-align:right}"
        "table.replication td.note{font-size:11px;color:#444;min-width:18em}"
        "tr.yes td.verdict{background:#e6f4ea;font-weight:600}tr.no td.verdict{background:#fdecea;font-weight:600}"
        "tr.na td.verdict{background:#f1f1f1}tr.claimhead td{background:#fafafa;border-top:2px solid #999}"
        ".tablebox{overflow-x:auto}"
        "figure{margin:1.5em 0}img{max-width:100%;border:1px solid #eee}figcaption{font-size:13px;color:#444}"
        ".muted{color:#666;font-size:12px}code{background:#f6f6f6;padding:0 3px}h2{border-bottom:1px solid #ddd}"
        "details{margin:1em 0}summary{cursor:pointer;font-weight:600}"
        "@media print{body{max-width:none;margin:0}.tablebox{overflow:visible}"
        "table{font-size:9px;page-break-inside:auto}tr{page-break-inside:avoid}thead{display:table-header-group}"
        "td,th{white-space:normal}td.num{white-space:nowrap}figure{page-break-inside:avoid}h2{page-break-after:avoid}}"
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'/>"
        f"<title>{html.escape(inp.title)}</title><style>{style}</style></head><body>"
        + "".join(sections)
        + "</body></html>"
    )
