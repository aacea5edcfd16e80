"""Runners of the critical-period studies: ``study=critical_pathways`` (two pathways, one deprived
during a window) and ``study=critical_matrix_completion`` (a deficit matrix before the target)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ...blas import single_threaded_blas
from ...config import ConfigError, check_number
from ...deficit import Window
from ...schema import empty_curves
from ..base import RunContext, RunResult, StudyRunner, register
from ..common import instance_seed, readout_rows
from .linear_nets import imbalance, train_matrix_completion, train_two_pathways

# added to both imbalances (fractions of the mode's strength) of the amplification ratio, so that it is
# defined, and bounded by (1 + eps) / eps, where the deficit left (almost) no imbalance
AMPLIFICATION_EPS = 1e-3


def amplification(start: float, last: float, eps: float = AMPLIFICATION_EPS) -> float:
    """How much the imbalance a deficit left grew by the end: ``(|last| + eps) / (|start| + eps)``."""
    return (abs(last) + eps) / (abs(start) + eps)


def _deficit_effect(shares: pd.DataFrame, window: Window, steps: int) -> dict:
    """Mode 1's imbalance when the deficit ended and at the end, and how much it grew in between."""
    end = min(window.end, steps)
    # the first recorded state at or after the deficit's end
    end_step = next((t for t in sorted(shares.step.unique()) if t >= end), steps)
    start = imbalance(shares, 1, end_step)
    last = imbalance(shares, 1, steps)
    # A plain ratio last / start is unstable where the deficit leaves ~no imbalance (late onsets:
    # |start| down to 1e-12, ratios of -4760 or 572 at depth 8); the amplification is the ratio of
    # the sizes with AMPLIFICATION_EPS added to both: the plain ratio where both are >> eps, 1 where
    # both are << eps (no effect), never above (1 + eps) / eps
    return {
        "imbalance_mode1_at_deficit_end": start,
        "imbalance_mode1_final": last,
        "imbalance_growth_mode1": abs(last) - abs(start),
        "amplification_mode1": amplification(start, last),
    }


@register
class CriticalPathwaysRunner(StudyRunner):
    name = "critical_pathways"

    def validate(self, cfg: DictConfig) -> None:
        # each key's type, bounds and allowed values: its schema (pipeline/config_schema.py), checked by the planner
        if cfg.study.get("init") == "aligned":
            check_number(cfg, "study.aligned_noise", 0, None)

    def design_extras(self, cfg: DictConfig, design) -> dict:
        s = cfg.study
        return {"deficit_window": [int(s.deficit_onset), int(s.deficit_onset) + int(s.deficit_length)]}

    def run(self, cfg: DictConfig, ctx: RunContext) -> RunResult:
        t0 = time.perf_counter()
        s = cfg.study
        window = Window(int(s.deficit_onset), int(s.deficit_length))
        rng = np.random.default_rng(instance_seed(cfg, ctx))

        def on_record(step: int, loss: float, share_b: float) -> None:
            if step % 100 == 0:
                ctx.on_step(step, {"train/loss": loss, "share_b/mode1": share_b}, empty_curves())

        with single_threaded_blas():
            result = train_two_pathways(
                depth=int(s.depth),
                width=int(s.width),
                lr=float(cfg.trainer.lr),
                steps=int(cfg.trainer.steps),
                window=window,
                init_scale=float(s.init_scale),
                mirrored=s.init == "mirrored",
                aligned=s.init == "aligned",
                aligned_noise=float(s.get("aligned_noise", 0.1)),
                rng=rng,
                record_every=int(s.record_every),
                levels=int(s.hierarchy_levels),
                on_record=on_record,
            )
        summary = self._summary(s, cfg.trainer, window, result)
        summary["seconds"] = {"training": result.seconds, "total": time.perf_counter() - t0}
        readouts = readout_rows(result.losses, "step", {"loss": ("train", "loss")})
        tables = {"pathway_shares": result.shares, "pathway_loss": result.losses}
        if "analytic" in result.extra:
            tables["pathway_analytic"] = result.extra["analytic"]
        return RunResult(empty_curves(), readouts, summary, tables)

    @staticmethod
    def _summary(s, trainer, window: Window, result) -> dict:
        shares = result.shares
        steps = int(trainer.steps)
        final = shares[shares.step == steps].sort_values("mode")
        summary = {
            "depth": int(s.depth),
            "width": int(s.width),
            "deficit_onset": window.onset,
            "deficit_length": window.length,
            "deficit_window": [window.onset, window.end],
            "init": str(s.init),
            "init_scale": float(s.init_scale),
            "lr": float(trainer.lr),
            "steps": steps,
            "final_loss": result.final_loss,
            "final_share_b": {int(m): float(v) for m, v in zip(final["mode"], final.share_b)},
            "final_share_b_mode1": float(final.share_b.iloc[0]),
            "singular_values": [float(v) for v in result.singular_values],
        }
        if window and window.onset < steps:
            summary.update(_deficit_effect(shares, window, steps))
        return summary


@register
class CriticalMatrixCompletionRunner(StudyRunner):
    name = "critical_matrix_completion"

    def validate(self, cfg: DictConfig) -> None:
        # each key's type, bounds and allowed values: its schema (pipeline/config_schema.py); here what
        # relates keys to each other
        size = int(cfg.study.size)
        for key in ("study.rank_deficit", "study.rank_target"):
            rank = int(OmegaConf.select(cfg, key))
            if rank > size:
                raise ConfigError(f"{key}={rank}: must be at most study.size={size}")
        n_observed = int(cfg.study.n_observed)
        if n_observed > size * size:
            raise ConfigError(f"study.n_observed={n_observed}: must be at most study.size^2={size * size}")

    def run(self, cfg: DictConfig, ctx: RunContext) -> RunResult:
        t0 = time.perf_counter()
        s = cfg.study
        rng = np.random.default_rng(instance_seed(cfg, ctx))

        def on_record(step: int, train: float, test: float) -> None:
            if step % 500 == 0:
                ctx.on_step(step, {"train/loss": train, "test/error": test}, empty_curves())

        with single_threaded_blas():
            result = train_matrix_completion(
                depth=int(s.depth),
                n=int(s.size),
                rank_deficit=int(s.rank_deficit),
                rank_target=int(s.rank_target),
                n_observed=int(s.n_observed),
                deficit_steps=int(s.deficit_steps),
                steps=int(cfg.trainer.steps),
                lr=float(cfg.trainer.lr),
                init_scale=float(s.init_scale),
                rng=rng,
                record_every=int(s.record_every),
                n_singular=int(s.n_singular),
                dtype=np.dtype(str(s.dtype)).type,
                on_record=on_record,
            )
        errors, svs = result.errors, result.singular_values
        last = int(errors.step.max())
        final_sv = svs[svs.step == last].sort_values("index").value.to_numpy()
        summary = {
            "depth": int(s.depth),
            "deficit_steps": int(s.deficit_steps),
            "steps": int(cfg.trainer.steps),
            "lr": float(cfg.trainer.lr),
            "init_scale": float(s.init_scale),
            "n_observed": int(s.n_observed),
            "rank_deficit": int(s.rank_deficit),
            "rank_target": int(s.rank_target),
            "final_test_error": result.final_test_error,
            "final_train_loss": result.final_train_loss,
            "final_unobserved_error": float(errors.unobserved_error.iloc[-1]),
            "final_singular_values": [float(v) for v in final_sv],
            "seconds": {"training": result.seconds, "total": time.perf_counter() - t0},
        }
        readouts = readout_rows(errors, "step", {"train_loss": ("train", "loss"), "test_error": ("test", "mse")})
        tables = {"test_error": errors, "singular_values": svs}
        return RunResult(empty_curves(), readouts, summary, tables)
