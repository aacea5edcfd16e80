"""One self-contained ``report.html``: what to read first, figures and tables with captions.

The page is analysis/templates/report_page.html.j2 (autoescaped); this module turns the results
into the values it shows. Figures are embedded as base64 PNG; the page has no external resources.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import formatting, report_lead
from .formatting import Table, format_p
from .templating import Markup, render

if TYPE_CHECKING:
    from .stats import StatsResults

__all__ = ["ReportInput", "render_report"]

_BOUNDARY_HINT = "The MLE may be on the boundary of the parameter space"


@dataclass
class ReportInput:
    """Everything the report shows."""

    title: str
    source_description: str
    table: pd.DataFrame
    ols: pd.DataFrame
    mixed: StatsResults
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
    # the replicate rule's numbers for this table (analysis.replication.replicate_rule, power.RULE) and
    # whether the table is a demonstration rather than the study (analysis.replication.study_scope)
    replicate_rule: pd.DataFrame | None = None
    replicate_rule_text: str = ""
    scope: dict | None = None
    # diagnostics sections, rendered right after the replication section: {"title", "html", "tables":
    # {name: DataFrame}} (training health, probe tie share, ...); each table is shown complete
    diagnostics: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------
# tables and figures
# ---------------------------------------------------------------------------


def _table(frame: pd.DataFrame | None, max_rows: int | None = None, csv: str | None = None) -> Table:
    """A table of the page: numbers formatted by their column's kind, headers that wrap (analysis.formatting)."""
    return formatting.table(frame, max_rows=max_rows, csv=csv, wrap=True)


def _figure(figures: dict[str, bytes], name: str, caption: str) -> dict | None:
    data = figures.get(name)
    if data is None:
        return None
    return {"name": name, "src": "data:image/png;base64," + base64.b64encode(data).decode("ascii"), "caption": caption}


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------


def _overview(inp: ReportInput) -> dict:
    t = inp.table
    real = t[t["labels"] == "real"]
    per_source = []
    for source, d in real.groupby("source"):
        reps = d.groupby("pair")["run"].nunique()
        per_source.append(
            f"{source} (real labels): {d['pair'].nunique()} class pairs, {reps.min()}-{reps.max()} replicates per "
            f"pair, epochs {d['epoch'].min()}-{d['epoch'].max()}"
        )
    epochs = f"{t['epoch'].min()}-{t['epoch'].max()}" if t["epoch"].nunique() > 1 else f"{t['epoch'].max()}"
    sources = "; ".join(
        f"{source} {d['pair'].nunique()} class pairs x {_runs_per_pair(d)}" for source, d in real.groupby("source")
    )
    shuffled = t.loc[t["labels"] != "real", "run"].nunique()
    return {
        "lede": f"{t['run'].nunique()} runs: {sources or 'no real-label runs'}"
        + (f", and {shuffled} shuffled-label runs" if shuffled else ", no shuffled-label runs")
        + f"; epochs {epochs}.",
        "input": inp.source_description,
        "counts": f"{t['run'].nunique()} runs, {len(t)} run x epoch rows; data sources: "
        f"{', '.join(sorted(t['source'].unique()))}; labels: {', '.join(sorted(t['labels'].unique()))}",
        "per_source": per_source,
        "smooth": inp.smooth,
        "skipped": 0 if inp.skipped is None else len(inp.skipped),
    }


def _runs_per_pair(d: pd.DataFrame) -> str:
    reps = d.groupby("pair")["run"].nunique()
    low, high = int(reps.min()), int(reps.max())
    return f"{low} run{'s' if high > 1 else ''}" if low == high else f"{low}-{high} runs"


_KEY_ORDER = ("source_pairs",)


def _key_results(inp: ReportInput) -> dict:
    """The key models' likelihood-ratio tests, one row per metric: {"columns", "rows"} or {"missing"}."""
    lrt = inp.mixed.lrt
    if lrt is None or len(lrt) == 0:
        return {"missing": "No likelihood-ratio tests could be run on this table."}
    key = lrt[lrt["model"].isin(_KEY_ORDER) | lrt["model"].str.endswith("_slope")]
    if key.empty:
        return {"missing": "No likelihood-ratio tests of the key models could be run on this table."}
    cells = key.copy()
    singular = cells["singular"].fillna("").astype(str) if "singular" in cells else pd.Series("", index=cells.index)
    cells["cell"] = [
        (
            f"\u03c7\u00b2({int(df)}) = {chisq:.1f}, p {('= ' + format_p(p)) if p > 0 else '< 1e-300'}"
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
    rows = [[str(m), *r] for m, r in zip(pivot.index, pivot.fillna("").to_numpy())]
    return {"missing": None, "columns": list(pivot.columns), "rows": rows}


_VERDICT_CLASS = {"replicates": "yes", "does not replicate": "no"}
_REPLICATION_DEFAULTS = {"role": "primary", "test": "", "n": "", "statistic": "", "p_floor_holm": np.nan}


def _replication_row(r) -> dict:
    est = ""
    if np.isfinite(r.estimate):
        est = f"{r.estimate:+.4g}"
        if np.isfinite(r.ci_low):
            est += f" [{r.ci_low:+.4g}, {r.ci_high:+.4g}]"
    verdict = str(r.verdict)
    return {
        "cls": _VERDICT_CLASS.get(verdict, "under" if verdict.startswith("underpowered") else "na"),
        # a break opportunity after each underscore: end_minus_start wraps in a narrow column, not mid-word
        "where": " / ".join(x for x in (str(r.metric), str(r.source)) if x and x != "nan").replace("_", "_\u200b"),
        "role": "" if r.role == "primary" else str(r.role),
        "test": str(r.test),
        "n": str(r.n),
        "authors_result": str(r.authors_result),
        "statistic": str(r.statistic) if str(r.statistic) != "nan" else "",
        "estimate": est,
        "p": format_p(r.p_value),
        "p_holm": format_p(r.p_holm),
        "p_floor": format_p(r.p_floor_holm),
        "verdict": verdict,
        "note": str(r.note) if str(r.note) != "nan" else "",
    }


def _without_repeats(rows: list[dict], *keys: str) -> list[dict]:
    """A claim's rows with each long text said once: a row that repeats the row above says so instead."""
    for key in keys:
        last = None
        for row in rows:
            text = row[key]
            if text and text == last:
                row[key] = "as above"
            last = text
    return rows


def _replication(inp: ReportInput) -> dict | None:
    """The claims with their rows, the count of each verdict, the replicate rule and the table's scope."""
    rep = inp.replication
    if rep is None or len(rep) == 0:
        return None
    # tables written before the replicate rule lack its columns
    rep = rep.assign(**{c: v for c, v in _REPLICATION_DEFAULTS.items() if c not in rep.columns})
    claims = []
    for claim, group in rep.groupby("claim", sort=False):
        first = group.iloc[0]
        claims.append(
            {
                "claim": str(claim),
                "statement": str(first["statement"]),
                "authors_test": str(first["authors_test"]),
                "authors_figure": str(first["authors_figure"]),
                "our_test": str(first["our_test"]),
                "rows": _without_repeats([_replication_row(r) for r in group.itertuples(index=False)], "test", "n"),
            }
        )
    kinds = rep["verdict"].astype(str).str.replace(r" \(.*", "", regex=True)
    counts = ", ".join(f"{n} {v}" for v, n in kinds.value_counts().items())
    rule = inp.replicate_rule
    return {
        "counts": counts,
        "rule": inp.replication_rule,
        "claims": claims,
        "scope": inp.scope or {"demonstration": False, "text": ""},
        "replicate_rule": _table(rule) if rule is not None and len(rule) else None,
        "replicate_rule_text": inp.replicate_rule_text,
    }


def _diagnostics(inp: ReportInput) -> list[dict]:
    # A section's html shows its summaries; its tables (per run and epoch: thousands of rows in a
    # study) are written next to the report as <name>.csv (analysis/cli.py) and linked here.
    return [
        {
            "title": str(section.get("title", "Diagnostics")),
            # made by analysis.health / analysis.ties, which escape what they put in it
            "html": Markup(section.get("html", "")),
            "links": [(f"{name}.csv", len(frame)) for name, frame in (section.get("tables") or {}).items()],
        }
        for section in inp.diagnostics
    ]


def _warnings(inp: ReportInput) -> dict:
    w: dict = dict.fromkeys(("skipped", "failed", "singular", "boundary"))
    if inp.skipped is not None and len(inp.skipped):
        w["skipped"] = {
            "count": len(inp.skipped),
            "reasons": [f"{r} ({n})" for r, n in inp.skipped["reason"].value_counts().items()],
            "table": _table(inp.skipped[["study", "run_id", "reason"]], max_rows=100),
        }
    w["notes"] = list(inp.notes) + list(getattr(inp.mixed, "notes", []))
    models = inp.mixed.models
    # the warnings one run per class pair brings, in one sentence that names the design removing them
    design, warn_list = report_lead.design_warnings(list(getattr(inp.mixed, "warnings", [])), inp.table)
    w["design"] = code_spans(design) if design else None
    boundary = [x for x in warn_list if _BOUNDARY_HINT in x]
    w["other"] = [x for x in warn_list if _BOUNDARY_HINT not in x and "variance estimated as zero" not in x]
    if models is not None and len(models):
        failed = models[~models["converged"].astype(bool)]
        if len(failed):
            w["failed"] = _table(failed[["metric", "model", "warnings"]])
        singular = models[models["on_boundary"].fillna("").astype(str) != ""]
        if len(singular):
            w["singular"] = _table(singular[["metric", "model", "on_boundary"]])
    if boundary:
        w["boundary"] = {
            "hint": _BOUNDARY_HINT,
            "count": len(boundary),
            "names": sorted({x.split(":")[0] for x in boundary}),
        }
    w["any"] = any(w.get(k) for k in ("design", "skipped", "notes", "other", "failed", "singular", "boundary"))
    return w


def _figures(inp: ReportInput) -> dict[str, list[dict]]:
    """The figures after the first screen: {"maps": per-pair and real - shuffled maps, "metrics": metric
    figures and trajectories}. The average map leads the page (``_lead``)."""
    from .figures import METRIC_LABELS

    figs = inp.figures
    maps = [
        _figure(figs, name, _CAPTIONS["maps"])
        for name in sorted(
            n for n in figs if n.startswith("maps_") and not n.startswith("maps_difference") and n != "maps_average.png"
        )
    ]
    maps += [
        _figure(figs, name, _CAPTIONS["difference"])
        for name in sorted(n for n in figs if n.startswith("maps_difference"))
    ]
    metrics = []
    for name in [n for n in figs if n.startswith("metric_")]:
        metric = name[len("metric_") : -4]
        metrics.append(_figure(figs, name, f"{METRIC_LABELS.get(metric, metric)}. " + _CAPTIONS["metric"]))
    metrics.append(_figure(figs, "trajectory_tmax_vs_end_minus_start.png", _CAPTIONS["tmax"]))
    metrics.append(_figure(figs, "trajectory_start_vs_max.png", _CAPTIONS["startmax"]))
    return {"maps": [f for f in maps if f is not None], "metrics": [f for f in metrics if f is not None]}


def code_spans(text: str) -> Markup:
    """Text with its `backquoted` parts as <code> (commands to copy), everything else escaped."""
    parts = str(text).split("`")
    return Markup("").join(
        Markup("<code>{}</code>").format(part) if k % 2 else Markup.escape(part) for k, part in enumerate(parts)
    )


def _lead(inp: ReportInput) -> dict:
    """The first screen: the average map per source (real vs shuffled), the verdicts at a glance, the banner."""
    labels = set(inp.table["labels"].astype(str)) if "labels" in inp.table else set()
    return {
        "figure": _figure(inp.figures, "maps_average.png", _CAPTIONS["average"]),
        "no_shuffled": labels == {"real"},
        "verdicts": report_lead.verdict_summary(inp.replication),
        "banner": [code_spans(line) for line in report_lead.banner(inp.table, inp.replication, inp.scope)],
    }


# the columns of the mixed-effects and model-fit tables, in the report's order
_MIXED_COLUMNS = (
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
)
_FIT_COLUMNS = (
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
)


def _contrast_tables(con: pd.DataFrame) -> tuple:
    """The class-pair contrasts: a count of the significant ones per family, and the three largest |d| of each."""
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
    return (
        _table(summary, csv="contrasts.csv"),
        _table(
            top[["metric", "model", "family", "contrast", "estimate", "ci_low", "ci_high", "p_holm", "d"]],
            csv="contrasts.csv",
        ),
    )


def _mixed_tables(mixed) -> dict:
    me = mixed.mixed_effects
    is_key = (
        (me["model"].isin(_KEY_ORDER) | me["model"].str.endswith("_slope")) & (me["model"] != "source_slope")
        if len(me)
        else pd.Series(dtype=bool)
    )
    main = me[is_key] if len(me) else me
    cols = list(_MIXED_COLUMNS)
    extra = me[~me.index.isin(main.index)] if len(me) else me
    # a table, or a pair of them shown together (contrasts, models)
    tables: dict[str, Any] = {
        "main": _table(main[cols] if len(main) else main, csv="mixed_effects.csv"),
        "extra": _table(extra[cols + ["engine"]], csv="mixed_effects.csv") if len(extra) else None,
        "lrt": _table(
            mixed.lrt[["metric", "model", "full_formula", "chisq", "df", "p_value", "converged", "singular"]]
            if len(mixed.lrt)
            else mixed.lrt,
            csv="lrt.csv",
        ),
        "effect_sizes": _table(
            mixed.effect_sizes[
                ["metric", "model", "effect", "estimate", "ci_low", "ci_high", "p_value", "d", "d_ci_low", "d_ci_high"]
            ]
            if len(mixed.effect_sizes)
            else mixed.effect_sizes,
            csv="effect_sizes.csv",
        ),
        "contrasts": None,
        "models": None,
    }
    if len(mixed.contrasts):
        tables["contrasts"] = _contrast_tables(mixed.contrasts)
    models = mixed.models
    if len(models):
        tables["models"] = (
            _table(models[list(_FIT_COLUMNS)], csv="models.csv"),
            _table(mixed.random_effects, csv="random_effects.csv"),
        )
    return tables


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
    "average": "Average learning-curve map per data source (rows), real labels and shuffled labels (columns): the "
    "mean over class pairs and replicates, on the colour scale of every map figure; the white contour is the "
    "probe's chance level. Up a column: class information building up within a sequence; along a row: its "
    "change with training.",
    "startmax": "Developmental trajectory of each class pair, one panel per data source x class pair: accuracy "
    "at the first time slice (start) against the peak accuracy (max), mean over replicates per epoch, "
    "coloured by epoch; grey: every pair's points.",
}


def render_report(inp: ReportInput) -> str:
    """The report as one HTML string."""
    ols = inp.ols
    ols_cols = ["metric", "model", "formula", "n", "adj_r2", "f", "df_model", "df_resid", "p_value"]
    if len(ols) and "delta_r2" in ols.columns:
        ols_cols.append("delta_r2")
    return render(
        "report_page.html.j2",
        title=inp.title,
        generated=time.strftime("%Y-%m-%d %H:%M"),
        lead=_lead(inp),
        replication=_replication(inp),
        diagnostics=_diagnostics(inp),
        overview=_overview(inp),
        key=_key_results(inp),
        warnings=_warnings(inp),
        figures=_figures(inp),
        tables=_mixed_tables(inp.mixed),
        ols=_table(ols[ols_cols] if len(ols) else ols, csv="ols.csv"),
        # companion sections arrive as HTML fragments (analysis/companion escapes what it puts in them)
        companion=[{"title": str(c["title"]), "html": Markup(c["html"])} for c in inp.companion],
        files=list(inp.files),
        timings=[f"{k} {v:.1f} s" for k, v in inp.timings.items()],
    )
