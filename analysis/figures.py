"""Figures of the analysis (matplotlib, Agg backend, PNG).

- ``maps_<source>_<labels>.png``: the learning-curve maps, one heatmap per
  class pair (time slice x epoch, colour = KNN accuracy on the training
  states, mean over replicates).
- ``metric_<metric>.png``: each metric against epoch, one line per class pair
  (mean over replicates, band = +-1 standard error), one panel per source;
  runs with shuffled labels as a dashed black line where present.
- ``trajectory_tmax_vs_end_minus_start.png`` and
  ``trajectory_start_vs_max.png``: the developmental trajectories of the study:
  per class pair, the mean over replicates at each epoch, joined in epoch
  order, point size growing with epoch.

Every function returns ``{file name: PNG bytes}`` and writes the files
(atomically) when given a folder.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .tables import atomic_write_bytes  # noqa: E402

__all__ = ["METRIC_LABELS", "map_figures", "metric_figures", "trajectory_figures", "all_figures"]

METRIC_LABELS = {
    "start": "start (accuracy at the first time slice)",
    "end": "end (accuracy at the last time slice)",
    "end_minus_start": "end - start",
    "max": "max (peak accuracy over time slices)",
    "tmax": "tmax (time of the peak / T)",
}
_DPI = 90


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


def _colours(n: int):
    cmap = plt.get_cmap("tab20" if n > 10 else "tab10")
    return [cmap(i % cmap.N) for i in range(n)]


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(text))


def map_figures(mean_maps: pd.DataFrame, folder=None) -> dict[str, bytes]:
    """One figure per source x labels: a heatmap per class pair (see module docstring)."""
    figures: dict[str, bytes] = {}
    if mean_maps is None or len(mean_maps) == 0:
        return figures
    for (source, labels), group in mean_maps.groupby(["source", "labels"], sort=True):
        group = group.sort_values(["pair_index", "pair"])
        n = len(group)
        cols = min(5, n)
        rows = int(np.ceil(n / cols))
        shapes = {np.asarray(m).shape for m in group["map"]}
        share = len(shapes) == 1
        width, height = 2.6 * cols + 1.6, 2.2 * rows + 1.0
        fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, sharex=share, sharey=share)
        fig.subplots_adjust(left=0.7 / width, right=1 - 1.3 / width, bottom=0.55 / height, top=1 - 0.6 / height,
                            wspace=0.12 if share else 0.35, hspace=0.35)
        lo = min(float(np.min(m)) for m in group["map"])
        hi = max(float(np.max(m)) for m in group["map"])
        image = None
        for k, (ax, (_, row)) in enumerate(zip(axes.flat, group.iterrows())):
            m = np.asarray(row["map"])  # epochs x time slices
            n_epochs, n_slices = m.shape
            image = ax.imshow(m.T, origin="lower", aspect="auto", cmap="viridis", vmin=lo, vmax=hi,
                              extent=(0.5, n_epochs + 0.5, 0.5, n_slices + 0.5), interpolation="nearest")
            ax.set_title(f"{row['pair']} (n={row['n_runs']})", fontsize=8.5)
            if k // cols == rows - 1 or not share or k + cols >= n:
                ax.set_xlabel("epoch", fontsize=8)
            if k % cols == 0 or not share:
                ax.set_ylabel("time slice", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        if image is not None:
            cax = fig.add_axes((1 - 1.0 / width, 0.55 / height, 0.18 / width, 1 - 1.15 / height))
            fig.colorbar(image, cax=cax, label="KNN accuracy (train states)")
        fig.suptitle(f"Learning-curve maps: {source}, {labels} labels (mean over replicates)", fontsize=11)
        figures[f"maps_{_safe(source)}_{_safe(labels)}.png"] = _png(fig)
    return _save(figures, folder)


def _summary(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    g = table.groupby(["source", "labels", "pair", "epoch"], sort=True)[metric]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out["se"] = out["std"] / np.sqrt(out["count"])
    out.loc[out["count"] < 2, "se"] = 0.0
    return out


def metric_figures(table: pd.DataFrame, metrics, folder=None) -> dict[str, bytes]:
    """One figure per metric: metric against epoch per class pair, a panel per source."""
    figures: dict[str, bytes] = {}
    sources = sorted(table["source"].unique())
    for metric in metrics:
        s = _summary(table, metric)
        fig, axes = plt.subplots(1, len(sources), figsize=(6.0 * len(sources), 4.4), squeeze=False)
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.86, wspace=0.22)
        for ax, source in zip(axes[0], sources):
            real = s[(s["source"] == source) & (s["labels"] == "real")]
            pairs = sorted(real["pair"].unique())
            for colour, pair in zip(_colours(len(pairs)), pairs):
                d = real[real["pair"] == pair]
                ax.plot(d["epoch"], d["mean"], color=colour, lw=1.3, label=pair)
                ax.fill_between(d["epoch"], d["mean"] - d["se"], d["mean"] + d["se"], color=colour, alpha=0.2, lw=0)
            null = s[(s["source"] == source) & (s["labels"] != "real")]
            for labels, d in null.groupby("labels"):
                d = d.groupby("epoch", as_index=False)["mean"].mean()
                ax.plot(d["epoch"], d["mean"], color="black", ls="--", lw=1.5, label=f"{labels} labels")
            ax.set_title(source)
            ax.set_xlabel("epoch")
            ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6.5, ncol=2, loc="best", frameon=False)
        fig.suptitle(f"{METRIC_LABELS.get(metric, metric)} by epoch and class pair (mean +- SE over replicates)",
                     fontsize=11)
        figures[f"metric_{metric}.png"] = _png(fig)
    return _save(figures, folder)


def trajectory_figures(table: pd.DataFrame, folder=None) -> dict[str, bytes]:
    """The two trajectory plots: tmax vs end - start, and start vs max (point size = epoch)."""
    figures: dict[str, bytes] = {}
    real = table[table["labels"] == "real"]
    if real.empty:  # the study's trajectories are those of real-label runs
        return figures
    sources = sorted(real["source"].unique())
    for x, y, name in (("end_minus_start", "tmax", "trajectory_tmax_vs_end_minus_start.png"),
                       ("start", "max", "trajectory_start_vs_max.png")):
        means = real.groupby(["source", "pair", "epoch"], sort=True)[[x, y]].mean().reset_index()
        fig, axes = plt.subplots(1, len(sources), figsize=(6.0 * len(sources), 4.8), squeeze=False)
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.11, top=0.88, wspace=0.22)
        for ax, source in zip(axes[0], sources):
            d_source = means[means["source"] == source]
            pairs = sorted(d_source["pair"].unique())
            max_epoch = max(float(d_source["epoch"].max()), 1.0) if len(d_source) else 1.0
            for colour, pair in zip(_colours(len(pairs)), pairs):
                d = d_source[d_source["pair"] == pair].sort_values("epoch")
                ax.plot(d[x], d[y], color=colour, lw=0.8, alpha=0.7)
                ax.scatter(d[x], d[y], s=4 + 36 * d["epoch"] / max_epoch, color=colour, alpha=0.8,
                           edgecolors="none", label=pair)
            ax.set_title(source)
            ax.set_xlabel(METRIC_LABELS[x])
            ax.set_ylabel(METRIC_LABELS[y])
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6.5, ncol=2, loc="best", frameon=False, markerscale=1.5)
        fig.suptitle(f"Developmental trajectories: {y} against {x} (mean over replicates; larger points = later "
                     "epochs)", fontsize=11)
        figures[name] = _png(fig)
    return _save(figures, folder)


def all_figures(table: pd.DataFrame, metrics, mean_maps: pd.DataFrame | None = None, folder=None) -> dict[str, bytes]:
    """Every figure, in report order."""
    figures: dict[str, bytes] = {}
    if mean_maps is not None:
        figures.update(map_figures(mean_maps, folder))
    figures.update(metric_figures(table, metrics, folder))
    figures.update(trajectory_figures(table, folder))
    return figures
