"""Figures of the analysis (matplotlib, Agg backend, PNG): learning-curve maps, their average and
real - shuffled difference, each metric against epoch, and the developmental trajectories.

Every function returns ``{file name: PNG bytes}`` and writes the files (atomically) when given a
folder. What each figure shows: docs/analysis.md ("Figures")."""

from __future__ import annotations

import functools
import io
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats as sps

from pipeline.runfolder import atomic_write_bytes

__all__ = ["METRIC_LABELS", "chance_levels", "map_figures", "metric_figures", "trajectory_figures", "all_figures"]

METRIC_LABELS = {
    "start": "start (accuracy at the first time slice)",
    "end": "end (accuracy at the last time slice)",
    "end_minus_start": "end - start",
    "max": "max (peak accuracy over time slices)",
    "tmax": "tmax (time of the peak / T)",
}
_DPI = 90
_MAP_CMAP = "viridis"


def chance_levels(knn_mode: str | None = None) -> list[tuple[float, str]]:
    """The probe's accuracy without class information, as (value, label).

    Resubstitution 3-NN counts the sample's own vote: with distinct states and
    random labels it scores about 0.75, and about 0.5 where every state of a
    slice is tied (docs/science.md, the probe). Leave-one-out removes the own
    vote: 0.5 either way.
    """
    if knn_mode == "leave_one_out":
        return [(0.5, "chance (leave-one-out 3-NN)")]
    levels = [(0.75, "chance, distinct states (resubstitution 3-NN)"), (0.5, "chance, all states tied")]
    if knn_mode == "mixed":
        levels[1] = (0.5, "chance: tied states, or leave-one-out runs")
    return levels


def _plain_text(make):
    """Class names and every other label are shown as written: a ``$`` (``$\\undefinedcmd{$``) is text, not
    matplotlib mathtext (which would fail on it or typeset it)."""

    @functools.wraps(make)
    def wrapper(*args, **kwargs):
        with plt.rc_context({"text.parse_math": False}):
            return make(*args, **kwargs)

    return wrapper


def _png(fig) -> bytes:
    # fixed margins (subplots_adjust) rather than constrained layout or bbox_inches="tight": both lay the
    # figure out twice, which costs seconds on the 15-panel map figures
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    plt.close(fig)
    return buffer.getvalue()


def _save(figures: dict[str, bytes], folder) -> dict[str, bytes]:
    if folder is not None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in figures.items():
            atomic_write_bytes(folder / name, data)
    return figures


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))


def _grid(n: int, max_cols: int = 5) -> tuple[int, int]:
    cols = min(max_cols, max(n, 1))
    return int(np.ceil(n / cols)), cols


def _map_scale(mean_maps: pd.DataFrame) -> tuple[float, float]:
    """One colour range for every map figure: [min(0.5, lowest mean), 1] for accuracies."""
    lo = min(float(np.min(m)) for m in mean_maps["map"])
    hi = max(float(np.max(m)) for m in mean_maps["map"])
    return min(0.5, lo), max(1.0, hi)


def _colorbar_with_chance(fig, image, cax, chance, label):
    bar = fig.colorbar(image, cax=cax, label=label)
    lo, hi = image.get_clim()
    for value, _text in chance:
        if lo <= value <= hi:
            bar.ax.axhline(value, color="white", lw=2.2)
            bar.ax.axhline(value, color="black", lw=1.0, ls="--")
    return bar


def _panels(
    group: pd.DataFrame, title_of, draw, suptitle: str, colour_label: str, chance, note: str, cols: int | None = None
):
    """One panel per row of ``group`` (row-major; a row whose map is None leaves its panel empty), ``cols``
    panels a row (default: up to five)."""
    n = len(group)
    rows, cols = _grid(n) if cols is None else (int(np.ceil(n / cols)), cols)
    shapes = {np.asarray(m).shape for m in group["map"] if m is not None}
    share = len(shapes) == 1
    # titles of two lines need room above each panel
    tall = any("\n" in title_of(row) for _, row in group.iterrows())
    width, height = 2.6 * cols + 1.9, (2.45 if tall else 2.2) * rows + 1.5
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, sharex=share, sharey=share)
    fig.subplots_adjust(
        left=0.7 / width,
        right=1 - 1.5 / width,
        bottom=1.0 / height,
        top=1 - (0.75 if tall else 0.6) / height,
        wspace=0.12 if share else 0.35,
        hspace=0.5 if tall else 0.38,
    )
    image = None
    for k, (ax, (_, row)) in enumerate(zip(axes.flat, group.iterrows())):
        if row["map"] is None:
            ax.axis("off")
            ax.text(
                0.5, 0.5, title_of(row), ha="center", va="center", fontsize=8.5, color="#666", transform=ax.transAxes
            )
            continue
        m = np.asarray(row["map"])  # epochs x time slices
        image = draw(ax, m)
        ax.set_title(title_of(row), fontsize=8.5)
        if k // cols == rows - 1 or not share or k + cols >= n:
            ax.set_xlabel("epoch", fontsize=8)
        if k % cols == 0 or not share:
            ax.set_ylabel("time slice", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if image is not None:
        cax = fig.add_axes((1 - 1.15 / width, 1.0 / height, 0.18 / width, 1 - 1.6 / height))
        _colorbar_with_chance(fig, image, cax, chance, colour_label)
    fig.suptitle(suptitle, fontsize=11)
    # about 15 characters of 7.5-pt text per inch
    fig.text(0.7 / width, 0.1 / height, textwrap.fill(note, int((width - 0.9) * 15)), fontsize=7.5, color="#333")
    return fig


def _heat(lo, hi, cmap=_MAP_CMAP):
    def draw(ax, m):
        n_epochs, n_slices = m.shape
        return ax.imshow(
            m.T,
            origin="lower",
            aspect="auto",
            cmap=cmap,
            vmin=lo,
            vmax=hi,
            extent=(0.5, n_epochs + 0.5, 0.5, n_slices + 0.5),
            interpolation="nearest",
        )

    return draw


def _chance_note(chance) -> str:
    return (
        "Dashed lines on the colour bar: "
        + "; ".join(f"{label} = {value:g}" for value, label in chance)
        + ". Same colour scale in every map figure."
    )


@_plain_text
def map_figures(mean_maps: pd.DataFrame, folder=None, knn_mode: str | None = None) -> dict[str, bytes]:
    """Per source x labels a heatmap per class pair; the average map per source; real - shuffled maps."""
    figures: dict[str, bytes] = {}
    if mean_maps is None or len(mean_maps) == 0:
        return figures
    chance = chance_levels(knn_mode)
    lo, hi = _map_scale(mean_maps)
    note = _chance_note(chance)
    for (source, labels), group in mean_maps.groupby(["source", "labels"], sort=True):
        group = group.sort_values(["pair_index", "pair"])
        fig = _panels(
            group,
            lambda r: f"{r['pair']} (n={r['n_runs']})",
            _heat(lo, hi),
            f"Learning-curve maps: {source}, {labels} labels (mean over replicates)",
            "KNN accuracy (train states)",
            chance,
            note,
        )
        figures[f"maps_{_safe(source)}_{_safe(labels)}.png"] = _png(fig)
    figures.update(_average_maps(mean_maps, lo, hi, chance))
    figures.update(_difference_maps(mean_maps))
    return _save(figures, folder)


def _weighted_mean(group: pd.DataFrame):
    shapes = {np.asarray(m).shape for m in group["map"]}
    if len(shapes) != 1:
        return None
    w = group["n_runs"].to_numpy(dtype=np.float64)
    return np.tensordot(w / w.sum(), np.stack([np.asarray(m) for m in group["map"]]), axes=1)


def _average_maps(mean_maps: pd.DataFrame, lo: float, hi: float, chance) -> dict[str, bytes]:
    """One row per data source, one column per labels (real first, then shuffled): the report's lead figure."""
    kinds = sorted(mean_maps["labels"].unique(), key=lambda v: (v != "real", v))
    rows = []
    for source, by_source in mean_maps.groupby("source", sort=True):
        for labels in kinds:
            group = by_source[by_source["labels"] == labels]
            m = _weighted_mean(group) if len(group) else None
            rows.append(
                {
                    "source": source,
                    "labels": labels,
                    "map": m,
                    "n_runs": int(group["n_runs"].sum()) if len(group) else 0,
                    "n_pairs": len(group),
                }
            )
    if all(r["map"] is None for r in rows):
        return {}
    frame = pd.DataFrame(rows)
    contour_at = chance[0][0]

    def draw(ax, m):
        image = _heat(lo, hi)(ax, m)
        n_epochs, n_slices = m.shape
        if n_epochs > 1 and n_slices > 1 and m.min() < contour_at < m.max():
            ax.contour(
                np.arange(1, n_epochs + 1),
                np.arange(1, n_slices + 1),
                m.T,
                levels=[contour_at],
                colors="white",
                linewidths=1.0,
            )
        return image

    def title(r) -> str:
        if r["map"] is None:
            return f"{r['source']}, {r['labels']}: no runs"
        return f"{r['source']}, {r['labels']} labels\n{r['n_pairs']} class pairs, {r['n_runs']} runs"

    fig = _panels(
        frame,
        title,
        draw,
        "Average learning-curve map per data source"
        + (": real vs shuffled labels" if len(kinds) > 1 else " (real labels)"),
        "KNN accuracy (train states)",
        chance,
        _chance_note(chance) + f" White contour: {contour_at:g}. Mean over class pairs and replicates.",
        cols=len(kinds),
    )
    return {"maps_average.png": _png(fig)}


def _difference_maps(mean_maps: pd.DataFrame) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    diffs = []
    for source, d in mean_maps.groupby("source", sort=True):
        real = d[d["labels"] == "real"].sort_values(["pair_index", "pair"])
        null = d[d["labels"] != "real"]
        if real.empty or null.empty:
            continue
        pooled = _weighted_mean(null)
        for _, row in real.iterrows():
            same = null[null["pair"] == row["pair"]]
            ref = _weighted_mean(same) if len(same) else pooled
            if ref is None or np.asarray(ref).shape != np.asarray(row["map"]).shape:
                continue
            diffs.append(
                {
                    "source": source,
                    "pair": row["pair"],
                    "pair_index": row["pair_index"],
                    "n_runs": row["n_runs"],
                    "map": np.asarray(row["map"]) - ref,
                    "pooled": len(same) == 0,
                }
            )
    if not diffs:
        return out
    frame = pd.DataFrame(diffs)
    limit = max(float(np.max(np.abs(m))) for m in frame["map"]) or 1.0
    for source, group in frame.groupby("source", sort=True):
        pooled = bool(group["pooled"].any())
        fig = _panels(
            group,
            lambda r: f"{r['pair']}",
            _heat(-limit, limit, "RdBu_r"),
            f"Real minus shuffled labels: {source} (mean maps)",
            "accuracy difference (real - shuffled)",
            [(0.0, "no difference")],
            "Zero = no difference; one diverging scale for every difference figure."
            + (" Shuffled runs pooled over class pairs." if pooled else ""),
        )
        out[f"maps_difference_{_safe(source)}.png"] = _png(fig)
    return out


def _run_means(table: pd.DataFrame, metric: str, keys) -> pd.DataFrame:
    """Mean and 95% t interval over runs of the metric per key x epoch."""
    g = table.groupby(list(keys) + ["epoch"], sort=True)[metric]
    out = g.agg(["mean", "std", "count"]).reset_index()
    q = sps.t.ppf(0.975, np.maximum(out["count"] - 1, 1))
    half = np.where(out["count"] > 1, q * out["std"] / np.sqrt(out["count"]), np.nan)
    out["lo"], out["hi"] = out["mean"] - half, out["mean"] + half
    return out


@_plain_text
def metric_figures(table: pd.DataFrame, metrics, folder=None) -> dict[str, bytes]:
    """One figure per metric: a panel per source, the source mean with a 95% interval over runs."""
    figures: dict[str, bytes] = {}
    sources = sorted(table["source"].unique())
    for metric in metrics:
        fig, axes = plt.subplots(1, len(sources), figsize=(5.6 * len(sources), 4.6), squeeze=False, sharey=True)
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.2, top=0.87, wspace=0.08)
        handles: dict[str, Any] = {}
        for ax, source in zip(axes[0], sources):
            d = table[table["source"] == source]
            real = d[d["labels"] == "real"]
            for _, p in real.groupby(["pair", "epoch"])[metric].mean().reset_index().groupby("pair"):
                (h,) = ax.plot(p["epoch"], p[metric], color="0.7", lw=0.7)
                handles.setdefault("one class pair (mean over replicates)", h)
            if len(real):
                s = _run_means(real, metric, [])
                band = ax.fill_between(s["epoch"], s["lo"], s["hi"], color="tab:blue", alpha=0.25, lw=0)
                (h,) = ax.plot(s["epoch"], s["mean"], color="tab:blue", lw=2.0)
                handles.setdefault("real labels: mean over runs, 95% CI", (h, band))
            for labels, n in d[d["labels"] != "real"].groupby("labels"):
                s = _run_means(n, metric, [])
                band = ax.fill_between(s["epoch"], s["lo"], s["hi"], color="black", alpha=0.12, lw=0)
                (h,) = ax.plot(s["epoch"], s["mean"], color="black", ls="--", lw=1.6)
                handles.setdefault(f"{labels} labels: mean over runs, 95% CI", (h, band))
            ax.set_title(
                f"{source} ({real['run'].nunique() if 'run' in real else ''} runs, "
                f"{real['pair'].nunique()} class pairs)",
                fontsize=10,
            )
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        # the limits follow the means (pairs and sources), not the bands: the 95% interval of a handful of
        # shuffled runs can be wide enough to flatten everything else
        means = table.groupby(["source", "labels", "pair", "epoch"])[metric].mean()
        lo, hi = float(means.min()), float(means.max())
        pad = 0.08 * (hi - lo) if hi > lo else 0.05
        axes[0][0].set_ylim(lo - pad, hi + pad)
        axes[0][0].set_ylabel(METRIC_LABELS.get(metric, metric))
        if handles:
            fig.legend(
                list(handles.values()),
                list(handles.keys()),
                loc="lower center",
                ncol=3,
                fontsize=8,
                frameon=False,
                bbox_to_anchor=(0.5, 0.0),
            )
        fig.suptitle(f"{METRIC_LABELS.get(metric, metric)} by epoch and data source", fontsize=11)
        figures[f"metric_{metric}.png"] = _png(fig)
    return _save(figures, folder)


@_plain_text
def trajectory_figures(table: pd.DataFrame, folder=None) -> dict[str, bytes]:
    """The two trajectory plots as small multiples (a panel per source x class pair, colour = epoch)."""
    figures: dict[str, bytes] = {}
    real = table[table["labels"] == "real"]
    if real.empty:  # the study's trajectories are those of real-label runs
        return figures
    for x, y, name in (
        ("end_minus_start", "tmax", "trajectory_tmax_vs_end_minus_start.png"),
        ("start", "max", "trajectory_start_vs_max.png"),
    ):
        means = real.groupby(["source", "pair", "epoch"], sort=True)[[x, y]].mean().reset_index()
        panels = list(means.groupby(["source", "pair"], sort=True))
        rows, cols = _grid(len(panels), 6)
        width, height = 2.2 * cols + 1.6, 2.0 * rows + 1.3
        fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, sharex=True, sharey=True)
        fig.subplots_adjust(
            left=0.75 / width,
            right=1 - 1.2 / width,
            bottom=0.7 / height,
            top=1 - 0.6 / height,
            wspace=0.08,
            hspace=0.35,
        )
        e_lo, e_hi = float(means["epoch"].min()), float(means["epoch"].max())
        scatter = None
        for k, (ax, ((source, pair), d)) in enumerate(zip(axes.flat, panels)):
            ax.plot(means[x], means[y], ",", color="0.85", zorder=0)  # every pair, for context
            d = d.sort_values("epoch")
            ax.plot(d[x], d[y], color="0.35", lw=0.6, zorder=1)
            scatter = ax.scatter(
                d[x], d[y], c=d["epoch"], cmap="plasma", vmin=e_lo, vmax=e_hi, s=9, zorder=2, edgecolors="none"
            )
            ax.set_title(f"{source}: {pair}", fontsize=7.5)
            ax.tick_params(labelsize=6.5)
            ax.grid(alpha=0.25)
            if k % cols == 0:
                ax.set_ylabel(y, fontsize=8)
            if k // cols == rows - 1 or k + cols >= len(panels):
                ax.set_xlabel(x.replace("_minus_", " - "), fontsize=8)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        if scatter is not None:
            cax = fig.add_axes((1 - 0.95 / width, 0.7 / height, 0.15 / width, 1 - 1.3 / height))
            fig.colorbar(scatter, cax=cax, label="epoch")
        fig.suptitle(
            f"Developmental trajectories: {y} against {x.replace('_minus_', ' - ')} per class pair "
            "(mean over replicates per epoch; grey: all pairs)",
            fontsize=10,
        )
        figures[name] = _png(fig)
    return _save(figures, folder)


@_plain_text
def all_figures(
    table: pd.DataFrame, metrics, mean_maps: pd.DataFrame | None = None, folder=None, knn_mode: str | None = None
) -> dict[str, bytes]:
    """Every figure, in report order."""
    figures: dict[str, bytes] = {}
    if mean_maps is not None:
        figures.update(map_figures(mean_maps, folder, knn_mode=knn_mode))
    figures.update(metric_figures(table, metrics, folder))
    figures.update(trajectory_figures(table, folder))
    return figures
