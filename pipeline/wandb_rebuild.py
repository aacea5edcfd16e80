"""Rebuild runs' W&B mirrors from their run folders, offline, for ``slurm/wandb_sync.sh`` to upload.

    python -m pipeline.wandb_rebuild [--all] [--dry-run] PATH...

PATH is a run folder, a study folder or an outputs root. By default only done runs whose mirror was
lost (summary.json: ``wandb.state`` ``failed``, and not rebuilt before) are rebuilt; ``--all`` also
rebuilds done runs that have no mirror at all (run with W&B off). A rebuilt mirror is a new offline
W&B run in the run folder (the next attempt id, ``<run id>-a<n>``) holding what the live mirror logs:
the per-epoch readouts and map metrics at W&B step = epoch, the map images, the summary and the
record artifact, replayed from config.yaml, readouts.parquet, curves.parquet and summary.json. The
run's record is left as it was; ``wandb/rebuilt.json`` in the run folder says that it was rebuilt.

The sequence studies' mirrors are rebuilt exactly (same history keys and values as a live mirror,
tested); a companion run's history holds its readouts table's rows (``<split>/<metric>`` by epoch),
which are not all of what its runner reported live.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from .runfolder import atomic_write_json, is_done, utc_now
from .schema import CONFIG, CURVES, READOUTS, SUMMARY
from .wandb_state import FAILED, REBUILT, mirror_entry

LIVE_ONLY_SPLITS = {"sequence": ("test",)}  # the sequence runner logs its test readouts in the summary only


def run_folders(path: Path) -> list[Path]:
    """The run folders under ``path`` (itself, ``<path>/runs/*`` or ``<path>/*/runs/*``), sorted."""
    path = Path(path)
    if (path / SUMMARY).is_file() or (path / CONFIG).is_file():
        return [path]
    found = [*path.glob("runs/*/"), *path.glob("*/runs/*/")]
    return sorted(p for p in found if p.is_dir() and not p.is_symlink())


def needs_rebuild(run_dir: Path, everything: bool = False) -> bool:
    """A done run whose mirror failed (or, with ``everything``, that has none) and was not rebuilt yet."""
    run_dir = Path(run_dir)
    if (run_dir / "wandb" / REBUILT).exists() or not is_done(run_dir):
        return False
    entry = mirror_entry(run_dir)
    return (entry is None and everything) or (entry is not None and entry.get("state") == FAILED)


def epoch_readouts(readouts: pd.DataFrame, runner: str) -> dict[int, dict[str, float]]:
    """Per epoch, the readouts as the runner reported them live (``<split>/<metric>``: value)."""
    skip = LIVE_ONLY_SPLITS.get(runner, ())
    rows = readouts[~readouts["split"].isin(skip)]
    out: dict[int, dict[str, float]] = {}
    for epoch, split, metric, value in rows[["epoch", "split", "metric", "value"]].itertuples(index=False):
        out.setdefault(int(epoch), {})[f"{split}/{metric}"] = float(value)
    return out


def rebuild(run_dir: Path) -> dict | None:
    """Replay one run folder into a new offline W&B run; its mirror state (as summary.json would say)."""
    from .tracking import Tracker  # imports the study runners (torch): only when there is work

    run_dir = Path(run_dir)
    cfg = OmegaConf.load(run_dir / CONFIG)
    if not isinstance(cfg, DictConfig):
        raise ValueError(f"{run_dir / CONFIG}: not a run's config (a mapping)")
    summary = json.loads((run_dir / SUMMARY).read_text())
    curves = pd.read_parquet(run_dir / CURVES)
    readouts = pd.read_parquet(run_dir / READOUTS)
    tracker = Tracker(cfg, run_dir.name, run_dir)
    by_epoch = curves.groupby("epoch", sort=True) if len(curves) else None
    per_epoch = epoch_readouts(readouts, str(cfg.study.runner))
    epochs = sorted(set(per_epoch) | (set(by_epoch.groups) if by_epoch is not None else set()))
    for epoch in epochs:
        rows = by_epoch.get_group(epoch) if by_epoch is not None and epoch in by_epoch.groups else None
        tracker.log_epoch(epoch, per_epoch.get(epoch, {}), rows)
    state = tracker.finish(curves, summary, ok=True)
    if state is not None and state.get("state") != FAILED:
        atomic_write_json(run_dir / "wandb" / REBUILT, {"wandb_id": state["id"], "rebuilt": utc_now()})
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.wandb_rebuild", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run folders, study folders or outputs roots")
    parser.add_argument("--all", action="store_true", help="also rebuild done runs that had W&B off")
    parser.add_argument("--dry-run", action="store_true", help="list the runs to rebuild; write nothing")
    args = parser.parse_args(argv)
    todo = [d for path in args.paths for d in run_folders(path) if needs_rebuild(d, args.all)]
    print(f"wandb_rebuild: {len(todo)} run(s) to rebuild", flush=True)
    if args.dry_run:
        print("".join(f"  {d}\n" for d in todo), end="")
        return 0
    os.environ["WANDB_MODE"] = "offline"  # a rebuilt mirror is uploaded by wandb sync, like any offline run
    failed = 0
    for run_dir in todo:
        state = rebuild(run_dir) or {}
        ok = state.get("state") not in (FAILED, None)
        failed += not ok
        print(f"  {'rebuilt' if ok else 'FAILED '} {run_dir}" + ("" if ok else f": {state.get('error')}"), flush=True)
    print(f"wandb_rebuild: rebuilt {len(todo) - failed}, failed {failed}")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
