"""Helpers shared by the companion-study runners (critical, multitask, dense_sample)."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from .base import RunContext


def instance_seed(cfg: DictConfig, ctx: RunContext) -> int:
    """The seed of the run's problem instance (data, mask, initial weights).

    ``study.paired: true`` draws it from the study and the replicate alone, so all cells of one
    replicate share the instance and differ only by their factors (a paired design); ``false``:
    from the run's own seed.
    """
    if not cfg.study.get("paired", True):
        return int(ctx.rng_seed)
    entropy = [zlib.crc32(str(cfg.study.name).encode()), int(cfg.design.replicate)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def readout_rows(frame: pd.DataFrame, step_col: str, columns: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """Readout rows ``epoch, split, metric, value`` from a per-step table (epoch = step; steps >= 1)."""
    sub = frame[frame[step_col] >= 1]
    parts = [
        pd.DataFrame(
            {
                "epoch": sub[step_col].to_numpy(dtype=np.int32),
                "split": split,
                "metric": metric,
                "value": sub[column].to_numpy(dtype=np.float64),
            }
        )
        for column, (split, metric) in columns.items()
    ]
    return pd.concat(parts, ignore_index=True)


def set_up_torch(cfg: DictConfig, seed: int):
    """Seed torch and pick the run's device (torch imported here: the numpy studies never pay for it)."""
    import torch

    from ..allocator import keep_freed_memory
    from ..train import resolve_device

    keep_freed_memory()
    if cfg.trainer.get("num_threads"):
        torch.set_num_threads(int(cfg.trainer.num_threads))
    device = resolve_device(cfg.trainer.device)
    torch.manual_seed(seed)
    if device.type == "cuda":
        # CPU kernels used here are deterministic for a fixed thread count; on CUDA, ask for
        # deterministic kernels (cuDNN's LSTM is otherwise not). Not called on CPU: the call imports
        # torch's compiler stack (~3 s).
        torch.use_deterministic_algorithms(True, warn_only=True)
    return device
