"""Architectures as a factor (study=architectures): which model's learning-curve maps differ, and how.

Per metric (start, end - start, max, tmax of the real-label runs):

- a mixed model ``metric ~ model * source * epoch + (1 + epoch | pair) + (1 + epoch | run)`` (REML, lme4's
  profiled criterion, ``analysis.lmm``), the class pair coded within its data source: the design's random
  effects, since every class pair runs under every model and each run belongs to one pair;
- its likelihood-ratio test (ML): every term with the model in it against ``source * epoch``, under the
  same random effects;
- pairwise model contrasts per data source at the mean epoch (level) and per epoch (slope), Holm over
  the model pairs of each metric, source and family;
- the same contrasts recomputed on class-pair means, the unit the replicate rule counts
  (analysis/companion/power.py): each pair's mean over replicates and epochs (level) or its mean per-run
  least-squares slope (slope), model a minus model b, an exact Wilcoxon signed-rank test over the pairs,
  Holm likewise; and the rule's floor, the smallest p those tests can reach after Holm.

A contrast's verdict: ``differ`` where both tests are below 0.05 after Holm, ``no difference shown`` where
neither is, ``tests disagree`` otherwise, ``underpowered (...)`` where the floor cannot reach 0.05.
In a balanced design (every run with the same epochs, every pair with every model) the mixed model's
fixed effects equal the cells' least squares, so a level contrast equals the difference of the two
models' mean metric in that source (tests/test_architectures.py holds them equal).

Figures: the average map of each model and source, each model minus the reference model (the LSTM, the
study's), every metric by epoch per model; and, per model, the per-pair map and metric figures of the
headline report (analysis.figures). Torch-free.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats as sps

from .companion.power import ONE_SAMPLE, Family, rule_table
from .figures import METRIC_LABELS, chance_levels, map_figures, metric_figures
from .formula import design_matrix
from .lmm import MixedFit, Structure, fit_profiled, profiled_fit
from .stats import holm
from .templating import Markup, render

__all__ = [
    "METRICS",
    "STRUCTURE",
    "several_models",
    "reference_model",
    "fit_metric",
    "contrasts",
    "pair_level_tests",
    "architecture_tables",
    "architecture_section",
]

METRICS = ("start", "end_minus_start", "max", "tmax")
ALPHA = 0.05
# the class pair (within its source) and the run within it, each with its own intercept and epoch slope
STRUCTURE = Structure("nested_slope", "pair_key", inner="run", slope="epoch")
FAMILIES = ("level at the mean epoch", "slope per epoch")
_Z975 = float(sps.norm.ppf(0.975))
# how a positive difference (model a minus model b) reads, per metric and family
_READS = {
    ("start", FAMILIES[0]): ("separates the classes better at the first time slice", "worse at the first time slice"),
    ("end_minus_start", FAMILIES[0]): ("gains more from the first to the last slice", "gains less over the slices"),
    ("max", FAMILIES[0]): ("peaks higher", "peaks lower"),
    ("tmax", FAMILIES[0]): ("peaks later in the sequence", "peaks earlier in the sequence"),
}


def several_models(table: pd.DataFrame) -> bool:
    return "model" in table.columns and table["model"].nunique() > 1


def reference_model(models) -> str:
    """The model the others are compared with in the figures: the study's LSTM where present."""
    models = sorted(set(models))
    return "lstm" if "lstm" in models else models[0]


# --------------------------------------------------------------------------------------------- the mixed model


@dataclass
class MetricFit:
    metric: str
    frame: pd.DataFrame
    rhs: str
    fit: MixedFit
    lrt: dict


def _frame(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    real = table[table["labels"] == "real"]
    frame = real[["model", "source", "pair", "run", "replicate", "epoch", metric]].copy().reset_index(drop=True)
    for column in ("model", "source", "pair", "run"):
        frame[column] = frame[column].astype(str)
    frame["pair_key"] = frame["source"] + "/" + frame["pair"]
    frame["epoch"] = frame["epoch"].astype(np.float64)
    return frame


def _formulas(frame: pd.DataFrame) -> tuple[str, str]:
    """(the model's right-hand side, its null's): with one data source, no source terms."""
    if frame["source"].nunique() > 1:
        return "model * source * epoch", "source * epoch"
    return "model * epoch", "epoch"


def fit_metric(table: pd.DataFrame, metric: str) -> MetricFit:
    """The REML fit of one metric and the likelihood-ratio test of the model terms (ML fits)."""
    frame = _frame(table, metric)
    rhs, null_rhs = _formulas(frame)
    design, null = design_matrix(frame, rhs), design_matrix(frame, null_rhs)
    y = frame[metric].to_numpy(np.float64)
    fit = fit_profiled(y, design.X, design.names, frame, STRUCTURE, reml=True)
    full_ml = profiled_fit(y, design.X, frame, STRUCTURE, reml=False, start=fit.theta)
    null_ml = profiled_fit(y, null.X, frame, STRUCTURE, reml=False)
    chisq = max(0.0, 2.0 * (full_ml.loglik - null_ml.loglik))
    df = design.n_params - null.n_params
    lrt = {
        "metric": metric,
        "formula": f"{metric} ~ {rhs} + {STRUCTURE.describe()}",
        "null": f"{metric} ~ {null_rhs}",
        "chisq": chisq,
        "df": df,
        "p_value": float(sps.chi2.sf(chisq, df)),
        "converged": bool(full_ml.success and null_ml.success and fit.converged),
        "on_boundary": "; ".join(fit.on_boundary),
        "n_runs": int(frame["run"].nunique()),
        "n_rows": len(frame),
    }
    return MetricFit(metric, frame, rhs, fit, lrt)


def _rows(frame: pd.DataFrame, rhs: str, points: pd.DataFrame) -> np.ndarray:
    """Model-matrix rows of ``points`` (model, source, epoch) coded as the fit's (the same factor levels)."""
    stacked = pd.concat([frame[list(points.columns)], points], ignore_index=True)
    return design_matrix(stacked, rhs).X[len(frame) :]


def _contrast_vector(m: MetricFit, a: str, b: str, source: str, family: str) -> np.ndarray:
    mean_epoch = float(m.frame["epoch"].mean())
    epochs = (mean_epoch,) if family == FAMILIES[0] else (0.0, 1.0)
    points = pd.DataFrame(
        [{"model": model, "source": source, "epoch": e} for model in (a, b) for e in epochs],
        columns=["model", "source", "epoch"],
    )
    X = _rows(m.frame, m.rhs, points)
    if family == FAMILIES[0]:
        return X[0] - X[1]
    return (X[1] - X[0]) - (X[3] - X[2])


def model_pairs(models) -> list[tuple[str, str]]:
    """Every pair of models, each other model against the reference first (``gru - lstm``)."""
    ref = reference_model(models)
    others = [m for m in sorted(set(models)) if m != ref]
    return [(m, ref) for m in others] + list(itertools.combinations(others, 2))


def contrasts(m: MetricFit) -> pd.DataFrame:
    """Every model pair per source and family: estimate, 95% CI, z, p, Holm over the pairs, d."""
    fit = m.fit
    sd_total = float(np.sqrt(fit.random_variance(m.frame) + fit.scale))
    rows = []
    for source in sorted(m.frame["source"].unique()):
        models = m.frame.loc[m.frame["source"] == source, "model"].unique()
        for family in FAMILIES:
            block = []
            for a, b in model_pairs(models):
                L = _contrast_vector(m, a, b, source, family)
                est = float(L @ fit.fe_params)
                se = float(np.sqrt(max(L @ fit.fe_cov @ L, 0.0)))
                z = est / se if se > 0 else np.nan
                block.append(
                    {
                        "metric": m.metric,
                        "source": source,
                        "family": family,
                        "contrast": f"{a} - {b}",
                        "model_a": a,
                        "model_b": b,
                        "estimate": est,
                        "std_error": se,
                        "ci_low": est - _Z975 * se,
                        "ci_high": est + _Z975 * se,
                        "z": z,
                        "p_value": float(2 * sps.norm.sf(abs(z))) if np.isfinite(z) else np.nan,
                        "d": est / sd_total if sd_total > 0 else np.nan,
                        "converged": fit.converged,
                    }
                )
            for row, p in zip(block, holm([r["p_value"] for r in block])):
                row["p_holm"] = p
            rows.extend(block)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- class-pair level check


def _run_slopes(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each run's least-squares slope of the metric over epochs."""

    def slope(group: pd.DataFrame) -> float:
        x = group["epoch"].to_numpy(np.float64)
        y = group[metric].to_numpy(np.float64)
        dx = x - x.mean()
        return float(dx @ (y - y.mean()) / (dx @ dx)) if dx @ dx > 0 else np.nan

    keys = ["source", "pair", "model", "run"]
    return frame.groupby(keys, sort=True)[["epoch", metric]].apply(slope).rename(metric).reset_index()


def _wilcoxon(differences: np.ndarray) -> float:
    d = differences[np.isfinite(differences)]
    if d.size == 0 or not np.any(d != 0):
        return 1.0 if d.size else np.nan
    return float(sps.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def pair_level_tests(table: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[Family]]:
    """The contrasts on class-pair means (exact Wilcoxon signed-rank over pairs, Holm over model pairs), and
    the replicate rule's family of each (metric, source, family)."""
    frame = _frame(table, metric)
    per_family = {
        FAMILIES[0]: frame.groupby(["source", "pair", "model"])[metric].mean(),
        FAMILIES[1]: _run_slopes(frame, metric).groupby(["source", "pair", "model"])[metric].mean(),
    }
    rows, families = [], []
    for source in sorted(frame["source"].unique()):
        models = frame.loc[frame["source"] == source, "model"].unique()
        pairs = model_pairs(models)
        for family, means in per_family.items():
            wide = means.loc[source].unstack("model")
            block = []
            for a, b in pairs:
                d = (wide[a] - wide[b]).to_numpy(np.float64)
                block.append(
                    {
                        "metric": metric,
                        "source": source,
                        "family": family,
                        "contrast": f"{a} - {b}",
                        "pairs": int(np.isfinite(d).sum()),
                        "pair_mean_difference": float(np.nanmean(d)) if np.isfinite(d).any() else np.nan,
                        "pair_p_value": _wilcoxon(d),
                        "pair_d": _standardised(d),
                    }
                )
            for row, p in zip(block, holm([r["pair_p_value"] for r in block])):
                row["pair_p_holm"] = p
            rows.extend(block)
            families.append(
                Family(
                    family=f"model contrasts: {metric}, {source}, {family}",
                    test="exact Wilcoxon signed rank on class-pair means (model a - model b), Holm over model pairs",
                    design=ONE_SAMPLE,
                    unit="class pair",
                    n=int(min((r["pairs"] for r in block), default=0)),
                    m=len(block),
                    pilot_d=float(np.nanmedian([abs(r["pair_d"]) for r in block])) if block else np.nan,
                )
            )
    return pd.DataFrame(rows), families


def _standardised(d: np.ndarray) -> float:
    d = d[np.isfinite(d)]
    return float(d.mean() / d.std(ddof=1)) if d.size > 1 and d.std(ddof=1) > 0 else np.nan


def _verdict(row, family: Family) -> str:
    if not family.decidable:
        return family.underpowered()
    mixed, pair = row["p_holm"] < ALPHA, row["pair_p_holm"] < ALPHA
    if mixed and pair and np.sign(row["estimate"]) == np.sign(row["pair_mean_difference"]):
        return "differ"
    if not mixed and not pair:
        return "no difference shown"
    return "tests disagree"


# ------------------------------------------------------------------------------------------------ the tables


@dataclass
class ArchitectureTables:
    contrasts: pd.DataFrame  # mixed-model and class-pair contrasts side by side, with the verdict
    lrt: pd.DataFrame  # the model terms' likelihood-ratio test per metric
    rule: pd.DataFrame  # the replicate rule's families (power.rule_table)
    warnings: list[str]


def architecture_tables(table: pd.DataFrame, metrics=METRICS) -> ArchitectureTables:
    """Every metric's fit, contrasts, class-pair check and verdicts."""
    parts, lrts, families, warnings = [], [], [], []
    for metric in metrics:
        try:
            m = fit_metric(table, metric)
        except Exception as exc:  # a model that cannot be fitted is reported, not fatal
            warnings.append(f"{metric}: architecture model failed: {type(exc).__name__}: {exc}")
            continue
        if not m.lrt["converged"]:
            warnings.append(f"{metric}: the architecture model's fit did not converge (converged = False)")
        lrts.append(m.lrt)
        pair_rows, fams = pair_level_tests(table, metric)
        merged = contrasts(m).merge(pair_rows, on=["metric", "source", "family", "contrast"], how="left")
        by_name = {f.family: f for f in fams}
        merged["p_floor_holm"] = [
            by_name[f"model contrasts: {metric}, {r.source}, {r.family}"].floor_holm for r in merged.itertuples()
        ]
        merged["verdict"] = [
            _verdict(r, by_name[f"model contrasts: {metric}, {r['source']}, {r['family']}"])
            for _, r in merged.iterrows()
        ]
        parts.append(merged)
        families.extend(fams)
    return ArchitectureTables(
        pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(),
        pd.DataFrame(lrts),
        rule_table(families),
        warnings,
    )


def findings(contrast_table: pd.DataFrame) -> list[str]:
    """One sentence per data source and model pair whose maps differ: in which metrics, which way, how much."""
    out: list[str] = []
    if contrast_table.empty:
        return out
    differ = contrast_table[contrast_table["verdict"] == "differ"]
    for (source, contrast), group in differ.groupby(["source", "contrast"], sort=True):
        a, b = contrast.split(" - ")
        parts = []
        for r in group.itertuples():
            sign = r.estimate > 0
            if r.family == FAMILIES[0]:
                reads = _READS.get((r.metric, r.family), ("higher", "lower"))
                words = f"{reads[0] if sign else reads[1]} ({r.metric} {r.estimate:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}])"
            else:
                words = f"has its {r.metric} {'rising faster' if sign else 'rising slower'} over epochs ({r.estimate:+.4f} per epoch)"
            parts.append(words)
        out.append(f"{source}: {a} vs {b}: {a} " + "; ".join(parts) + ".")
    return out


def _counts(contrast_table: pd.DataFrame) -> str:
    """How the contrasts came out, in one sentence."""
    if contrast_table.empty:
        return ""
    verdicts = contrast_table["verdict"].str.replace(r" \(.*", "", regex=True).value_counts()
    parts = [f"{n} {v}" for v, n in verdicts.items()]
    return f"Of {len(contrast_table)} contrasts (metric x data source x level/slope x model pair): {', '.join(parts)}."


# ----------------------------------------------------------------------------------------------- the figures


def _mean_maps(collection, model: str | None = None) -> dict[tuple[str, str], np.ndarray]:
    """Mean map over the real-label runs of each (model, source) (those of one shape)."""
    runs = collection.runs[collection.runs["labels"] == "real"]
    out = {}
    for (m, source), group in runs.groupby(["model", "source"], sort=True):
        shape = group["shape"].mode().iloc[0]
        rows = group.loc[group["shape"] == shape, "map_row"].to_numpy()
        out[(m, source)] = collection.maps[shape][rows].mean(axis=0)
    return out


def _png(fig) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _map_grid(maps: dict, models: list[str], sources: list[str], title: str, diverging: bool) -> bytes:
    fig, axes = plt.subplots(
        len(models), len(sources), figsize=(3.4 * len(sources) + 1.4, 2.7 * len(models) + 1.0), squeeze=False
    )
    fig.subplots_adjust(hspace=0.45)  # room for each row's epoch axis label above the next row's titles
    values = np.concatenate([v.ravel() for v in maps.values()])
    if diverging:
        bound = float(np.nanmax(np.abs(values))) or 0.01
        lo, hi, cmap = -bound, bound, "RdBu_r"
    else:
        lo, hi, cmap = min(0.5, float(np.nanmin(values))), max(1.0, float(np.nanmax(values))), "viridis"
    image = None
    for i, model in enumerate(models):
        for j, source in enumerate(sources):
            ax = axes[i][j]
            m = maps.get((model, source))
            if m is None:
                ax.axis("off")
                continue
            image = ax.imshow(
                m.T,
                origin="lower",
                aspect="auto",
                cmap=cmap,
                vmin=lo,
                vmax=hi,
                extent=(0.5, m.shape[0] + 0.5, 0.5, m.shape[1] + 0.5),
                interpolation="nearest",
            )
            ax.set_title(f"{model}, {source}", fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.set_ylabel("time slice", fontsize=8)
            ax.tick_params(labelsize=7)
    if image is not None:
        label = "difference in KNN accuracy" if diverging else "KNN accuracy (train states)"
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), label=label, shrink=0.9)
        if not diverging:
            for value, _ in chance_levels():
                bar.ax.axhline(value, color="black", lw=1.0, ls="--")
    fig.suptitle(title, fontsize=11)
    return _png(fig)


def _metric_lines(table: pd.DataFrame, models: list[str], sources: list[str], metrics) -> bytes:
    real = table[table["labels"] == "real"]
    fig, axes = plt.subplots(
        len(metrics), len(sources), figsize=(4.6 * len(sources), 2.6 * len(metrics) + 0.8), squeeze=False, sharex=True
    )
    colours = {model: f"C{i % 10}" for i, model in enumerate(models)}
    for i, metric in enumerate(metrics):
        for j, source in enumerate(sources):
            ax = axes[i][j]
            for model in models:
                d = real[(real["source"] == source) & (real["model"] == model)]
                if d.empty:
                    continue
                g = d.groupby("epoch")[metric].agg(["mean", "std", "count"]).reset_index()
                half = sps.t.ppf(0.975, np.maximum(g["count"] - 1, 1)) * g["std"] / np.sqrt(g["count"])
                ax.fill_between(g["epoch"], g["mean"] - half, g["mean"] + half, color=colours[model], alpha=0.2, lw=0)
                ax.plot(
                    g["epoch"], g["mean"], color=colours[model], lw=1.8, label=f"{model} ({d['run'].nunique()} runs)"
                )
            ax.set_title(f"{source}: {METRIC_LABELS.get(metric, metric)}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if i == len(metrics) - 1:
                ax.set_xlabel("epoch", fontsize=8)
            if i == 0:
                ax.legend(fontsize=7, frameon=False)
    fig.suptitle("Metrics by epoch per model: mean over runs, 95% CI", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _png(fig)


def architecture_figures(table: pd.DataFrame, collection=None, per_model: bool = True) -> dict[str, bytes]:
    """The comparison figures, and (``per_model``) each model's per-pair map and metric figures."""
    models = sorted(table["model"].unique())
    sources = sorted(table["source"].unique())
    ref = reference_model(models)
    figs: dict[str, bytes] = {}
    if collection is not None and len(collection.runs):
        maps = _mean_maps(collection)
        figs["architectures_maps_average.png"] = _map_grid(
            maps, models, sources, "Average learning-curve map per model and data source (real labels)", False
        )
        others = [m for m in models if m != ref]
        diffs = {
            (m, s): maps[(m, s)] - maps[(ref, s)]
            for m in others
            for s in sources
            if (m, s) in maps and (ref, s) in maps and maps[(m, s)].shape == maps[(ref, s)].shape
        }
        if diffs:
            figs["architectures_maps_difference.png"] = _map_grid(
                diffs, others, sources, f"Each model's average map minus {ref}'s (red: higher accuracy)", True
            )
    figs["architectures_metrics.png"] = _metric_lines(table, models, sources, METRICS)
    if per_model:
        for model in models:
            if collection is not None:
                for name, png in map_figures(collection.of_model(model).mean_maps()).items():
                    figs[f"architectures_{model}_{name}"] = png
            for name, png in metric_figures(table[table["model"] == model], METRICS).items():
                figs[f"architectures_{model}_{name}"] = png
    return figs


# ----------------------------------------------------------------------------------------------- the section


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _shown(frame: pd.DataFrame) -> Markup:
    columns = [
        "metric",
        "source",
        "family",
        "contrast",
        "estimate",
        "ci_low",
        "ci_high",
        "p_holm",
        "pair_mean_difference",
        "pair_p_holm",
        "pairs",
        "p_floor_holm",
        "verdict",
    ]
    shown = frame[[c for c in columns if c in frame.columns]]
    return Markup(shown.to_html(index=False, float_format=lambda x: f"{x:.3g}", border=0, classes="data"))


def architecture_section(
    table: pd.DataFrame, collection=None, figures: bool = True, tables: ArchitectureTables | None = None
) -> dict:
    """The report section ``{"title", "html", "tables", "figures"}`` (the layout of the diagnostics sections);
    ``tables``: ``architecture_tables(table)`` where already computed."""
    tables = tables if tables is not None else architecture_tables(table)
    figs = architecture_figures(table, collection) if figures else {}
    models = sorted(table["model"].unique())
    inline = [
        (name, caption)
        for name, caption in (
            (
                "architectures_maps_average.png",
                "Average map per model and data source (mean over class pairs and replicates).",
            ),
            ("architectures_maps_difference.png", f"Each model's average map minus {reference_model(models)}'s."),
            ("architectures_metrics.png", "Each metric by epoch, per model and data source."),
        )
        if name in figs
    ]
    html = render(
        "report_architectures.html.j2",
        models=models,
        reference=reference_model(models),
        n_runs={m: int(table.loc[table["model"] == m, "run"].nunique()) for m in models},
        findings=findings(tables.contrasts),
        counts=_counts(tables.contrasts),
        lrt=Markup(tables.lrt.to_html(index=False, float_format=lambda x: f"{x:.3g}", border=0))
        if len(tables.lrt)
        else None,
        contrasts=_shown(tables.contrasts) if len(tables.contrasts) else None,
        figures=[(_data_uri(figs[name]), caption) for name, caption in inline],
        per_model=sorted(n for n in figs if n not in dict(inline)),
        structure=STRUCTURE.describe(),
        warnings=tables.warnings,
    )
    return {
        "title": "Architectures: which model's maps differ, and how",
        "html": Markup(html),
        "tables": {
            "architecture_contrasts": tables.contrasts,
            "architecture_lrt": tables.lrt,
            "architecture_replicate_rule": tables.rule,
        },
        "figures": figs,
    }
