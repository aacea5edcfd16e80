"""One run: from a validated configuration to a finished run folder."""
from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from . import identity
from .data import class_pairs, load_dataset
from .design import Design, run_seed
from .model import build_model
from .probes import build_probes
from .record import RunRecord, claim_state, is_done, read_status, try_claim
from .splits import make_splits
from .tracking import Tracker
from .train import resolve_device, train_run

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    state: str  # done | failed | skipped-done | skipped-claimed
    error: str | None = None


def runs_root(cfg: DictConfig) -> Path:
    return Path(cfg.paths.root).expanduser().resolve() / cfg.study.name / "runs"


def with_design(cfg: DictConfig, design: Design, class_names: list[str]) -> DictConfig:
    """The run's config with its design block filled in (what config.yaml records)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pair = design.pair
        cfg.design = {
            "data_source": design.data_source, "pair": design.pair, "replicate": design.replicate,
            "participant": design.participant, "assignment": design.assignment,
            "labels": cfg.labels, "class_names": list(class_names),
            "rng_seed": run_seed(design.data_source, design.pair, design.replicate, cfg.labels),
        }
    return cfg


def pair_class_names(cfg: DictConfig, pair: int) -> list[str]:
    first, second = class_pairs(int(cfg.dataset.n_classes))[pair]
    names = list(cfg.dataset.class_names)
    return [names[first], names[second]]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def execute(cfg: DictConfig) -> RunOutcome:
    """Run ``cfg`` (which carries its design block) unless its folder is done or claimed."""
    rid = identity.run_id(cfg)
    run_dir = runs_root(cfg) / rid
    expected = cfg.get("expected_run_id")
    if expected and expected != rid:
        raise RuntimeError(
            f"this job was launched as run {expected}, but the configuration it composes now gives "
            f"run {rid}: conf/ or the code changed while the job waited. Relaunch the sweep.")
    if is_done(run_dir):
        log.info("run %s is already done: skipping (%s)", rid, run_dir)
        return RunOutcome(rid, run_dir, "skipped-done")
    claim = try_claim(run_dir)
    if claim is None:
        owner = claim_state(run_dir) or {}
        log.warning("run %s is being computed by %s (pid %s): leaving it alone",
                    rid, owner.get("host"), owner.get("pid"))
        return RunOutcome(rid, run_dir, "skipped-claimed")

    record = RunRecord(run_dir, rid)
    handler = logging.FileHandler(run_dir / "run.log", mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    tracker = None
    try:
        record.write_config(OmegaConf.to_yaml(cfg, resolve=True))
        record.mark_running()
        log.info("run %s -> %s", rid, run_dir)
        tracker = Tracker(cfg.logger, rid, run_dir, cfg.study.name,
                          OmegaConf.to_container(cfg, resolve=True))
        result, summary = _train_and_summarise(cfg, rid, claim, tracker)
        record.write_results(result.curves, result.readouts, summary)
        tracker.finish(result.curves, summary, ok=True)
        record.mark_done(test_accuracy=summary["test_accuracy"])
        log.info("run %s done: test accuracy %.3f", rid, summary["test_accuracy"])
        return RunOutcome(rid, run_dir, "done")
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, then re-raised
        record.mark_failed(exc)
        if tracker is not None:
            tracker.finish(None, {}, ok=False)
        log.error("run %s failed: %s", rid, exc)
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        claim.release()


def _train_and_summarise(cfg: DictConfig, rid: str, claim, tracker: Tracker):
    t0 = time.perf_counter()
    design = cfg.design
    seed = int(design.rng_seed)
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    device = resolve_device(cfg.trainer.device)
    torch.manual_seed(seed)
    if device.type == "cuda":
        # CPU kernels used here are deterministic for a fixed thread count; on
        # CUDA, ask for deterministic kernels (cuDNN's LSTM is otherwise not).
        # Not called on CPU: the call imports torch's compiler stack (~3 s).
        torch.use_deterministic_algorithms(True, warn_only=True)
    rng = np.random.default_rng(seed)

    data = load_dataset(cfg.dataset)
    t_data = time.perf_counter() - t0
    pair = class_pairs(len(data.class_names))[int(design.pair)]
    splits = make_splits(data.x, data.y, pair, rng, shuffle_labels=cfg.labels == "shuffled",
                         test_fraction=cfg.split.test_fraction, val_fraction=cfg.split.val_fraction,
                         oversample=cfg.split.oversample)
    _, time_slices, n_features = data.x.shape
    model = build_model(cfg.model, time_slices, n_features)
    probes = build_probes(cfg.probe)
    generator = torch.Generator().manual_seed(seed)

    def on_epoch(epoch, readouts, curves):
        claim.heartbeat()
        tracker.log_epoch(epoch, readouts, curves)

    result = train_run(model, splits, probes, epochs=int(cfg.trainer.epochs), lr=float(cfg.trainer.lr),
                       batch_size=int(cfg.trainer.batch_size), shuffle=bool(cfg.trainer.shuffle),
                       device=device, generator=generator, on_epoch=on_epoch)
    summary = {
        "run_id": rid, "study": cfg.study.name, "data_source": design.data_source,
        "dataset": cfg.dataset.name, "pair": int(design.pair), "class_names": list(design.class_names),
        "replicate": int(design.replicate), "labels": cfg.labels,
        "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
        "n_train": len(splits.y_train), "n_val": len(splits.y_val), "n_test": len(splits.y_test),
        "time_slices": int(time_slices), "n_features": int(n_features),
        "hidden_size": int(model.lstm.hidden_size), "epochs": int(cfg.trainer.epochs),
        "device": str(device), "torch": torch.__version__, "git_commit": _git_commit(),
        "seconds": {"data": t_data, "training": result.seconds_training, "probes": result.probe_seconds,
                    "total": time.perf_counter() - t0},
    }
    return result, summary
