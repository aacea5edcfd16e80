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


def _table(frame: pd.DataFrame, p_columns=("p_value", "p_holm"), max_rows: int | None = None) -> str:
    if frame is None or len(frame) == 0:
        return "<p class='muted'>(no rows)</p>"
    shown = frame if max_rows is None else frame.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for column, value in zip(shown.columns, row):
            text = _fmt_p(value) if column in p_columns else _fmt_num(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if max_rows is not None and len(frame) > max_rows:
        more = f"<p class='muted'>First {max_rows} of {len(frame)} rows; the full table is in the CSV file.</p>"
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>{more}"


def _figure(figures: dict[str, bytes], name: str, caption: str) -> str:
    data = figures.get(name)
    if data is None:
        return ""
    b64 = base64.b64encode(data).decode("ascii")
    return (f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'/>"
            f"<figcaption><b>{html.escape(name)}</b>. {caption}</figcaption></figure>")


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
        items.append(f"{html.escape(source)} (real labels): {d['pair'].nunique()} class pairs, "
                     f"{reps.min()}-{reps.max()} replicates per pair, epochs {d['epoch'].min()}-{d['epoch'].max()}")
    items.append("Curves smoothed with Tukey's 3RS3R (R's smooth()) before the metrics were taken."
                 if inp.smooth else "Metrics taken on the raw (unsmoothed) curves.")
    if inp.skipped is not None and len(inp.skipped):
        items.append(f"<b>{len(inp.skipped)} run folder(s) skipped</b> (see Warnings).")
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _key_results(inp: ReportInput) -> str:
    lrt = inp.mixed.lrt
    if lrt is None or len(lrt) == 0:
        return "<p class='muted'>No likelihood-ratio tests could be run on this table.</p>"
    cells = lrt.copy()
    cells["cell"] = [f"&chi;&sup2;({int(df)}) = {chisq:.1f}, p {html.escape(('= ' + _fmt_p(p)) if p > 0 else '< 1e-300')}"
                     if np.isfinite(chisq) else "failed"
                     for chisq, df, p in zip(cells["chisq"], cells["df"].fillna(0), cells["p_value"].fillna(1))]
    pivot = cells.pivot(index="metric", columns="model", values="cell")
    order = [m for m in ["source", "source_pair_re"] if m in pivot.columns]
    order += sorted(c for c in pivot.columns if c.startswith("pair_"))
    order += sorted(c for c in pivot.columns if c.startswith("labels_"))
    pivot = pivot[order]
    head = "<th>metric</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in pivot.columns)
    rows = "".join("<tr><td>" + html.escape(str(m)) + "</td>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>"
                   for m, r in zip(pivot.index, pivot.fillna("").to_numpy()))
    return (
        "<p>Does the metric depend on the data source, the class pair, or real vs shuffled labels? Each cell "
        "is a likelihood-ratio test of a mixed model with that factor (and its interaction with epoch) "
        "against one with epoch alone, with a random intercept per run, so that the epochs of a run are not "
        "counted as independent observations. <code>source_pair_re</code> also gives every class pair its own "
        "random intercept: the strictest test of a source difference. Small p-values mean the factor "
        "matters.</p>"
        f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>")


def _warnings(inp: ReportInput) -> str:
    parts = []
    if inp.skipped is not None and len(inp.skipped):
        reasons = inp.skipped["reason"].value_counts()
        parts.append(f"<h3>Skipped run folders ({len(inp.skipped)})</h3><p>These folders are not in any table or "
                     "figure. Reasons: " + "; ".join(f"{html.escape(r)} ({n})" for r, n in reasons.items())
                     + ". The list is in <code>skipped_runs.csv</code>.</p>"
                     + _table(inp.skipped[["study", "run_id", "reason"]], max_rows=100))
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
            parts.append("<h3>Models that did not converge</h3><p>Their coefficients are flagged "
                         "(<code>converged = no</code>); those of the extra models are left out of "
                         "<code>mixed_effects.csv</code>.</p>" + _table(failed[["metric", "model", "warnings"]]))
        singular = models[models["on_boundary"].astype(str) != ""]
        if len(singular):
            parts.append("<h3>Singular fits</h3><p>A variance component estimated as zero (or a perfect "
                         "intercept-slope correlation): the random-effect structure is more than the data "
                         "support. The fixed effects remain usable; prefer the simpler model.</p>"
                         + _table(singular[["metric", "model", "on_boundary"]]))
    if other:
        parts.append("<h3>Convergence and fitting warnings</h3><ul>"
                     + "".join(f"<li><code>{html.escape(w)}</code></li>" for w in other) + "</ul>")
    if boundary:
        names = sorted({w.split(":")[0] for w in boundary})
        parts.append(
            f"<h3>statsmodels: &ldquo;{_BOUNDARY_HINT}&rdquo; ({len(boundary)} models)</h3><p>statsmodels issues "
            "this ConvergenceWarning whenever an estimated random-effect variance is below 0.01 in absolute "
            "units. The metrics are proportions whose variances are of order 0.001, so it fires on fits whose "
            "variances are clearly positive; the fits where a variance really is zero are listed under "
            "Singular fits. Models concerned: " + html.escape(", ".join(names)) + ".</p>")
    if not parts:
        return "<p>No warnings: every run folder was read, every model converged.</p>"
    return "".join(parts)


_CAPTIONS = {
    "maps": "Learning-curve maps: each panel is one class pair; the horizontal axis is the training epoch, the "
            "vertical axis the time slice of the input sequence, the colour the accuracy of a 3-nearest-"
            "neighbour classifier on the network's hidden states at that time slice (training samples, "
            "resubstitution), averaged over replicates. Reading up a column shows how class information builds "
            "up within a sequence (information-processing trajectory); reading along a row shows how it changes "
            "with training (developmental trajectory).",
    "metric": "Mean over replicates (line) and +-1 standard error (band) per class pair and epoch, one panel per "
              "data source; a dashed black line shows runs trained on shuffled labels where present.",
    "tmax": "Developmental trajectory of each class pair: how early the peak of the within-sequence curve comes "
            "(tmax) against how much the curve rises from first to last time slice (end - start). Each point is "
            "the mean over replicates at one epoch; points grow with the epoch and are joined in epoch order.",
    "startmax": "Developmental trajectory of each class pair: accuracy at the first time slice (start) against "
                "the peak accuracy (max), mean over replicates per epoch, larger points for later epochs.",
}


def render_report(inp: ReportInput) -> str:
    """The report as one HTML string."""
    from .figures import METRIC_LABELS

    mixed = inp.mixed
    sections = []
    sections.append(f"<h1>{html.escape(inp.title)}</h1><p class='muted'>Generated "
                    f"{time.strftime('%Y-%m-%d %H:%M')}.</p>")
    sections.append("<h2>Overview</h2>" + _overview(inp))
    sections.append("<h2>Key results</h2>" + _key_results(inp))
    sections.append("<h2>Warnings</h2>" + _warnings(inp))

    figs = inp.figures
    fig_html = []
    for name in sorted(n for n in figs if n.startswith("maps_")):
        fig_html.append(_figure(figs, name, _CAPTIONS["maps"]))
    for name in [n for n in figs if n.startswith("metric_")]:
        metric = name[len("metric_"):-4]
        fig_html.append(_figure(figs, name, f"{html.escape(METRIC_LABELS.get(metric, metric))}. "
                                + _CAPTIONS["metric"]))
    fig_html.append(_figure(figs, "trajectory_tmax_vs_end_minus_start.png", _CAPTIONS["tmax"]))
    fig_html.append(_figure(figs, "trajectory_start_vs_max.png", _CAPTIONS["startmax"]))
    if any(fig_html):
        sections.append("<h2>Figures</h2>" + "".join(fig_html))

    me = mixed.mixed_effects
    main = me[me["model"].isin(["source"]) | me["model"].str.match(r"^pair_[^_]+$")] if len(me) else me
    cols = ["metric", "model", "term", "estimate", "std_error", "z", "p_value", "ci_low", "ci_high", "converged"]
    sections.append(
        "<h2>Mixed-effects models (<code>mixed_effects.csv</code>)</h2>"
        "<p>Fixed effects of the study's models, fitted by REML with statsmodels: <code>metric ~ source * epoch "
        "+ (1 | run)</code> (real labels) and <code>metric ~ pair * epoch + (1 | run)</code> within each source. "
        "Epoch is numeric, so a main effect is the difference at epoch 0 (extrapolated) and an "
        "<code>:epoch</code> term a difference in slope per epoch. Categorical levels are in sorted order; the "
        "first is the reference. p-values are Wald z tests; ci = 95% Wald interval.</p>"
        + _table(main[cols] if len(main) else main, max_rows=400))
    extra = me[~me.index.isin(main.index)] if len(me) else me
    if len(extra):
        sections.append(
            "<details><summary>Further models: random slopes for epoch, class pair as a random effect, real vs "
            "shuffled labels</summary><p><code>*_slope</code>: <code>(1 + epoch | run)</code>; "
            "<code>source_pair_re</code>: <code>(1 | pair) + (1 | run)</code>; <code>labels_*</code>: real vs "
            "shuffled runs of one source. The <code>engine</code> column says what fitted each: statsmodels, or "
            "the profiled REML criterion (lme4's algorithm, with lme4's standard errors), used for the slope and "
            "nested models because statsmodels needs minutes for them (<code>--statsmodels-all</code> to use "
            "it anyway). Random-slope models are reported only where they converged.</p>"
            + _table(extra[cols + ["engine"]], max_rows=600) + "</details>")

    sections.append(
        "<h2>Likelihood-ratio tests (<code>lrt.csv</code>)</h2><p>ML fits of the model with and without the "
        "factor and its interaction with epoch; chisq = 2 x difference in log-likelihood on df = the "
        "difference in the number of fixed effects.</p>"
        + _table(mixed.lrt[["metric", "model", "full_formula", "chisq", "df", "p_value", "converged"]]
                 if len(mixed.lrt) else mixed.lrt))

    sections.append(
        "<h2>Effect sizes (<code>effect_sizes.csv</code>)</h2><p>Differences between data sources (sentence - "
        "gesture) and between shuffled and real labels at the first, mean and last epoch and in slope, with 95% "
        "intervals. <code>d</code> divides the difference by the standard deviation of a single observation "
        "around the fixed effects (random-effect plus residual variance); its interval is the difference's "
        "interval on the same scale. <code>source_pair_re</code> judges the source difference against the "
        "spread of class pairs, and is the one to quote.</p>"
        + _table(mixed.effect_sizes[["metric", "model", "effect", "estimate", "ci_low", "ci_high", "p_value", "d",
                                     "d_ci_low", "d_ci_high"]] if len(mixed.effect_sizes) else mixed.effect_sizes))

    con = mixed.contrasts
    if len(con):
        summary = (con.assign(significant=con["p_holm"] < 0.05)
                   .groupby(["metric", "model", "family"], sort=False)
                   .agg(contrasts=("contrast", "size"), significant_holm_05=("significant", "sum"),
                        largest_abs_d=("d", lambda d: float(np.max(np.abs(d)))))
                   .reset_index())
        top = (con.assign(abs_d=con["d"].abs()).sort_values("abs_d", ascending=False)
               .groupby(["metric", "model", "family"], sort=False).head(3))
        sections.append(
            "<h2>Class-pair contrasts (<code>contrasts.csv</code>)</h2><p>Every pair of class pairs within a "
            "source, from <code>metric ~ pair * epoch + (1 | run)</code>: the difference at the mean epoch and the "
            "difference in slope per epoch, Wald z tests with Holm's correction within each metric x model x "
            "family. How many differ at the 5% level, and the three largest per family:</p>"
            + _table(summary) + _table(top[["metric", "model", "family", "contrast", "estimate", "ci_low",
                                            "ci_high", "p_holm", "d"]]))

    ols = inp.ols
    sections.append(
        "<h2>The authors' least squares (<code>ols.csv</code>)</h2><p>Jiang &amp; Dale's models, reproduced as R's "
        "<code>lm</code> gives them: every run x epoch row is treated as an independent observation, which "
        "overstates the evidence (pseudo-replication); they are here for comparison with the paper. The "
        "mixed models above are the ones to trust.</p>"
        + _table(ols[["metric", "model", "formula", "n", "adj_r2", "f", "df_model", "df_resid", "p_value"]]
                 if len(ols) else ols))

    models = mixed.models
    if len(models):
        sections.append(
            "<details><summary>Model fits (<code>models.csv</code>, <code>random_effects.csv</code>)</summary>"
            "<p>Per model: observations, runs (groups), convergence, REML log-likelihood, Nakagawa-Schielzeth "
            "marginal R&sup2; (fixed effects) and conditional R&sup2; (fixed + random).</p>"
            + _table(models[["metric", "model", "formula", "engine", "n_obs", "n_groups", "converged", "loglik",
                             "r2_marginal", "r2_conditional", "on_boundary", "seconds"]])
            + _table(mixed.random_effects) + "</details>")

    for extra in inp.companion:
        sections.append(f"<h2>{html.escape(extra['title'])}</h2>" + extra["html"])
    if inp.files:
        sections.append("<h2>Files</h2><ul>" + "".join(f"<li><code>{html.escape(f)}</code></li>" for f in inp.files)
                        + "</ul>")
    if inp.timings:
        sections.append("<p class='muted'>Timings: " + ", ".join(f"{html.escape(k)} {v:.1f} s"
                                                               for k, v in inp.timings.items()) + ".</p>")
    style = (
        "body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;"
        "margin:2em auto;padding:0 1em;color:#222;line-height:1.45}"
        "table{border-collapse:collapse;font-size:12px;margin:0.5em 0}"
        "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}"
        "th{background:#f3f3f3;position:sticky;top:0}td:first-child,td:nth-child(2),td:nth-child(3){text-align:left}"
        ".scroll{max-height:520px;overflow:auto;border:1px solid #eee}"
        "figure{margin:1.5em 0}img{max-width:100%;border:1px solid #eee}figcaption{font-size:13px;color:#444}"
        ".muted{color:#777;font-size:12px}code{background:#f6f6f6;padding:0 3px}h2{border-bottom:1px solid #ddd}"
        "details{margin:1em 0}summary{cursor:pointer;font-weight:600}")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'/>"
            f"<title>{html.escape(inp.title)}</title><style>{style}</style></head><body>"
            + "".join(sections) + "</body></html>")
