"""W&B mirror of a run record (optional; the run folder is the source of truth), mode from ``WANDB_MODE``.

Per epoch (or step) a run logs its readouts and, with a learning-curve map, the analysis's four metrics
of that epoch's curve; the map as an image every ``media_every`` epochs; a companion study's headline
figure at its end (``companion/<name>``). Each attempt at a run is its own W&B run (``<run id>-a<n>``
after the first); only a completed one sets ``run/complete``. See docs/wandb.md.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from .config import as_dict, wandb_mode
from .config_schema import DESIGN_ASSIGNMENT, groups_ignored, sweeper_keys
from .curve_metrics import curve_metrics, smooth_3rs3r
from .schema import KNN, KNN_TIE_SHARE, TRAIN

log = logging.getLogger(__name__)
# Config keys that say where or how a run was launched, not what it is (the registry's sweeper keys, the
# outputs' paths and Hydra's node; the logger block is the mirror's own settings and stays)
PLUMBING_KEYS = (*sweeper_keys(), "paths", "hydra")
METRIC_KEYS = ("start", "end", "end_minus_start", "max", "tmax")
COMPLETE_KEY = "run/complete"
IMAGE_KEY = "map/image"
CURVE_KEY = "map/curve"
CONSOLE_MODES = ("off", "auto", "wrap", "redirect")  # wandb.Settings(console=...)
_ATTEMPT_DIR = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-(?P<id>.+)$")


# ---------------------------------------------------------------------------
# What a run is called, where it is grouped, what its config holds
# ---------------------------------------------------------------------------


def earlier_attempts(run_dir: Path, run_id: str) -> list[str]:
    """W&B ids of earlier attempts at this run: the W&B run folders in ``<run_dir>/wandb``.

    Offline and online runs both leave ``[offline-]run-<time>-<id>`` there.
    """
    folder = Path(run_dir) / "wandb"
    if not folder.is_dir():
        return []
    own = re.compile(rf"^{re.escape(run_id)}(?:-a\d+)?$")
    ids = set()
    for entry in folder.iterdir():
        match = _ATTEMPT_DIR.match(entry.name)
        if entry.is_dir() and match and own.match(match.group("id")):
            ids.add(match.group("id"))
    return sorted(ids, key=lambda i: (len(i), i))


def attempt_id(run_id: str, attempt: int) -> str:
    return run_id if attempt == 1 else f"{run_id}-a{attempt}"


def _design(cfg: DictConfig) -> dict:
    design = cfg.get("design")
    return as_dict(design) if design is not None else {}


def class_pair(design: dict) -> str | None:
    names = design.get("class_names")
    if isinstance(names, (list, tuple)) and len(names) == 2:
        return f"{names[0]}/{names[1]}"
    return None


def group_name(cfg: DictConfig) -> str:
    """``<study>-<labels>``: real and shuffled runs of a study in separate groups."""
    return f"{cfg.study.name}-{_design(cfg).get('labels', cfg.get('labels', 'real'))}"


def display_name(cfg: DictConfig, attempt: int = 1) -> str:
    """``gesture PEN/ABD r003`` (+ `` shuffled``, + `` attempt 2``)."""
    design = _design(cfg)
    replicate = int(design.get("replicate", 0))
    pair = class_pair(design)
    if pair and design.get("data_source"):
        name = f"{design['data_source']} {pair} r{replicate:03d}"
    else:
        name = f"{cfg.study.name} {design.get('cell', '')} r{replicate:03d}".replace("  ", " ")
    if design.get("labels", "real") != "real":
        name += f" {design['labels']}"
    return name + (f" attempt {attempt}" if attempt > 1 else "")


def run_tags(cfg: DictConfig) -> list[str]:
    """Study, data source, labels and class names (W&B caps a tag at 64 characters)."""
    design = _design(cfg)
    tags = [cfg.study.name, design.get("data_source"), design.get("labels")]
    tags += list(design.get("class_names") or [])
    deficit = cfg.get("deficit")
    if deficit is not None and deficit.get("kind", "none") != "none":
        tags.append(f"deficit-{deficit.kind}")
    out: list[str] = []
    for tag in tags:
        if tag is not None and str(tag) and str(tag)[:64] not in out:
            out.append(str(tag)[:64])
    return out


def run_config(
    cfg: DictConfig, run_id: str, attempt: int = 1, earlier: list[str] | None = None, study_runner=None
) -> dict:
    """The W&B config: run id, attempt, the design block as top-level keys, the rest without plumbing.

    Left out: launch plumbing and the top-level keys the study's runner ignores (the registry,
    pipeline/config_schema.py; ``study_runner`` is accepted for callers and not needed).
    """
    full = as_dict(cfg)
    design = full.pop("design", None) or {}
    # plumbing, and the keys this study's runner does not read (a companion study's data set or model)
    for key in (*PLUMBING_KEYS, *groups_ignored(str(cfg.study.runner))):
        full.pop(key, None)
    top: dict[str, Any] = {"run_id": run_id, "attempt": attempt, "wandb_id": attempt_id(run_id, attempt)}
    if earlier:
        top["earlier_attempts"] = list(earlier)
    for key, value in design.items():
        if key in DESIGN_ASSIGNMENT:
            continue
        # companion designs name factors by config path (study.depth): W&B would nest the dots
        name = key.split(".")[-1] if "." in key else key
        top[name if name not in top else key.replace(".", "_")] = value
    # grouping keys of the study's workspace (a panel groups by one key): shuffled-label runs
    # form their own lines instead of blending into the real ones
    shuffled = "" if design.get("labels", "real") == "real" else f" {design['labels']}"
    pair = class_pair(design)
    if design.get("data_source"):
        top["source_group"] = f"{design['data_source']}{shuffled}"
    if pair:
        top["class_pair"] = pair
        if design.get("data_source"):
            top["source_pair"] = f"{design['data_source']} {pair}{shuffled}"
    for key, value in full.items():
        top.setdefault(key, value)
    return top


# ---------------------------------------------------------------------------
# The learning-curve map as the tracker sees it, epoch by epoch
# ---------------------------------------------------------------------------


def _rows(curves: pd.DataFrame | None, probe: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(time slices, values) of the train-split rows of one probe; numpy, not pandas: this runs every epoch."""
    if curves is None or not len(curves) or "probe" not in curves:
        return None
    mask = (curves["probe"].to_numpy() == probe) & (curves["split"].to_numpy() == TRAIN)
    if not mask.any():
        return None
    return curves["time_slice"].to_numpy()[mask], curves["value"].to_numpy(dtype=np.float64)[mask]


def epoch_curve(curves: pd.DataFrame | None) -> np.ndarray | None:
    """The epoch's information-processing curve (knn/train accuracy by time slice), or None."""
    rows = _rows(curves, KNN)
    if rows is None:
        return None
    slices, values = rows
    return values[np.argsort(slices, kind="stable")]


def epoch_metrics(curve: np.ndarray) -> dict[str, float]:
    """The four metrics (and ``end``) of one curve, with the analysis's defaults (pipeline/curve_metrics.py)."""
    metrics = curve_metrics(curve[None, :], smooth=True).as_dict()
    return {f"map/{name}": float(metrics[name][0]) for name in METRIC_KEYS}


def tie_share(curves: pd.DataFrame | None) -> float | None:
    """Mean of the epoch's tie-share rows (probe ``knn_tie_share``, split train), or None without them."""
    rows = _rows(curves, KNN_TIE_SHARE)
    return None if rows is None else float(rows[1].mean())


class MapFigure:
    """One Agg figure per run: the map so far (time slice x epoch) and the current curve.

    Built with matplotlib's object API (no pyplot: no global state, cheaper
    import). Axes, ticks, labels and the colour bar are drawn once; each render
    restores that background and draws only the map, the two curves and the
    title (blitting), which keeps a render to a few milliseconds.
    """

    def __init__(self, n_epochs: int, n_slices: int, scale: tuple[float, float], chance: float | None):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        self.fig = Figure(figsize=(6.4, 2.8), dpi=72)
        canvas = self.canvas = FigureCanvasAgg(self.fig)
        self.ax_map = self.fig.add_axes((0.085, 0.17, 0.44, 0.75))
        cax = self.fig.add_axes((0.535, 0.17, 0.018, 0.75))
        self.ax_curve = self.fig.add_axes((0.695, 0.17, 0.27, 0.75))
        self.image = self.ax_map.imshow(
            np.full((n_epochs, n_slices), np.nan),
            vmin=scale[0],
            vmax=scale[1],
            cmap="viridis",
            aspect="auto",
            origin="lower",
            interpolation="nearest",
            extent=(0.5, n_slices + 0.5, 0.5, n_epochs + 0.5),
        )
        bar = self.fig.colorbar(self.image, cax=cax, label="KNN accuracy")
        if chance is not None and scale[0] <= chance <= scale[1]:
            bar.ax.axhline(chance, color="white", linewidth=1.5)
        self.ax_map.set_xlabel("time slice")
        self.ax_map.set_ylabel("epoch")
        self.ax_map.yaxis.set_major_locator(MaxNLocator(integer=True))
        slices = np.arange(1, n_slices + 1)
        (self.raw,) = self.ax_curve.plot(slices, np.full(n_slices, np.nan), color="0.6", linewidth=0.8, label="raw")
        (self.smooth,) = self.ax_curve.plot(slices, np.full(n_slices, np.nan), color="C3", linewidth=1.4, label="3RS3R")
        if chance is not None:
            self.ax_curve.axhline(chance, color="black", linestyle=":", linewidth=0.8, label="chance")
        self.ax_curve.set_ylim(*scale)
        self.ax_curve.set_xlim(0.5, n_slices + 0.5)
        self.ax_curve.set_xlabel("time slice")
        self.ax_curve.legend(loc="lower right", fontsize=7, frameon=False)
        self.title = self.ax_curve.set_title("", fontsize=9)
        canvas.draw()
        self.background = canvas.copy_from_bbox(self.fig.bbox)

    def render(self, grid: np.ndarray, epoch: int, curve: np.ndarray, smoothed: np.ndarray) -> np.ndarray:
        canvas = self.canvas
        canvas.restore_region(self.background)
        self.image.set_data(grid)
        self.raw.set_ydata(curve)
        self.smooth.set_ydata(smoothed)
        self.title.set_text(f"epoch {epoch}")
        self.ax_map.draw_artist(self.image)
        for artist in (self.raw, self.smooth, self.title):
            self.ax_curve.draw_artist(artist)
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

    fig = Figure(figsize=(6.4, 3.2), dpi=72)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw(ax, pd.read_parquet(path))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, frameon=False, loc="best")
    fig.tight_layout()
    canvas.draw()
    return key, np.asarray(canvas.buffer_rgba())[..., :3].copy(), caption


# ---------------------------------------------------------------------------
# The tracker
# ---------------------------------------------------------------------------


# The probe's chance level with distinct states and random labels: resubstitution
# 3-NN scores ~0.75 (each sample votes for itself); leave-one-out ~0.5.
_PROBE_CHANCE = {"resubstitution": 0.75, "leave_one_out": 0.5}


def _options(logger_cfg, knn_mode: str = "resubstitution") -> dict:
    w = logger_cfg.wandb
    every = w.get("media_every", 25)
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ValueError(f"logger.wandb.media_every={every!r}: must be an integer >= 0 (0 = the last epoch only)")
    scale = w.get("color_scale", [0.4, 1.0])
    try:
        lo, hi = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise ValueError(f"logger.wandb.color_scale={scale!r}: must be two numbers [low, high]") from None
    if not lo < hi:
        raise ValueError(f"logger.wandb.color_scale={scale!r}: low must be below high")
    chance = w.get("chance", "auto")
    if chance == "auto":
        chance = _PROBE_CHANCE.get(knn_mode, 0.5)
    if chance is not None and (isinstance(chance, bool) or not isinstance(chance, (int, float))):
        raise ValueError(f"logger.wandb.chance={chance!r}: must be auto, a number (chance accuracy) or null")
    x_axes = dict(w.get("x_axis") or {})
    console = str(w.get("console", "off"))
    if console not in CONSOLE_MODES:
        raise ValueError(f"logger.wandb.console={console!r}: allowed values are {', '.join(CONSOLE_MODES)}")
    return {
        "media_every": int(every),
        "scale": (lo, hi),
        "chance": None if chance is None else float(chance),
        "x_axes": x_axes,
        "console": console,
        "requirements": bool(w.get("requirements", False)),
    }


def _flat_scalars(summary: dict, prefix: str = "") -> dict[str, float | int | str]:
    """Numbers and strings of a (nested) summary, keys joined with '/'; lists are left to the run folder."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_scalars(value, f"{name}/"))
        elif isinstance(value, (bool, np.bool_)):
            out[name] = bool(value)
        elif isinstance(value, (int, float, np.integer, np.floating)) and np.isfinite(value):
            out[name] = value.item() if hasattr(value, "item") else value
        elif isinstance(value, str):
            out[name] = value
    return out


class Tracker:
    """Mirrors one attempt at a run to W&B (or does nothing when W&B is disabled)."""

    def __init__(self, cfg: DictConfig, run_id: str, run_dir: Path, study_runner=None):
        self.run = None
        knn_mode = str(OmegaConf.select(cfg, "probe.knn.mode", default="resubstitution"))
        self.options = _options(cfg.logger, knn_mode)  # checked in every mode: a typo surfaces before W&B is turned on
        if wandb_mode() == "disabled":
            return
        import wandb  # imported only when used: it costs about a second

        os.environ.setdefault("WANDB_SILENT", "true")
        runner = self.runner = str(cfg.study.runner)
        self.run_dir = Path(run_dir)
        self.x_axis = str(self.options["x_axes"].get(runner, self.options["x_axes"].get("default", "epoch")))
        self.n_epochs = int(cfg.trainer.epochs) if runner == "sequence" else None
        earlier = earlier_attempts(run_dir, run_id)
        self.attempt = len(earlier) + 1
        self.wandb_id = attempt_id(run_id, self.attempt)
        if earlier:
            log.info(
                "W&B: run %s was attempted before (%s); this attempt is W&B run %s",
                run_id,
                ", ".join(earlier),
                self.wandb_id,
            )
        w = cfg.logger.wandb
        self.run = wandb.init(
            project=w.project,
            entity=w.entity,
            id=self.wandb_id,
            name=display_name(cfg, self.attempt),
            resume="never",
            group=group_name(cfg),
            job_type="run",
            tags=run_tags(cfg),
            dir=str(run_dir),
            config=run_config(cfg, run_id, self.attempt, earlier, study_runner),
            reinit="finish_previous",
            # the package list is the same for every run of a process and costs ~0.03 s of CPU per run
            settings=wandb.Settings(console=self.options["console"], x_save_requirements=self.options["requirements"]),
        )
        self.run.define_metric(self.x_axis)
        self.run.define_metric("*", step_metric=self.x_axis)
        self._rows: dict[int, np.ndarray] = {}
        self._last_media: int | None = None
        self._last_step = 0
        self._wandb = wandb

    # -- per epoch -------------------------------------------------------

    def log_epoch(self, epoch: int, readouts: dict, curves: pd.DataFrame | None) -> None:
        if self.run is None:
            return
        row: dict[str, Any] = {self.x_axis: epoch, **readouts}
        self._last_step = max(self._last_step, epoch)
        curve = epoch_curve(curves)
        if curve is not None and np.all(np.isfinite(curve)):  # the analysis leaves non-finite maps out too
            self._rows[epoch] = curve
            row.update(epoch_metrics(curve))
            row["knn/mean"] = float(curve.mean())
        else:
            curve = None
        share = tie_share(curves)
        if share is not None:
            row["knn/tie_share"] = share
        if curve is not None and self._media_due(epoch):
            row.update(self._media(epoch))
        self.run.log(row)

    def _media_due(self, epoch: int) -> bool:
        every = self.options["media_every"]
        return (every and epoch % every == 0) or (self.n_epochs is not None and epoch >= self.n_epochs)

    def _media(self, epoch: int) -> dict:
        wandb = self._wandb
        curve = self._rows[epoch]
        n_slices = len(curve)
        n_epochs = max(self.n_epochs or 0, max(self._rows))
        grid = np.full((n_epochs, n_slices), np.nan)
        for e, values in self._rows.items():
            if len(values) == n_slices:
                grid[e - 1] = values
        smoothed = smooth_3rs3r(curve)
        pixels = map_figure(n_epochs, n_slices, self.options["scale"], self.options["chance"]).render(
            grid, epoch, curve, smoothed
        )
        lo, hi = self.options["scale"]
        chance = self.options["chance"]
        caption = (
            f"learning-curve map after epoch {epoch} of {n_epochs}: KNN accuracy by time slice (x) and "
            f"epoch (y); colour scale {lo:g}-{hi:g} for the whole study"
            + (f"; chance {chance:g} (white line on the scale, dotted in the curve)" if chance is not None else "")
        )
        slices = range(1, n_slices + 1)
        # mixed types: W&B then skips its per-row type inference, half the cost of the chart
        table = wandb.Table(
            columns=["time slice", "accuracy", "curve"],
            allow_mixed_types=True,
            data=[[t, v, "raw"] for t, v in zip(slices, curve.tolist())]
            + [[t, v, "3RS3R"] for t, v in zip(slices, smoothed.tolist())],
        )
        chart = wandb.plot.line(
            table, "time slice", "accuracy", stroke="curve", title=f"information-processing curve, epoch {epoch}"
        )
        self._last_media = epoch
        return {IMAGE_KEY: wandb.Image(pixels, caption=caption), CURVE_KEY: chart}

    # -- at the end -------------------------------------------------------

    def finish(self, curves: pd.DataFrame | None, summary: dict, ok: bool) -> None:
        if self.run is None:
            return
        if ok and self._rows and self._last_media != max(self._rows):
            last = max(self._rows)
            self.run.log({self.x_axis: last, **self._media(last)})
        if ok:
            media = companion_image(self.runner, self.run_dir)
            if media is not None:
                key, pixels, caption = media
                self.run.log({self.x_axis: self._last_step, key: self._wandb.Image(pixels, caption=caption)})
        if ok:
            scalars = {k: v for k, v in _flat_scalars(summary).items() if k != "run_id"}
            self.run.summary.update({**scalars, COMPLETE_KEY: 1})
        self.run.finish(exit_code=0 if ok else 1)
        self.run = None
