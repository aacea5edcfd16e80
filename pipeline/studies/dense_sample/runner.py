"""Runner of ``study=dense_sample``: train the small VGG on a dense-sample glyph set and follow
category structure per layer at log-spaced checkpoints; fit the learning curves."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch import nn

from ...config import ConfigError, as_dict
from ...probes import ProbeContext
from ...probes.category_structure import CategoryStructureProbe
from ...probes.gradient_spectrum import GradientSpectrumProbe
from ...schema import empty_curves
from ...train import evaluate_model, resolve_device
from ..base import RunContext, RunResult, StudyRunner, register
from ..common import set_up_torch
from .data import CLASS_NAMES, distortion_groups, generate, split_per_class
from .fits import checkpoint_steps, fit_learning_curve
from .network import SmallVGG, n_weights

log = logging.getLogger(__name__)
# evaluation batch (no BatchNorm in SmallVGG: the batch size changes nothing but memory)
EVAL_BATCH = 500


def data_seed(cfg) -> int:
    """The generator's seed of a run: ``study.data.seed`` itself (``draw: fixed``) or mixed with the
    replicate number (``draw: replicate``), so that replicates see independent, reproducible data sets."""
    seed = int(cfg.study.data.seed)
    if cfg.study.data.get("draw", "fixed") == "fixed":
        return seed
    return int(np.random.SeedSequence([seed, int(cfg.design.replicate)]).generate_state(1)[0])


@register
class DenseSampleRunner(StudyRunner):
    name = "dense_sample"
    # headline keys that do not affect these runs (trainer.device / num_threads
    # are read but are not semantic anyway); `probe` stays: its
    # gradient_spectrum block is honoured here

    def validate(self, cfg: DictConfig) -> None:
        if cfg.get("labels", "real") != "real":
            raise ConfigError(f"labels={cfg.labels!r}: study dense_sample has no shuffled-label runs; allowed: real")
        # each key's type, bounds and allowed values: its schema (pipeline/config_schema.py), checked by the
        # planner; here what several keys together must satisfy
        data = cfg.study.data
        if data.train_per_class >= data.per_class:
            raise ConfigError(
                f"study.data.train_per_class={data.train_per_class} must be < study.data.per_class="
                f"{data.per_class} (the rest of each class is the test set)"
            )
        n_test = data.per_class - data.train_per_class
        per = cfg.probe.category_structure.get("per_class", 50)
        split = cfg.probe.category_structure.get("split", "test")
        available = n_test if split == "test" else data.train_per_class
        if per > available:
            raise ConfigError(
                f"probe.category_structure.per_class={per}: the {split} set has only {available} "
                f"exemplars per class; allowed: 2..{available}"
            )
        if len(list(data.scale)) != 2 or len(list(data.stroke)) != 2:
            raise ConfigError("study.data.scale and study.data.stroke must be [low, high] pairs")
        side = int(data.size) // 2 ** len(cfg.study.model.channels)
        if side < 1:
            raise ConfigError(
                f"study.data.size={data.size} is too small for {len(cfg.study.model.channels)} "
                f"pooling blocks (study.model.channels); allowed: >= "
                f"{2 ** len(cfg.study.model.channels)}"
            )
        try:
            CategoryStructureProbe(**self._category_options(cfg))
            if cfg.probe.get("gradient_spectrum") and cfg.probe.gradient_spectrum.get("enabled", False):
                self._gradient_probe(cfg)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        resolve_device(cfg.trainer.device)

    def design_extras(self, cfg: DictConfig, design) -> dict:
        return {"class_names": list(CLASS_NAMES), "data_seed": data_seed(cfg)}

    @staticmethod
    def _category_options(cfg: DictConfig) -> dict:
        options = as_dict(cfg.probe.category_structure)
        options.pop("enabled", None)
        for key in ("schedule", "per_decade", "epochs"):  # the study's checkpoints decide
            options.pop(key, None)
        return options

    @staticmethod
    def _gradient_probe(cfg: DictConfig) -> GradientSpectrumProbe:
        options = as_dict(cfg.probe.gradient_spectrum)
        options.pop("enabled", None)
        return GradientSpectrumProbe(**options)

    def run(self, cfg: DictConfig, ctx: RunContext) -> RunResult:
        t0 = time.perf_counter()
        device = set_up_torch(cfg, ctx.rng_seed)
        generator = torch.Generator().manual_seed(ctx.rng_seed)
        run = DenseSampleRun(cfg, ctx, device, category=CategoryStructureProbe(**self._category_options(cfg)))
        if cfg.probe.get("gradient_spectrum") and cfg.probe.gradient_spectrum.get("enabled", False):
            run.add_gradient_probe(self._gradient_probe(cfg))
        t_data = run.seconds_data
        seconds_training, seconds_probes = run.train(generator)
        tables = run.tables()
        summary = run.summary(tables["curve_fits"])
        summary["seconds"] = {
            "data": t_data,
            "training": seconds_training - seconds_probes,
            "probes": dict(run.probe_seconds),
            "total": time.perf_counter() - t0,
        }
        # this study's records keep the untyped text columns of their empty curves table
        return RunResult(empty_curves(object), run.readout_frame(), summary, tables)


class DenseSampleRun:
    """One run's data, network, optimiser, probes and the rows recorded so far."""

    def __init__(self, cfg: DictConfig, ctx: RunContext, device: torch.device, category: CategoryStructureProbe):
        tic = time.perf_counter()
        self.cfg, self.ctx, self.device, self.category = cfg, ctx, device, category
        study, d = cfg.study, cfg.study.data
        self.data = data = generate(
            data_seed(cfg),
            per_class=int(d.per_class),
            size=int(d.size),
            rotation_deg=float(d.rotation_deg),
            scale=tuple(d.scale),
            shear=float(d.shear),
            translate=float(d.translate),
            stroke=tuple(d.stroke),
            clutter=int(d.clutter),
            noise=float(d.noise),
        )
        self.train_idx, test_idx = split_per_class(data.y, int(d.train_per_class))
        as_t = lambda a, dt: torch.as_tensor(a, dtype=dt, device=device)
        self.x_train, self.y_train = (
            as_t(data.x[self.train_idx], torch.float32),
            as_t(data.y[self.train_idx], torch.long),
        )
        self.x_test, self.y_test = as_t(data.x[test_idx], torch.float32), as_t(data.y[test_idx], torch.long)
        self.seconds_data = time.perf_counter() - tic

        channels, hidden = tuple(study.model.channels), tuple(study.model.hidden)
        self.model = SmallVGG(int(d.size), channels, hidden, len(data.class_names)).to(device)
        self.optimiser: torch.optim.Optimizer
        trainer = cfg.trainer
        if trainer.optimizer == "adam":
            self.optimiser = torch.optim.Adam(self.model.parameters(), lr=float(trainer.lr))
        else:
            self.optimiser = torch.optim.SGD(self.model.parameters(), lr=float(trainer.lr), momentum=0.9)
        self.spectrum: GradientSpectrumProbe | None = None

        self.n_train, self.batch = len(self.x_train), int(trainer.batch_size)
        self.steps_per_epoch = math.ceil(self.n_train / self.batch)
        self.epochs = int(trainer.epochs)
        self.total = self.steps_per_epoch * self.epochs
        self.checkpoints = checkpoint_steps(self.total, self.steps_per_epoch, float(study.checkpoints.per_decade))
        self.probe_frames: dict[str, list[pd.DataFrame]] = {"category_structure": [], "gradient_spectrum": []}
        self.probe_seconds = {"category_structure": 0.0, "gradient_spectrum": 0.0}
        self.curve_rows: list[tuple] = []
        self.readouts: list[tuple] = []

    def add_gradient_probe(self, probe: GradientSpectrumProbe) -> None:
        probe.set_label_column("distortion", distortion_groups(self.data.distortion[self.train_idx]))
        self.spectrum = probe

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        return evaluate_model(self.model, x, y, EVAL_BATCH)

    def checkpoint(self, step: int, number: int) -> None:
        """The probes at one checkpoint (``step`` optimiser steps done) and the probe set's accuracy."""
        model, per_epoch = self.model, self.steps_per_epoch
        epoch_now = step // per_epoch
        pctx = ProbeContext(
            epoch_now, model, self.x_train, self.y_train, self.x_test, self.y_test, None, lambda x: model(x)[1]
        )
        extra = {"step": np.int64(step), "checkpoint": np.int32(number), "epoch": np.float64(step / per_epoch)}
        tic = time.perf_counter()
        frame = self.category.compute(pctx)
        self.probe_seconds["category_structure"] += time.perf_counter() - tic
        x_probe, y_probe = self.category.probe_set(pctx)
        loss_p, acc_p = self.evaluate(x_probe, torch.as_tensor(y_probe, device=self.device))
        self.curve_rows.append((step, step / per_epoch, "probe_set", "loss", loss_p))
        self.curve_rows.append((step, step / per_epoch, "probe_set", "accuracy", acc_p))
        self.probe_frames["category_structure"].append(frame.assign(**extra))
        spectrum = self.spectrum
        at_epoch_end = step % per_epoch == 0
        if spectrum is not None and at_epoch_end and (step in (0, self.total) or spectrum.schedule.due(epoch_now)):
            tic = time.perf_counter()
            g = spectrum.compute(pctx)
            self.probe_seconds["gradient_spectrum"] += time.perf_counter() - tic
            self.probe_frames["gradient_spectrum"].append(g.assign(**extra))

    def train(self, generator: torch.Generator) -> tuple[float, float]:
        """Every epoch, with the checkpoints due; returns the seconds of the loop and of its probes."""
        tic = time.perf_counter()
        probes_before = sum(self.probe_seconds.values())
        state = {"step": 0, "next_checkpoint": 0}
        if self.checkpoints and self.checkpoints[0] == 0:
            self.checkpoint(0, 0)
            state["next_checkpoint"] = 1
        for epoch in range(1, self.epochs + 1):
            self.train_epoch(epoch, generator, state)
        return time.perf_counter() - tic, sum(self.probe_seconds.values()) - probes_before

    def train_epoch(self, epoch: int, generator: torch.Generator, state: dict) -> None:
        model, x_train, y_train, per_epoch = self.model, self.x_train, self.y_train, self.steps_per_epoch
        order = torch.randperm(self.n_train, generator=generator).to(self.device)
        loss_sum, correct = 0.0, 0
        for start in range(0, self.n_train, self.batch):
            model.train()
            idx = order[start : start + self.batch]
            logits, _ = model(x_train[idx])
            loss = nn.functional.cross_entropy(logits, y_train[idx])
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            state["step"] += 1
            step = state["step"]
            batch_correct = (logits.detach().argmax(1) == y_train[idx]).sum().item()
            loss_sum += loss.item() * len(idx)
            correct += batch_correct
            self.curve_rows.append((step, step / per_epoch, "batch", "loss", loss.item()))
            self.curve_rows.append((step, step / per_epoch, "batch", "accuracy", batch_correct / len(idx)))
            nxt = state["next_checkpoint"]
            if nxt < len(self.checkpoints) and self.checkpoints[nxt] == step:
                self.checkpoint(step, nxt)
                state["next_checkpoint"] = nxt + 1
        test_loss, test_acc = self.evaluate(self.x_test, self.y_test)
        self.curve_rows.append((state["step"], float(epoch), "test", "loss", test_loss))
        self.curve_rows.append((state["step"], float(epoch), "test", "accuracy", test_acc))
        epoch_readouts = {
            "train/loss": loss_sum / self.n_train,
            "train/accuracy": correct / self.n_train,
            "test/loss": test_loss,
            "test/accuracy": test_acc,
        }
        for key, value in epoch_readouts.items():
            split, metric = key.split("/")
            self.readouts.append((epoch, split, metric, value))
        log.info(
            "epoch %d/%d  train loss %.4f acc %.3f  test loss %.4f acc %.3f",
            epoch,
            self.epochs,
            *epoch_readouts.values(),
        )
        self.ctx.on_step(epoch, epoch_readouts, empty_curves(object))

    def tables(self) -> dict[str, pd.DataFrame]:
        curve = pd.DataFrame(self.curve_rows, columns=["step", "epoch", "curve", "metric", "value"])
        curve = curve.astype({"step": np.int64, "epoch": np.float64, "value": np.float64})
        fits = []
        for name in ("batch", "probe_set"):
            part = curve[(curve.curve == name) & (curve.metric == "accuracy")]
            for row in fit_learning_curve(part.step.to_numpy(), part.value.to_numpy()):
                fits.append({"curve": name, **row})
        tables = {
            "category_structure": pd.concat(self.probe_frames["category_structure"], ignore_index=True),
            "learning_curve": curve,
            "curve_fits": pd.DataFrame(fits),
        }
        if self.spectrum is not None:
            tables["gradient_spectrum"] = pd.concat(self.probe_frames["gradient_spectrum"], ignore_index=True)
        return tables

    def readout_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.readouts, columns=["epoch", "split", "metric", "value"])
        frame["epoch"] = frame["epoch"].astype(np.int32)
        return frame

    def summary(self, fit_frame: pd.DataFrame) -> dict:
        test_loss, test_acc = self.evaluate(self.x_test, self.y_test)
        return {
            "class_names": list(self.data.class_names),
            "test_accuracy": test_acc,
            "test_loss": test_loss,
            "n_train": int(self.n_train),
            "n_test": int(len(self.x_test)),
            "data_seed": data_seed(self.cfg),
            "n_weights": n_weights(self.model),
            "epochs": self.epochs,
            "steps": int(self.total),
            "steps_per_epoch": int(self.steps_per_epoch),
            "checkpoints": [int(c) for c in self.checkpoints],
            "curve_fit_better": better_forms(fit_frame),
            "device": str(self.device),
            "torch": torch.__version__,
        }


def better_forms(fit_frame: pd.DataFrame) -> dict:
    """Per curve, the form with the lower AIC and the AIC difference (hyperbolic minus exponential)."""
    better = {}
    for name, part in fit_frame.groupby("curve"):
        part = part.dropna(subset=["aic"])
        if len(part) == 2:
            aic = part.set_index("form").aic
            better[name] = {
                "aic": part.loc[part.aic.idxmin(), "form"],
                "delta_aic_hyperbolic_minus_exponential": float(aic.hyperbolic - aic.exponential),
            }
    return better
