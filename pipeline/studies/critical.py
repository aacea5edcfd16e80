"""Critical-period studies in deep linear networks (docs/science.md 2d; Kleinman, Achille & Soatto, ICLR 2024).

``study=critical_pathways``: two deep linear pathways summed into one output,
pathway b deprived (no parameter update) during ``[deficit_onset,
deficit_onset + deficit_length)``; records each pathway's share of each singular
mode over training (``pathway_shares.parquet``).

``study=critical_matrix_completion``: a deep linear factorisation trained on a
rank-10 deficit matrix for ``deficit_steps`` steps, then on the rank-5 target;
records the test error on all entries (``test_error.parquet``) and the top
singular values (``singular_values.parquet``) over time.

Both put every parameter under ``study.`` and ignore the headline study's
config groups (they do not enter these runs' ids). See
docs/companion_critical_multitask.md.
"""

from __future__ import annotations

import time
import zlib

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ..config import ConfigError, check_choice, check_int, check_number
from ..deficit import Window
from . import RunContext, RunResult, StudyRunner, register

# top-level keys of the composed config that belong to the sequence studies
IGNORED = ("data_source", "dataset", "model", "trainer", "probe", "split", "labels", "pair", "deficit")
CURVE_COLUMNS = ["probe", "split", "epoch", "time_slice", "value"]
# added to both imbalances (fractions of the mode's strength) of the amplification ratio, so that it is
# defined, and bounded by (1 + eps) / eps, where the deficit left (almost) no imbalance
AMPLIFICATION_EPS = 1e-3


def empty_curves() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "probe": pd.Series(dtype=str),
            "split": pd.Series(dtype=str),
            "epoch": pd.Series(dtype=np.int32),
            "time_slice": pd.Series(dtype=np.int32),
            "value": pd.Series(dtype=np.float64),
        }
    )


def instance_seed(cfg: DictConfig, ctx: RunContext) -> int:
    """The seed of the run's problem instance (data, mask, initial weights).

    ``study.paired: true`` draws it from the study and the replicate alone, so
    all cells of one replicate share the instance and differ only by their
    factors (a paired design: the deficit is the only difference between a
    deprived run and its control). ``false``: from the run's own seed.
    """
    if not cfg.study.get("paired", True):
        return int(ctx.rng_seed)
    entropy = [zlib.crc32(str(cfg.study.name).encode()), int(cfg.design.replicate)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def check_bool(cfg: DictConfig, key: str) -> None:
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, key)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: allowed values are true, false")


def blas_one_thread():
    # the matrices are tiny: one BLAS thread per run (a sweep runs one run per core)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _readouts(frame: pd.DataFrame, step_col: str, columns: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """Readout rows ``epoch, split, metric, value`` (epoch = training step; steps >= 1)."""
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


def amplification(start: float, last: float, eps: float = AMPLIFICATION_EPS) -> float:
    """How much the imbalance a deficit left grew by the end: ``(|last| + eps) / (|start| + eps)``."""
    return (abs(last) + eps) / (abs(start) + eps)


@register
class CriticalPathwaysRunner(StudyRunner):
    name = "critical_pathways"
    ignored_keys = IGNORED

    def validate(self, cfg: DictConfig) -> None:
        check_int(cfg, "study.depth", 1)
        check_int(cfg, "study.width", 1)
        check_int(cfg, "study.steps", 1)
        check_int(cfg, "study.deficit_onset", 0)
        check_int(cfg, "study.deficit_length", 0)
        check_int(cfg, "study.record_every", 1)
        check_int(cfg, "study.hierarchy_levels", 1)
        check_number(cfg, "study.lr", 0, None)
        check_number(cfg, "study.init_scale", 0, None)
        check_choice(cfg, "study.init", ("mirrored", "independent", "aligned"))
        if cfg.study.get("init") == "aligned":
            check_number(cfg, "study.aligned_noise", 0, None)
        check_bool(cfg, "study.paired")

    def design_extras(self, cfg: DictConfig, design) -> dict:
        s = cfg.study
        return {"deficit_window": [int(s.deficit_onset), int(s.deficit_onset) + int(s.deficit_length)]}

    def run(self, cfg: DictConfig, ctx: RunContext) -> RunResult:
        from ..linear_nets import imbalance, train_two_pathways

        t0 = time.perf_counter()
        s = cfg.study
        window = Window(int(s.deficit_onset), int(s.deficit_length))
        rng = np.random.default_rng(instance_seed(cfg, ctx))

        def on_record(step: int, loss: float, share_b: float) -> None:
            if step % 100 == 0:
                ctx.on_step(step, {"train/loss": loss, "share_b/mode1": share_b}, empty_curves())

        with blas_one_thread():
            result = train_two_pathways(
                depth=int(s.depth),
                width=int(s.width),
                lr=float(s.lr),
                steps=int(s.steps),
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
        shares = result.shares
        steps = int(s.steps)
        final = shares[shares.step == steps].sort_values("mode")
        summary = {
            "depth": int(s.depth),
            "width": int(s.width),
            "deficit_onset": window.onset,
            "deficit_length": window.length,
            "deficit_window": [window.onset, window.end],
            "init": str(s.init),
            "init_scale": float(s.init_scale),
            "lr": float(s.lr),
            "steps": steps,
            "final_loss": result.final_loss,
            "final_share_b": {int(m): float(v) for m, v in zip(final["mode"], final.share_b)},
            "final_share_b_mode1": float(final.share_b.iloc[0]),
            "singular_values": [float(v) for v in result.singular_values],
        }
        end = min(window.end, steps)
        recorded = sorted(shares.step.unique())
        if window and window.onset < steps:
            # the first recorded state at or after the deficit's end
            end_step = next((t for t in recorded if t >= end), steps)
            start = imbalance(shares, 1, end_step)
            last = imbalance(shares, 1, steps)
            # A plain ratio last / start is unstable where the deficit leaves ~no imbalance (late onsets:
            # |start| down to 1e-12, ratios of -4760 or 572 at depth 8); the amplification is the ratio of
            # the sizes with AMPLIFICATION_EPS added to both: the plain ratio where both are >> eps, 1 where
            # both are << eps (no effect), never above (1 + eps) / eps
            summary.update(
                {
                    "imbalance_mode1_at_deficit_end": start,
                    "imbalance_mode1_final": last,
                    "imbalance_growth_mode1": abs(last) - abs(start),
                    "amplification_mode1": amplification(start, last),
                }
            )
        summary["seconds"] = {"training": result.seconds, "total": time.perf_counter() - t0}
        readouts = _readouts(result.losses, "step", {"loss": ("train", "loss")})
        tables = {"pathway_shares": shares, "pathway_loss": result.losses}
        if "analytic" in result.extra:
            tables["pathway_analytic"] = result.extra["analytic"]
        return RunResult(empty_curves(), readouts, summary, tables)


@register
class CriticalMatrixCompletionRunner(StudyRunner):
    name = "critical_matrix_completion"
    ignored_keys = IGNORED

    def validate(self, cfg: DictConfig) -> None:
        check_int(cfg, "study.depth", 1)
        size = check_int(cfg, "study.size", 2)
        check_int(cfg, "study.deficit_steps", 0)
        check_int(cfg, "study.steps", 1)
        check_int(cfg, "study.record_every", 1)
        check_int(cfg, "study.n_singular", 1)
        for key in ("study.rank_deficit", "study.rank_target"):
            rank = check_int(cfg, key, 1)
            if rank > size:
                raise ConfigError(f"{key}={rank}: must be at most study.size={size}")
        n_observed = check_int(cfg, "study.n_observed", 1)
        if n_observed > size * size:
            raise ConfigError(f"study.n_observed={n_observed}: must be at most study.size^2={size * size}")
        check_number(cfg, "study.lr", 0, None)
        check_number(cfg, "study.init_scale", 0, None)
        check_choice(cfg, "study.dtype", ("float32", "float64"))
        check_bool(cfg, "study.paired")

    def run(self, cfg: DictConfig, ctx: RunContext) -> RunResult:
        from ..linear_nets import train_matrix_completion

        t0 = time.perf_counter()
        s = cfg.study
        rng = np.random.default_rng(instance_seed(cfg, ctx))

        def on_record(step: int, train: float, test: float) -> None:
            if step % 500 == 0:
                ctx.on_step(step, {"train/loss": train, "test/error": test}, empty_curves())

        with blas_one_thread():
            result = train_matrix_completion(
                depth=int(s.depth),
                n=int(s.size),
                rank_deficit=int(s.rank_deficit),
                rank_target=int(s.rank_target),
                n_observed=int(s.n_observed),
                deficit_steps=int(s.deficit_steps),
                steps=int(s.steps),
                lr=float(s.lr),
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
            "steps": int(s.steps),
            "lr": float(s.lr),
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
        readouts = _readouts(errors, "step", {"train_loss": ("train", "loss"), "test_error": ("test", "mse")})
        tables = {"test_error": errors, "singular_values": svs}
        return RunResult(empty_curves(), readouts, summary, tables)
