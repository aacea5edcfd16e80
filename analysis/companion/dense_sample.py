"""Report section: category structure per layer in the dense-sample study, when it emerges, and the
hyperbolic vs exponential learning-curve fits (docs/companion_spectra_dense.md).

CLI: ``python -m analysis.companion.dense_sample --root OUTPUTS --study dense_sample --out DIR``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .common import (
    claim_row,
    claims_frame,
    done_runs,
    figure_html,
    main_cli,
    mean_ci,
    para,
    read_table,
    save_figure,
    section_html,
    skipped_note,
    summarise,
    table_html,
)
from .power import ONE_SAMPLE, Family, holm, rule_table, shown_effect, sign_flip_p, standardised_mean

TABLE = "category_structure"
TITLE = "Category structure in the dense-sample study"
SEPARABILITY = {
    "between_within_ratio": "between / within-class distance",
    "category_rdm_corr": "RDM-category correlation",
    "ncm_accuracy": "nearest-class-mean accuracy (leave-one-out)",
}
THRESHOLD = 1.25


def _xs(steps) -> np.ndarray:
    """Steps on a symlog-friendly axis (step 0 = initialisation)."""
    return np.asarray(steps, dtype=float)


def crossing_step(steps, values, level) -> float:
    """The first step where ``values`` reaches ``level``, interpolated linearly in log(1 + step)
    between the two checkpoints around the crossing (checkpoints are log-spaced)."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    hit = np.flatnonzero(values >= level)
    if not len(hit):
        return np.nan
    k = hit[0]
    if k == 0 or values[k] == values[k - 1]:
        return float(steps[k])
    u0, u1 = np.log1p(steps[k - 1]), np.log1p(steps[k])
    frac = (level - values[k - 1]) / (values[k] - values[k - 1])
    return float(np.expm1(u0 + frac * (u1 - u0)))


def layer_timing(sep: pd.DataFrame) -> pd.DataFrame:
    """Per run and layer: ratio at init and at the end, largest gain, t50, first step above THRESHOLD."""
    rows = []
    ratio = sep[sep.measure == "between_within_ratio"]
    for (run_id, layer_index, layer), part in ratio.groupby(["run_id", "layer_index", "layer"]):
        part = part.sort_values("step")
        v, steps = part.value.to_numpy(), part.step.to_numpy()
        gain = v - v[0]
        top = gain.max()
        t50 = crossing_step(steps, gain, 0.5 * top) if top > 1e-9 else np.nan
        rows.append(
            {
                "run_id": run_id,
                "layer_index": int(layer_index),
                "layer": layer,
                "ratio_init": v[0],
                "ratio_final": v[-1],
                "max_gain": top,
                "step_of_max": float(steps[np.argmax(gain)]),
                "t50_step": t50,
                "first_step_above_threshold": crossing_step(steps, v, THRESHOLD),
            }
        )
    return pd.DataFrame(rows)


def _per_run_rhos(t: pd.DataFrame) -> np.ndarray:
    from scipy import stats

    rhos = []
    for _, part in t.groupby("run_id"):
        if part.layer_index.nunique() >= 3 and part.t50_step.nunique() > 1:
            rhos.append(stats.spearmanr(part.layer_index, part.t50_step)[0])
    return np.asarray([r for r in rhos if np.isfinite(r)])


def _one_sample_row(test: str, values: np.ndarray) -> dict:
    """The test actually run is the exact sign-flip test of the mean; the t test's p is kept beside it."""
    from scipy import stats

    t_p = float(stats.ttest_1samp(values, 0.0).pvalue) if values.std() > 0 else (1.0 if not values.any() else np.nan)
    return {
        "test": test,
        "n": len(values),
        "statistic": float(values.mean()),
        "p": sign_flip_p(values),
        "p_t": t_p,
        "d": standardised_mean(values),
    }


HEADLINE_TIMING = "Spearman rho of depth vs t50 within each run; mean over runs (exact sign-flip)"


def timing_tests(timing: pd.DataFrame) -> pd.DataFrame:
    """Does separability rise earlier in later layers? The within-run rank correlation of depth with t50 (the
    headline test), a pooled one (descriptive) and the paired t50(last layer) - t50(first layer)."""
    from scipy import stats

    t = timing[(timing.layer != "input") & timing.t50_step.notna() & (timing.max_gain > 0)]
    rows = []
    per_run = _per_run_rhos(t)
    if len(per_run) >= 2:
        rows.append(_one_sample_row(HEADLINE_TIMING, per_run))
    if len(t) >= 3 and t.layer_index.nunique() >= 2:
        rho, p = stats.spearmanr(t.layer_index, t.t50_step)
        rows.append(
            {
                "test": "Spearman: depth vs t50, all run x layer pairs pooled (descriptive)",
                "n": len(t),
                "statistic": float(rho),
                "p": float(p),
            }
        )
    wide = t.pivot_table(index="run_id", columns="layer_index", values="t50_step").dropna(axis=0)
    if wide.shape[1] >= 2 and len(wide) >= 2:
        diff = (wide[wide.columns.max()] - wide[wide.columns.min()]).to_numpy()
        rows.append(_one_sample_row("paired: t50(last layer) - t50(first layer) (exact sign-flip)", diff))
    return pd.DataFrame(rows, columns=["test", "n", "statistic", "p", "p_t", "d"])


def emergence_tests(timing: pd.DataFrame) -> pd.DataFrame:
    """Per layer after the input: does the between/within ratio rise from initialisation to the end? The exact
    sign-flip test of the mean gain across runs (its t p beside it), Holm over the layers."""
    from scipy import stats

    rows = []
    for (_layer_index, layer), part in timing[timing.layer != "input"].groupby(["layer_index", "layer"]):
        gain = (part.ratio_final - part.ratio_init).to_numpy(dtype=float)
        n = len(gain)
        t_p = float(stats.ttest_1samp(gain, 0.0).pvalue) if n >= 2 and gain.std() > 0 else math.nan
        row = {"layer": layer, "n_runs": n, "gain_mean": float(gain.mean()), "d": standardised_mean(gain)}
        rows.append({**row, "sign_flip_p": sign_flip_p(gain), "t_p": t_p})
    frame = pd.DataFrame(rows, columns=["layer", "n_runs", "gain_mean", "d", "sign_flip_p", "t_p"])
    frame["p_holm"] = holm(frame.sign_flip_p) if len(frame) else []
    return frame


def dense_families(emergence: pd.DataFrame, tests: pd.DataFrame) -> dict[str, Family]:
    out = {}
    if len(emergence):
        out["emergence"] = Family(
            "category structure emerges, per layer",
            "exact sign-flip of the gain",
            ONE_SAMPLE,
            "replicate run",
            int(emergence.n_runs.min()),
            len(emergence),
            pilot_d=float(emergence.d.abs().median()),  # the pilot effect of a family: the median of its tests'
        )
    head = tests[tests.test == HEADLINE_TIMING] if len(tests) else tests
    if len(head):
        out["timing"] = Family(
            "earlier in later layers",
            "exact sign-flip of the within-run rho",
            ONE_SAMPLE,
            "replicate run",
            int(head.n.iloc[0]),
            1,
            pilot_d=float(head.d.iloc[0]),
        )
    return out


def dense_claims(emergence: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    fams = dense_families(emergence, tests)
    rows = []
    if len(emergence):
        up = (emergence.p_holm < 0.05) & (emergence.gain_mean > 0)
        rows.append(
            claim_row(
                "category structure emerges during training in the network's layers (Hanson et al.)",
                "per layer after the input, final minus initial between/within ratio across runs (exact "
                "sign-flip), Holm over the layers; holds when it rises in every layer",
                fams["emergence"],
                holds=bool(up.all()),
                p_holm=float(emergence.p_holm.max()),
                claimed_way=bool((emergence.gain_mean > 0).all()),
                shown_d=shown_effect(emergence.d, up),
                numbers=f"Holm-significant rise in {int(up.sum())} of {len(emergence)} layers: "
                + ", ".join(f"{r.layer} {r.gain_mean:+.2f} (p {r.p_holm:.2g})" for r in emergence.itertuples()),
            )
        )
    head = tests[tests.test == HEADLINE_TIMING] if len(tests) else tests
    if len(head):
        r = head.iloc[0]
        rows.append(
            claim_row(
                "structure appears earlier in later layers (Hanson et al.)",
                "within-run Spearman rho of layer depth vs t50 (the step of half the layer's own gain), mean over "
                "runs, exact sign-flip; holds when negative and significant",
                fams["timing"],
                holds=bool(r.p < 0.05 and r.statistic < 0),
                p_holm=float(r.p),
                claimed_way=bool(r.statistic < 0),
                numbers=f"mean rho {r.statistic:.2f}, p {r.p:.2g} (t test p {r.p_t:.2g}), {int(r.n)} runs",
            )
        )
    return claims_frame(rows)


def _separability_figure(summary: pd.DataFrame, layers: list[str]):
    fig, axes = plt.subplots(1, len(SEPARABILITY), figsize=(13, 3.6))
    cmap = plt.get_cmap("viridis")
    for ax, (measure, label) in zip(axes, SEPARABILITY.items()):
        part = summary[summary.measure == measure]
        for k, layer in enumerate(layers):
            g = part[part.layer == layer].sort_values("step")
            color = cmap(k / max(len(layers) - 1, 1))
            ax.plot(_xs(g.step), g["mean"], color=color, label=layer, lw=1.5)
            ax.fill_between(_xs(g.step), g.ci_low, g.ci_high, color=color, alpha=0.15, lw=0)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("optimiser step (symlog; 0 = initialisation)", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.subplots_adjust(left=0.05, right=0.99, top=0.9, bottom=0.16, wspace=0.22)
    return fig


def _embedding_figure(sep: pd.DataFrame, class_names: list[str], layers: list[str]):
    steps = sorted(sep.step.unique())
    if len(steps) > 6:
        picks = np.unique(np.round(np.linspace(0, len(steps) - 1, 6)).astype(int))
        steps = [steps[i] for i in picks]
    emb = sep[sep.measure.isin(["embedding_1", "embedding_2"]) & sep.step.isin(steps)]
    fig, axes = plt.subplots(
        len(layers), len(steps), figsize=(1.75 * len(steps) + 0.8, 1.65 * len(layers) + 0.5), squeeze=False
    )
    for i, layer in enumerate(layers):
        for j, step in enumerate(steps):
            ax = axes[i, j]
            part = emb[(emb.layer == layer) & (emb.step == step)]
            wide = part.pivot_table(index=["a", "b"], columns="measure", values="value").reset_index()
            for c in sorted(wide.b.unique()):
                pts = wide[wide.b == c]
                ax.scatter(
                    pts.embedding_1,
                    pts.embedding_2,
                    s=3,
                    color=f"C{int(c)}",
                    label=class_names[int(c)] if int(c) < len(class_names) else str(c),
                )
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                epoch = part.epoch.iloc[0] if len(part) else np.nan
                ax.set_title(f"step {int(step)}\n(epoch {epoch:.2f})", fontsize=7)
            if j == 0:
                ax.set_ylabel(layer, fontsize=7)
    handles, labels = axes[-1, -1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=7, markerscale=3)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.93, bottom=0.05, hspace=0.1, wspace=0.05)
    return fig


def _rdm_figure(sep: pd.DataFrame, class_names: list[str], layers: list[str]):
    last = sep[sep.measure == "class_mean_rdm"]
    last = last[last.step == last.groupby("run_id").step.transform("max")]
    fig, axes = plt.subplots(1, len(layers), figsize=(1.8 * len(layers) + 0.4, 2.3), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        m = last[last.layer == layer].groupby(["a", "b"]).value.mean().unstack()
        off = m.to_numpy()[~np.eye(len(m), dtype=bool)]
        ax.imshow(m.to_numpy() / (off.mean() if off.size and off.mean() > 0 else 1.0), cmap="magma", vmin=0)
        ax.set_title(layer, fontsize=8)
        ax.set_xticks(range(len(m)))
        ax.set_yticks(range(len(m)))
        names = [class_names[int(k)][:4] if int(k) < len(class_names) else str(k) for k in m.index]
        ax.set_xticklabels(names, fontsize=6, rotation=90)
        ax.set_yticklabels(names, fontsize=6)
    fig.subplots_adjust(left=0.04, right=0.99, top=0.85, bottom=0.25, wspace=0.45)
    return fig


def _fits(t, form, a, b, c):
    return a - b / (1 + c * t) if form == "hyperbolic" else a - b * np.exp(-c * t)


def _curve_figure(curves: pd.DataFrame, fits: pd.DataFrame, first_run: str):
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, curve in zip(axes, ("batch", "probe_set")):
        part = curves[(curves.curve == curve) & (curves.metric == "accuracy")]
        if curve == "batch":
            run = part[part.run_id == first_run].sort_values("step")
            ax.plot(run.step, run.value, ".", ms=2, color="0.6", label=f"minibatch accuracy ({first_run[:24]})")
        else:
            s = summarise(part, ["step"])
            ax.plot(s.step, s["mean"], "o", ms=3, color="k", label="probe-set accuracy, mean over runs")
            ax.fill_between(s.step, s.ci_low, s.ci_high, color="k", alpha=0.1, lw=0)
        t = np.linspace(0, part.step.max(), 300)
        for form, color in (("hyperbolic", "C3"), ("exponential", "C0")):
            f = fits[(fits.run_id == first_run) & (fits.curve == curve) & (fits.form == form)]
            if len(f) and bool(f.converged.iloc[0]):
                r = f.iloc[0]
                ax.plot(
                    t,
                    _fits(t, form, r.a, r.b, r.c),
                    color=color,
                    label=f"{form} fit ({first_run[:12]}...), AIC {r.aic:.1f}",
                )
        ax.set_xlabel("optimiser step", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.set_title(
            {"batch": "minibatch accuracy per step", "probe_set": "probe-set accuracy at checkpoints"}[curve],
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="lower right")
        ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.9, bottom=0.15, wspace=0.18)
    return fig


def fit_comparison(fits: pd.DataFrame) -> pd.DataFrame:
    from scipy import stats

    rows = []
    for curve, part in fits.groupby("curve"):
        wide = part.pivot_table(index="run_id", columns="form", values="aic").dropna()
        if not {"hyperbolic", "exponential"} <= set(wide.columns):
            continue
        delta = (wide.hyperbolic - wide.exponential).to_numpy()
        m, lo, hi, n = mean_ci(delta)
        try:
            p = float(stats.wilcoxon(delta).pvalue) if n >= 2 and np.any(delta != 0) else np.nan
        except ValueError:
            p = np.nan
        r2 = part.groupby("form").r2.mean()
        rows.append(
            {
                "curve": curve,
                "n_runs": n,
                "hyperbolic_wins": int((delta < 0).sum()),
                "exponential_wins": int((delta > 0).sum()),
                "mean_delta_aic": m,
                "ci_low": lo,
                "ci_high": hi,
                "p_wilcoxon": p,
                "r2_hyperbolic": r2.get("hyperbolic", np.nan),
                "r2_exponential": r2.get("exponential", np.nan),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# read
# ---------------------------------------------------------------------------
def _cells(runs: list[dict]) -> dict[str, list[dict]]:
    """The runs of each design cell (the study's factor, the sample density): compared, never pooled."""
    cells: dict[str, list[dict]] = {}
    for run in runs:
        factors = (run["config"].get("study") or {}).get("factors") or []
        flat = run["config"]
        label = ", ".join(f"{f.split('.')[-1]} {_lookup(flat, f)}" for f in factors)
        cells.setdefault(label, []).append(run)
    return cells


def _lookup(config: dict, dotted: str):
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _frames(runs: list[dict]) -> dict:
    """The category structure, learning curves and curve fits of a cell's runs, long format."""
    sep = pd.concat([r[TABLE].assign(run_id=r["run_id"]) for r in runs], ignore_index=True)
    curves = [read_table(r, "learning_curve") for r in runs]
    fits = [read_table(r, "curve_fits") for r in runs]
    return {
        "sep": sep,
        "curves": pd.concat(
            [c.assign(run_id=r["run_id"]) for c, r in zip(curves, runs) if c is not None] or [pd.DataFrame()],
            ignore_index=True,
        ),
        "fits": pd.concat(
            [f.assign(run_id=r["run_id"]) for f, r in zip(fits, runs) if f is not None] or [pd.DataFrame()],
            ignore_index=True,
        ),
        "class_names": [str(c) for c in runs[0]["design"].get("class_names") or []],
        "layers": list(sep.sort_values("layer_index").layer.drop_duplicates()),
        "first": runs[0]["run_id"],
    }


# ---------------------------------------------------------------------------
# test
# ---------------------------------------------------------------------------
def _per_layer(timing: pd.DataFrame) -> pd.DataFrame:
    return (
        timing.groupby(["layer_index", "layer"])
        .agg(
            ratio_init=("ratio_init", "mean"),
            ratio_final=("ratio_final", "mean"),
            max_gain=("max_gain", "mean"),
            t50_step_mean=("t50_step", "mean"),
            t50_step_median=("t50_step", "median"),
            step_of_max_median=("step_of_max", "median"),
            first_step_above_threshold=("first_step_above_threshold", "median"),
            runs_above_threshold=("first_step_above_threshold", lambda v: int(v.notna().sum())),
        )
        .reset_index()
    )


def analyse(frames: dict) -> dict:
    """Every table of a cell: timing per run and layer, its summary, the tests, the claims and the rule."""
    timing = layer_timing(frames["sep"])
    tests, emergence = timing_tests(timing), emergence_tests(timing)
    out = {
        "separability": summarise(
            frames["sep"][frames["sep"].measure.isin(list(SEPARABILITY))], ["measure", "layer", "step"]
        ),
        "layer_timing": timing,
        "per_layer": _per_layer(timing),
        "timing_tests": tests,
        "emergence_tests": emergence,
        "claims": dense_claims(emergence, tests),
        "min_p": rule_table(list(dense_families(emergence, tests).values())),
    }
    if len(frames["fits"]):
        out["curve_fits"] = frames["fits"]
        out["curve_fit_comparison"] = fit_comparison(frames["fits"])
    return out


# ---------------------------------------------------------------------------
# draw
# ---------------------------------------------------------------------------
def _figures(frames: dict, results: dict, out_dir: Path, suffix: str) -> dict[str, str]:
    sep, layers, names, first = frames["sep"], frames["layers"], frames["class_names"], frames["first"]
    figures = {
        "separability": save_figure(
            _separability_figure(results["separability"], layers), out_dir, f"dense_separability{suffix}"
        ),
        "embedding": save_figure(
            _embedding_figure(sep[sep.run_id == first], names, layers), out_dir, f"dense_embedding{suffix}"
        ),
        "rdm": save_figure(_rdm_figure(sep, names, layers), out_dir, f"dense_rdm{suffix}"),
    }
    if len(frames["fits"]) and len(frames["curves"]):
        figures["curves"] = save_figure(
            _curve_figure(frames["curves"], frames["fits"], first), out_dir, f"dense_learning_curves{suffix}"
        )
    return figures


# ---------------------------------------------------------------------------
# page
# ---------------------------------------------------------------------------
def _intro(runs: list[dict], names: list[str]) -> str:
    accs = [r["summary"].get("test_accuracy") for r in runs if r["summary"].get("test_accuracy") is not None]
    m, lo, hi, _ = mean_ci(accs)
    weights = runs[0]["summary"].get("n_weights")
    if not weights:
        return f"{len(runs)} runs."
    return (
        f"{len(runs)} runs of a small VGG ({weights:,} weights) on 5 generated glyph tokens ({', '.join(names)}) with "
        f"{runs[0]['summary'].get('n_train', '?')} training exemplars; final test accuracy {m:.3f} (95% interval "
        f"{lo:.3f} to {hi:.3f}). A fixed probe set of test exemplars is read in every layer at checkpoints placed at "
        "log-spaced optimiser steps and at every epoch end."
    )


def _parts(runs: list[dict], frames: dict, results: dict, figures: dict[str, str]) -> list:
    first = frames["first"]
    parts = [
        table_html(
            results["claims"], "Hanson et al.'s claims, our test of each, and the verdict by the replicate rule."
        ),
        para(_intro(runs, frames["class_names"])),
        figure_html(figures["separability"], CAPTIONS["separability"]),
        table_html(results["per_layer"], CAPTIONS["per_layer"]),
    ]
    if len(results["emergence_tests"]):
        parts.append(table_html(results["emergence_tests"], CAPTIONS["emergence"]))
    if len(results["timing_tests"]):
        parts.append(table_html(results["timing_tests"], CAPTIONS["timing"]))
    parts.append(para(_timing_reading(results["per_layer"], results["timing_tests"])))
    if len(results["min_p"]):
        parts.append(table_html(results["min_p"], CAPTIONS["min_p"]))
    parts.append(figure_html(figures["embedding"], CAPTIONS["embedding"].format(first=first)))
    parts.append(figure_html(figures["rdm"], CAPTIONS["rdm"]))
    if "curves" in figures:
        parts.append(figure_html(figures["curves"], CAPTIONS["curves"]))
    if "curve_fit_comparison" in results:
        parts.append(table_html(results["curve_fit_comparison"], CAPTIONS["fits"]))
    return parts


CAPTIONS = {
    "separability": "How well the classes separate in each layer over training (mean and 95% interval over runs): "
    "left, mean distance between exemplars of different classes over the mean distance within a class (1 = no "
    "category structure); middle, correlation of the exemplar dissimilarities with the same/different-class "
    "pattern; right, leave-one-out nearest-class-mean accuracy. Colours go from the input (dark) to the readout "
    "(yellow).",
    "per_layer": "Per layer, over runs: mean between/within ratio at initialisation and at the end, mean largest "
    "gain over initialisation, t50 (the step where the gain first reaches half of its largest value, "
    "interpolated between checkpoints in log steps), the median step of the largest gain, and the median first "
    f"step where the ratio exceeds {THRESHOLD} (with the number of runs where it does).",
    "emergence": "Category structure emerges in each layer: the between/within ratio at the end minus at "
    "initialisation, across runs (exact sign-flip test of the mean, the test the verdict uses; the t test's p "
    "beside it); Holm over the layers.",
    "timing": "Does separability rise earlier in later layers (relative timing)? A negative correlation of depth "
    "with t50 (the run is the unit in the first test), or a negative paired difference t50(last) - t50(first), "
    "says yes. p: exact sign-flip; p_t: the t test's.",
    "min_p": "The replicate rule of the claims' families (smallest attainable p before and after Holm with the "
    "runs at hand; docs/analysis.md).",
    "embedding": "The probe set's 2-D embedding (first two principal components) in every layer (rows, input at "
    "the top) at six checkpoints (columns), run {first}. Colours are the classes; each axis points so that the "
    "first class lies on its negative side.",
    "rdm": "Distances between class means at the end of training (mean over runs), each layer scaled by its mean "
    "off-diagonal distance: dark = similar classes.",
    "curves": "Learning curves with the two fitted forms, hyperbolic a - b/(1 + c t) and exponential a - b exp(-c "
    "t), t in optimiser steps.",
    "fits": "Hyperbolic vs exponential learning curves: runs won by each form (lower AIC; both have 3 parameters, "
    "so BIC agrees), mean AIC difference hyperbolic - exponential (negative favours hyperbolic) with 95% interval "
    "and Wilcoxon p, mean R^2.",
}
TABLE_NAMES = (
    "separability",
    "layer_timing",
    "timing_tests",
    "min_p",
    "emergence_tests",
    "claims",
    "curve_fits",
    "curve_fit_comparison",
)


def _slug(label: str) -> str:
    return "_" + "".join(c if c.isalnum() else "_" for c in label) if label else ""


def section(study_dir: Path, out_dir: Path, where: dict | None = None) -> dict:
    study_dir = Path(study_dir)
    runs, skipped = done_runs(study_dir, (TABLE,), missing_note=" (probe off)", summary_required=False, where=where)
    if not runs:
        text = (
            f"No done run with category_structure.parquet under {study_dir}: run "
            "python -m pipeline -m study=dense_sample 'seed=range(0,8)'."
        )
        return {"title": TITLE, "html": section_html(TITLE, [para(text), skipped_note(skipped)]), "tables": {}}
    cells = _cells(runs)
    parts: list[str] = []
    tables: dict = {}
    for label, cell_runs in cells.items():
        suffix = _slug(label) if len(cells) > 1 else ""
        frames = _frames(cell_runs)
        results = analyse(frames)
        cell_parts = _parts(cell_runs, frames, results, _figures(frames, results, out_dir, suffix))
        parts += [section_html(f"Cell {label}", cell_parts, level=3)] if len(cells) > 1 else cell_parts
        tables.update({f"{name}{suffix}": results[name] for name in TABLE_NAMES if name in results})
    if len(cells) > 1:
        parts.insert(
            0,
            para(
                f"{len(cells)} design cells ({', '.join(cells)}), each analysed on its own: a cell's runs are its replicates."
            ),
        )
    parts.append(skipped_note(skipped))
    return {"title": TITLE, "html": section_html(TITLE, parts), "tables": tables}


def _timing_reading(per_layer: pd.DataFrame, tests: pd.DataFrame) -> str:
    """A plain-language reading of the timing table and tests (numbers only, no claims beyond them)."""
    hidden = per_layer[per_layer.layer != "input"]
    if hidden.empty:
        return ""
    gains = hidden.set_index("layer").max_gain
    rising = bool((hidden.ratio_final > hidden.ratio_init).all())
    text = (
        (
            "Separability rises with training in every layer after the input"
            if rising
            else "Separability does not rise in every layer"
        )
        + f"; the largest gain of the between/within ratio goes from {gains.iloc[0]:.2f} ({gains.index[0]}) "
        f"to {gains.iloc[-1]:.2f} ({gains.index[-1]}). "
    )
    spearman = tests[tests.test.str.startswith("Spearman")] if len(tests) else tests
    if len(spearman):
        rho, p = spearman.statistic.iloc[0], spearman.p.iloc[0]
        what = "mean within-run" if "within each run" in spearman.test.iloc[0] else "pooled"
        t50 = ", ".join(f"{v:.0f}" for v in hidden.t50_step_mean)
        if rho < 0 and p < 0.05:
            verdict = "later layers reach half of their gain earlier."
        elif rho > 0 and p < 0.05:
            verdict = (
                "later layers reach half of their gain later: relative to its own final gain, an early "
                "layer is done sooner."
            )
        else:
            verdict = (
                "no significant ordering: relative to their own final gains, all layers rise within the "
                "same stretch of training."
            )
        text += (
            f"Relative timing: t50 (mean steps) is {t50} for {', '.join(hidden.layer)}; {what} Spearman rho "
            f"between depth and t50 = {rho:.2f} (p = {p:.3g}): {verdict} "
        )
    above = hidden.first_step_above_threshold
    text += (
        f"Absolute timing: the ratio first exceeds {THRESHOLD} at (median) step "
        + ", ".join(f"{v:.0f}" if np.isfinite(v) else "never" for v in above)
        + f" for {', '.join(hidden.layer)}. Both readings are given because they answer different questions: "
        "when category structure becomes visible in a layer (absolute), and when a layer's own change is half "
        "done (relative)."
    )
    return text


def main(argv=None) -> int:
    return main_cli(
        argv,
        prog="python -m analysis.companion.dense_sample",
        stem="dense_sample",
        build=lambda root, study, out, where: section(root / (study or "dense_sample"), out, where),
        default_study="dense_sample",
    )


if __name__ == "__main__":
    sys.exit(main())
