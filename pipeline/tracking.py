"""W&B mirror of a run record (optional; the run folder is the source of truth).

The mode comes from ``WANDB_MODE`` (offline, online, disabled) and is never
hard-coded, because an explicit ``mode=`` would override the user's choice.
Unset means disabled here, so that nothing tries the network by surprise.
The W&B run id is the run id, with ``resume="allow"``: a requeued job continues
the same W&B run instead of creating a duplicate.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)
MODES = ("offline", "online", "disabled")


def wandb_mode() -> str:
    mode = os.environ.get("WANDB_MODE", "disabled").strip().lower() or "disabled"
    if mode == "dryrun":
        mode = "offline"
    if mode not in MODES:
        raise ValueError(f"WANDB_MODE={mode!r}: allowed values are {', '.join(MODES)}")
    return mode


class Tracker:
    """Mirrors per-epoch readouts and the learning-curve map to W&B (or does nothing)."""

    def __init__(self, logger_cfg, run_id: str, run_dir: Path, group: str, config: dict):
        self.run = None
        if wandb_mode() == "disabled":
            return
        import wandb  # imported only when used: it costs about a second

        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            project=logger_cfg.wandb.project, entity=logger_cfg.wandb.entity,
            id=run_id, name=run_id, resume="allow", group=group, job_type="run",
            dir=str(run_dir), config=config, reinit="finish_previous",
        )

    def log_epoch(self, epoch: int, readouts: dict, curves: pd.DataFrame) -> None:
        if self.run is None:
            return
        row = {"epoch": epoch, **readouts}
        knn = curves[(curves.probe == "knn") & (curves.split == "train")] if curves is not None and len(curves) else []
        if len(knn):
            row["knn/mean"] = float(knn.value.mean())
            row["knn/first_slice"] = float(knn.value.iloc[0])
            row["knn/last_slice"] = float(knn.value.iloc[-1])
        self.run.log(row, step=epoch)

    def finish(self, curves: pd.DataFrame | None, summary: dict, ok: bool) -> None:
        if self.run is None:
            return
        import wandb

        knn = curves[(curves.probe == "knn")] if curves is not None else []
        if len(knn):
            self.run.log({"learning_curve_map": wandb.Table(dataframe=knn.reset_index(drop=True))})
        for key in ("test_accuracy", "test_loss"):
            if key in summary:
                self.run.summary[key] = summary[key]
        self.run.finish(exit_code=0 if ok else 1)
