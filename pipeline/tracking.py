"""W&B mirror of a run record (optional; the run folder is the source of truth), mode from ``WANDB_MODE``.

Per epoch (or step) a run logs its readouts and, with a learning-curve map, the analysis's four metrics
of that epoch's curve, at W&B step = epoch; the map as an image every ``media_every`` epochs; a
companion study's headline figure at its end (``companion/<name>``); at the end, its results and map
movement in the summary and its record files as an artifact (type ``run-record``). Each attempt at a
run is its own W&B run (``<run id>-a<n>`` after the first); only a completed one sets ``run/complete``.

Any W&B failure costs at most the mirror: the tracker logs one warning, stops mirroring and reports
the mirror's state for summary.json (``pipeline/wandb_state.py``); an online start that fails mirrors
offline instead. See docs/wandb.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from .config import as_dict, wandb_mode
from .config_schema import DESIGN_ASSIGNMENT, groups_ignored, sweeper_keys
from .curve_metrics import curve_metrics, map_movement, smooth_3rs3r
from .schema import CONFIG, CURVES, KNN, KNN_TIE_SHARE, READOUTS, SUMMARY, TRAIN
from .wandb_figures import companion_image, map_figure
from .wandb_state import (
    COMPLETE,
    MirrorState,
    check_room,
    describe,
    keep_wandb_files_in,
    online_failure,
    quiet_wandb_log,
    remember_online_failure,
)

__all__ = ["Tracker", "wandb_mode"]

log = logging.getLogger(__name__)
# Config keys that say where or how a run was launched, not what it is (the registry's sweeper keys, the
# outputs' paths and Hydra's node; the logger block is the mirror's own settings and stays)
PLUMBING_KEYS = (*sweeper_keys(), "paths", "hydra")
METRIC_KEYS = ("start", "end", "end_minus_start", "max", "tmax")
COMPLETE_KEY = "run/complete"
IMAGE_KEY = "map/image"
CURVE_KEY = "map/curve"
MOVEMENT_KEY = "map/movement"
RECORD_ARTIFACT_TYPE = "run-record"
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


def map_title(cfg: DictConfig, run_id: str, attempt: int = 1) -> str:
    """``gesture, class pair PEN/ABD, replicate 3, shuffled labels (run <id>)``: the map image's title."""
    design = _design(cfg)
    pair = class_pair(design)
    if not (pair and design.get("data_source")):
        return f"{display_name(cfg, attempt)} (run {run_id})"
    labels = design.get("labels", "real")
    return (
        f"{design['data_source']}, class pair {pair}, replicate {int(design.get('replicate', 0))}"
        + (f", {labels} labels" if labels != "real" else "")
        + (f", attempt {attempt}" if attempt > 1 else "")
        + f" (run {run_id})"
    )


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


# ---------------------------------------------------------------------------
# The tracker
# ---------------------------------------------------------------------------


# The probe's chance level with distinct states and random labels: resubstitution
# 3-NN scores ~0.75 (each sample votes for itself); leave-one-out ~0.5.
_PROBE_CHANCE = {"resubstitution": 0.75, "leave_one_out": 0.5}


def _seconds(w, key: str, default: float) -> float:
    value = w.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"logger.wandb.{key}={value!r}: must be a number of seconds > 0")
    return float(value)


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
        "init_timeout": _seconds(w, "init_timeout", 30.0),
        "finish_timeout": _seconds(w, "finish_timeout", 60.0),
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


def _config_leaves(config: dict) -> dict[str, list]:
    """The config's scalar values by their last key (``trainer.epochs`` -> ``epochs``)."""
    leaves: dict[str, list] = {}
    for key, value in _flat_scalars(config).items():
        leaves.setdefault(key.rsplit("/", 1)[-1], []).append(value)
    return leaves


def summary_scalars(summary: dict, config: dict) -> dict[str, float | int | str]:
    """The run's results for W&B's summary: summary.json's numbers and strings, less what the W&B
    config already says (a config key, or a value the config holds under the same name) and less
    the mirror's own state."""
    leaves = _config_leaves(config)
    out = {}
    for key, value in _flat_scalars(summary).items():
        top = key.split("/", 1)[0]
        if top in config or top == "wandb" or any(type(v) is type(value) and v == value for v in leaves.get(key, ())):
            continue
        out[key] = value
    return out


def record_files(run_dir: Path) -> list[str]:
    """The record files a mirror carries as its artifact: config, curves, readouts, summary and the runner's
    own tables (every other ``*.parquet`` of the run folder)."""
    run_dir = Path(run_dir)
    names = [CONFIG, CURVES, READOUTS, SUMMARY]
    names += sorted(p.name for p in run_dir.glob("*.parquet") if p.name not in names)
    return [name for name in names if (run_dir / name).is_file()]


class Tracker:
    """Mirrors one attempt at a run to W&B (or does nothing when W&B is disabled).

    Every W&B call is guarded: the first failure logs one warning, marks the mirror failed
    (``mirror_record``) and ends the mirror; the run goes on.
    """

    def __init__(self, cfg: DictConfig, run_id: str, run_dir: Path, study_runner=None):
        self.run: Any = None  # the wandb Run while the mirror lives
        self.mirror: MirrorState | None = None  # None: W&B is off
        knn_mode = str(OmegaConf.select(cfg, "probe.knn.mode", default="resubstitution"))
        self.options = _options(cfg.logger, knn_mode)  # checked in every mode: a typo surfaces before W&B is turned on
        mode = wandb_mode()
        if mode == "disabled":
            return
        self.runner = str(cfg.study.runner)
        self.run_id, self.run_dir = run_id, Path(run_dir)
        self.x_axis = str(self.options["x_axes"].get(self.runner, self.options["x_axes"].get("default", "epoch")))
        self.n_epochs = int(cfg.trainer.epochs) if self.runner == "sequence" else None
        earlier = earlier_attempts(run_dir, run_id)
        self.attempt = len(earlier) + 1
        self.wandb_id = attempt_id(run_id, self.attempt)
        self.title = map_title(cfg, run_id, self.attempt)
        self._rows: dict[int, np.ndarray] = {}
        self._last_media: int | None = None
        self._last_step = 0
        self._warned = False
        self._mirror_file: Path | None = None
        w = cfg.logger.wandb
        self.mirror = MirrorState(requested_mode=mode, id=self.wandb_id, project=w.project, entity=w.entity)
        if earlier:
            log.info(
                "W&B: run %s was attempted before (%s); this attempt is W&B run %s",
                run_id,
                ", ".join(earlier),
                self.wandb_id,
            )
        self.config: dict = {}
        self._guarded("start", self._start, cfg, earlier, mode, study_runner)

    # -- the guard -----------------------------------------------------------

    def _guarded(self, stage: str, action, *args) -> None:
        try:
            action(*args)
        except Exception as exc:  # W&B raises many kinds; none may cost the run
            self._lose(stage, exc)

    def _warn(self, message: str, *args) -> None:
        """One warning per run (the first problem); later ones go to the run's log at info level."""
        (log.info if self._warned else log.warning)(message, *args)
        self._warned = True

    def _state(self) -> MirrorState:
        assert self.mirror is not None, "only a tracker with W&B on mirrors"
        return self.mirror

    def _lose(self, stage: str, exc: Exception) -> None:
        run, self.run = self.run, None
        self._state().fail(f"{stage}: {describe(exc)}")
        self._warn(
            "W&B mirror of run %s lost at %s (%s); the run goes on and records as usual, summary.json marks "
            "the mirror failed, and slurm/wandb_sync.sh rebuilds it from the run folder",
            self.run_id,
            stage,
            describe(exc),
        )
        quiet_wandb_log(self.run_dir / "wandb")
        if run is not None:
            with contextlib.suppress(Exception):
                run.finish(exit_code=1)

    # -- the start -------------------------------------------------------------

    def _start(self, cfg: DictConfig, earlier: list[str], mode: str, study_runner) -> None:
        import wandb  # imported only when used: it costs about a second

        os.environ.setdefault("WANDB_SILENT", "true")
        keep_wandb_files_in(self.run_dir / "wandb")
        check_room(self.run_dir / "wandb")
        w = cfg.logger.wandb
        self.config = run_config(cfg, self.run_id, self.attempt, earlier, study_runner)
        init_args = dict(
            project=w.project,
            entity=w.entity,
            id=self.wandb_id,
            name=display_name(cfg, self.attempt),
            resume="never",
            group=group_name(cfg),
            job_type="run",
            tags=run_tags(cfg),
            dir=str(self.run_dir),
            config=self.config,
            reinit="finish_previous",
            settings=wandb.Settings(
                console=self.options["console"],
                # the package list is the same for every run of a process and costs ~0.03 s of CPU per run
                x_save_requirements=self.options["requirements"],
                # an unreachable server costs a run at most this long at the start ...
                init_timeout=self.options["init_timeout"],
                # ... and at the end (then the upload is left for wandb sync, and the mirror marked failed)
                finish_timeout=self.options["finish_timeout"],
                finish_timeout_raises=True,
            ),
        )
        self._wandb = wandb
        mirror = self._state()
        mirror.mode = mode
        if mode == "online":
            self._start_online(wandb, init_args)
        else:
            self.run = wandb.init(**init_args)
        mirror.mode = "offline" if self.run.offline else "online"  # as W&B runs it
        self.run.define_metric(self.x_axis)
        self.run.define_metric("*", step_metric=self.x_axis)
        # offline, this file is the mirror (W&B writes it through a handle it keeps open, so a deleted
        # file or folder goes unnoticed by W&B; the tracker looks for it before each step and at the end)
        self._mirror_file = Path(self.run.settings.sync_file) if mirror.mode == "offline" else None

    def _check_mirror_file(self) -> None:
        if self._mirror_file is not None and not self._mirror_file.is_file():
            raise FileNotFoundError(f"the offline W&B file {self._mirror_file} is gone (its folder deleted?)")

    def _start_online(self, wandb, init_args: dict) -> None:
        """Online when W&B's server answers; otherwise offline into the run folder, for wandb_sync.sh."""
        reason = online_failure()
        if reason is None:
            t0 = time.perf_counter()
            try:
                self.run = wandb.init(**init_args)
                return
            except Exception as exc:  # CommError, UsageError (no login), timeouts, ...
                reason = f"{describe(exc)} (after {time.perf_counter() - t0:.1f} s)"
                remember_online_failure(reason)
                # W&B's service still holds the run id for the failed start ("run ID ... is in use"): a
                # fresh service (about a second to start) takes the offline run under the same id
                with contextlib.suppress(Exception):
                    wandb.teardown()
            note = f"online start failed: {reason}; mirrored offline, upload with slurm/wandb_sync.sh"
        else:
            note = f"online start failed earlier in this process: {reason}; mirrored offline, upload with slurm/wandb_sync.sh"
        self._warn("W&B run %s: %s", self.run_id, note)
        self._state().mode, self._state().note = "offline", note
        self.run = wandb.init(**init_args, mode="offline")  # the fallback only: WANDB_MODE asked for online

    # -- per epoch -------------------------------------------------------

    def log_epoch(self, epoch: int, readouts: dict, curves: pd.DataFrame | None) -> None:
        if self.run is not None:
            self._guarded(f"{self.x_axis} {epoch}", self._log_epoch, epoch, readouts, curves)

    def _log_epoch(self, epoch: int, readouts: dict, curves: pd.DataFrame | None) -> None:
        self._check_mirror_file()
        row: dict[str, Any] = {self.x_axis: epoch, **readouts}
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
        self._log(row, epoch)

    def _log(self, row: dict, step: int) -> None:
        """W&B's own step is the epoch (or training step), so that the media panel's slider walks epochs; a
        step that does not advance joins the row logged last (W&B drops rows logged at an earlier step)."""
        self._last_step = max(int(step), self._last_step)
        self.run.log(row, step=self._last_step)

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
        title = f"{self.title}: epoch {epoch} of {n_epochs}"
        pixels = map_figure(n_epochs, n_slices, self.options["scale"], self.options["chance"]).render(
            grid, curve, smoothed, title
        )
        lo, hi = self.options["scale"]
        chance = self.options["chance"]
        caption = (
            f"{title}. Learning-curve map so far: KNN accuracy by epoch (x) and time slice (y), as in the "
            f"report; colour scale {lo:g}-{hi:g} for the whole study"
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

    def mirror_record(self) -> dict | None:
        """summary.json's ``wandb`` entry as things stand, or None when W&B is off (no entry)."""
        return None if self.mirror is None else self.mirror.record(expected=COMPLETE if self.run else None)

    def finish(self, curves: pd.DataFrame | None, summary: dict, ok: bool) -> dict | None:
        """End the mirror (on a done run: its last map, figure, results and record artifact; the record
        files must be written). Returns summary.json's ``wandb`` entry as it now stands."""
        if self.run is not None:
            self._guarded("finish", self._finish, summary, ok)
        return self.mirror_record()

    def _finish(self, summary: dict, ok: bool) -> None:
        self._check_mirror_file()
        if ok:
            if self._rows and self._last_media != max(self._rows):
                last = max(self._rows)
                self._log({self.x_axis: last, **self._media(last)}, last)
            media = companion_image(self.runner, self.run_dir)
            if media is not None:
                key, pixels, caption = media
                self._log(
                    {self.x_axis: self._last_step, key: self._wandb.Image(pixels, caption=caption)}, self._last_step
                )
            if record_files(self.run_dir):
                self.run.log_artifact(self._record_artifact(summary))
            results = summary_scalars(summary, self.config)
            results.pop("run_id", None)
            movement = self._map_movement()
            if movement is not None:
                results[MOVEMENT_KEY] = movement
            self.run.summary.update({**results, COMPLETE_KEY: 1})
        self.run.finish(exit_code=0 if ok else 1)
        self._check_mirror_file()  # (a failure here needs no second finish: W&B ignores one)
        self.run = None
        if ok:
            self._state().state = COMPLETE

    def _map_movement(self) -> float | None:
        """The health table's map movement (mean over time slices of |last epoch - epoch 1|)."""
        if 1 not in self._rows or len({len(c) for c in self._rows.values()}) != 1:
            return None
        return map_movement(np.stack([self._rows[e] for e in sorted(self._rows)]))

    def _record_artifact(self, summary: dict):
        """The run's record files, so that its map and results can be rebuilt from W&B alone. W&B copies
        each file into its staging area (inside the run's W&B folder) as it is added."""
        artifact = self._wandb.Artifact(
            re.sub(r"[^A-Za-z0-9_.-]", "_", f"record-{self.run_id}"),
            type=RECORD_ARTIFACT_TYPE,
            description=f"record files of run {self.run_id} (the run folder's own copies)",
            metadata={k: summary[k] for k in ("run_id", "study", "cell", "replicate") if k in summary},
        )
        for name in record_files(self.run_dir):
            artifact.add_file(str(self.run_dir / name), name=name)
        return artifact
