"""The figures a run's W&B mirror logs: its learning-curve map so far, and a companion study's headline figure.

Drawn with matplotlib's object API (no pyplot: no global state, a cheaper import) into pixel arrays
that ``wandb.Image`` takes. The map is oriented as the report draws it (analysis/figures.py): epoch
across, time slice up, the same colour map.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

# The report's colour map for learning-curve maps (analysis/figures.py), so that a map looks the same
# on W&B and in the report.
MAP_CMAP = "viridis"
# 900 x 324 px: wide enough to read a 150-slice map on W&B's run page (at least 800 px, tested)
MAP_FIGSIZE = (10.0, 3.6)
MAP_DPI = 90


class MapFigure:
    """One Agg figure per map shape: the map so far (epoch x time slice) and the current curve beside it.

    The curve shares the map's time-slice axis (accuracy across, time slice up), so that a row of the
    map and the curve's point at that slice line up. Axes, ticks, labels and the colour bar are drawn
    once; each render restores that background and draws only the map, the two curves and the title
    (blitting), which keeps a render to a few milliseconds.
    """

    def __init__(self, n_epochs: int, n_slices: int, scale: tuple[float, float], chance: float | None):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        self.fig = Figure(figsize=MAP_FIGSIZE, dpi=MAP_DPI)
        canvas = self.canvas = FigureCanvasAgg(self.fig)
        self.ax_map = self.fig.add_axes((0.06, 0.15, 0.56, 0.7))
        cax = self.fig.add_axes((0.63, 0.15, 0.012, 0.7))
        self.ax_curve = self.fig.add_axes((0.73, 0.15, 0.25, 0.7), sharey=self.ax_map)
        self.image = self.ax_map.imshow(
            np.full((n_slices, n_epochs), np.nan),
            vmin=scale[0],
            vmax=scale[1],
            cmap=MAP_CMAP,
            aspect="auto",
            origin="lower",
            interpolation="nearest",
            extent=(0.5, n_epochs + 0.5, 0.5, n_slices + 0.5),
        )
        bar = self.fig.colorbar(self.image, cax=cax, label="KNN accuracy")
        if chance is not None and scale[0] <= chance <= scale[1]:
            bar.ax.axhline(chance, color="white", linewidth=1.5)
        self.ax_map.set_xlabel("epoch")
        self.ax_map.set_ylabel("time slice")
        self.ax_map.xaxis.set_major_locator(MaxNLocator(integer=True))
        slices = np.arange(1, n_slices + 1)
        nothing = np.full(n_slices, np.nan)
        (self.raw,) = self.ax_curve.plot(nothing, slices, color="0.6", linewidth=0.8, label="raw")
        (self.smooth,) = self.ax_curve.plot(nothing, slices, color="C3", linewidth=1.4, label="3RS3R")
        if chance is not None:
            self.ax_curve.axvline(chance, color="black", linestyle=":", linewidth=0.8, label="chance")
        self.ax_curve.set_xlim(*scale)
        self.ax_curve.set_xlabel("KNN accuracy, this epoch")
        self.ax_curve.tick_params(labelleft=False)
        self.ax_curve.legend(loc="lower right", fontsize=7, frameon=False)
        self.title = self.fig.text(0.06, 0.93, "", fontsize=10, va="center")
        canvas.draw()
        self.background = canvas.copy_from_bbox(self.fig.bbox)

    def render(self, grid: np.ndarray, curve: np.ndarray, smoothed: np.ndarray, title: str) -> np.ndarray:
        """The RGB pixels of the figure for ``grid`` (epochs x time slices, NaN where not trained yet)."""
        canvas = self.canvas
        canvas.restore_region(self.background)
        self.image.set_data(grid.T)
        self.raw.set_xdata(curve)
        self.smooth.set_xdata(smoothed)
        self.title.set_text(title)
        self.ax_map.draw_artist(self.image)
        for artist in (self.raw, self.smooth):
            self.ax_curve.draw_artist(artist)
        self.fig.draw_artist(self.title)
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()


@functools.lru_cache(maxsize=4)
def map_figure(n_epochs: int, n_slices: int, scale: tuple[float, float], chance: float | None) -> MapFigure:
    """The figure for maps of this shape, built once per process (a pack's runs share it)."""
    return MapFigure(n_epochs, n_slices, scale, chance)


# ---------------------------------------------------------------------------
# Companion studies: one figure of each study's headline quantity, drawn at the end of a run from
# the table the runner wrote to the run folder (the tracker never sees a runner's tables otherwise)
# ---------------------------------------------------------------------------


def _draw_pathway_shares(ax, frame: pd.DataFrame) -> None:
    for mode, part in frame.groupby("mode"):
        ax.plot(part.step, part.share_b, linewidth=1.2 if mode == 1 else 0.8, label=f"mode {mode}")
    deprived = frame.loc[frame.deficit.astype(bool), "step"]
    if len(deprived):
        ax.axvspan(deprived.min(), deprived.max(), color="0.85", zorder=0, label="deficit")
    ax.axhline(0.5, color="black", linestyle=":", linewidth=0.8)
    ax.set(xlabel="step", ylabel="share of pathway b", ylim=(-0.05, 1.05))


def _draw_singular_values(ax, frame: pd.DataFrame) -> None:
    for index, part in frame.groupby("index"):
        ax.plot(part.step, part.value, linewidth=0.9, label=f"sigma {index}" if index <= 5 else None)
    switch = frame.loc[frame.phase == "target", "step"]
    if len(switch) and (frame.phase != "target").any():
        ax.axvline(switch.min(), color="black", linestyle=":", linewidth=0.8, label="target from here")
    ax.set(xlabel="step", ylabel="singular value of the product", yscale="symlog")


def _draw_loss_curves(ax, frame: pd.DataFrame) -> None:
    for split, part in frame.groupby("split", sort=True):
        ax.plot(part.epoch, part.loss, marker=".", markersize=2, linewidth=0.9, label=split)
    finetune = frame.loc[frame.phase == "finetune", "epoch"]
    if len(finetune):
        ax.axvline(finetune.min() - 0.5, color="black", linestyle=":", linewidth=0.8, label="fine-tuning")
    ax.set(xlabel="epoch", ylabel="loss", yscale="log")


def _draw_category_structure(ax, frame: pd.DataFrame) -> None:
    ratio = frame[frame.measure == "between_within_ratio"].sort_values(["layer_index", "step"])
    for (_, layer), part in ratio.groupby(["layer_index", "layer"], sort=True):
        ax.plot(part.step.clip(lower=0.5), part.value, marker=".", markersize=2, linewidth=0.9, label=layer)
    ax.axhline(1.0, color="black", linestyle=":", linewidth=0.8)
    ax.set(xlabel="optimiser step (0 plotted at 0.5)", ylabel="between / within-class distance", xscale="log")


# runner -> (run-folder table, W&B key, drawing, caption)
COMPANION_MEDIA = {
    "critical_pathways": (
        "pathway_shares",
        "companion/pathway_shares",
        _draw_pathway_shares,
        "the deprived pathway b's share of each singular mode over training (1/2: both pathways alike)",
    ),
    "critical_matrix_completion": (
        "singular_values",
        "companion/singular_values",
        _draw_singular_values,
        "top singular values of the end-to-end product over training (deficit matrix, then the target)",
    ),
    "multitask": (
        "loss_curves",
        "companion/loss_curves",
        _draw_loss_curves,
        "losses per data set over the single-task phase and fine-tuning",
    ),
    "dense_sample": (
        "category_structure",
        "companion/category_structure",
        _draw_category_structure,
        "category structure per layer: between / within-class distance of the probe set (1: none)",
    ),
}


def companion_image(runner: str, run_dir: Path) -> tuple[str, np.ndarray, str] | None:
    """The W&B key, the pixels and the caption of a companion run's headline figure, or None where the
    runner has none or its table is not in the run folder."""
    if runner not in COMPANION_MEDIA:
        return None
    table, key, draw, caption = COMPANION_MEDIA[runner]
    path = Path(run_dir) / f"{table}.parquet"
    if not path.exists():
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 4.0), dpi=MAP_DPI)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw(ax, pd.read_parquet(path))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    canvas.draw()
    return key, np.asarray(canvas.buffer_rgba())[..., :3].copy(), caption
