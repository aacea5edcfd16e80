"""The dense-sample study (docs/science.md 2a; Hanson, Yadav & Hanson 2024).

One run: generate the dense-sample glyph data set (``pipeline/dense_data.py``;
``study.data.draw: replicate`` draws a fresh data set per replicate from
``study.data.seed`` and the replicate number, ``fixed`` shares the one of
``study.data.seed`` between replicates), train a small
VGG-style network (about 1.2 M weights) on it with minibatch Adam, and follow
category structure per layer at checkpoints placed at log-spaced optimiser
steps (and every epoch end) with the category-structure probe. The learning
curves (minibatch accuracy per step, probe-set accuracy per checkpoint) are
fitted with hyperbolic and exponential forms.

What differs between replicates: the data draw (``data.draw: replicate``),
the network's initialisation and the order of the minibatches (the last two
from the run's seed, ``ctx.rng_seed``). Same
config and seed give bit-identical records on the same machine.

Records (besides readouts.parquet and summary.json; curves.parquet is empty):
- ``category_structure.parquet``: the probe's rows (pipeline/probes/
  category_structure.py) with ``step`` (optimiser steps done, 0 = at
  initialisation), ``checkpoint`` (0, 1, ...) and ``epoch`` as a float
  (step / steps per epoch);
- ``learning_curve.parquet``: ``step``, ``epoch`` (float), ``curve``
  (``batch``: the minibatch of that step, before its update; ``probe_set``:
  the probe set at a checkpoint; ``test``: the whole test set at epoch ends),
  ``metric`` (accuracy, loss), ``value``;
- ``curve_fits.parquet``: ``curve``, ``form`` (hyperbolic a - b / (1 + c t),
  exponential a - b exp(-c t)), ``a``, ``b``, ``c``, ``n``, ``rss``, ``r2``,
  ``aic``, ``bic``, ``converged``: least squares (scipy's curve_fit from a grid
  of starting rates) of accuracy against t = step;
- ``gradient_spectrum.parquet`` when ``probe.gradient_spectrum.enabled=true``:
  measured at initialisation, at the epoch ends its schedule selects and at
  the last epoch, with
  the same step / checkpoint / epoch columns; ``group_by: distortion`` is
  available here (low / high distortion of the exemplar, see dense_data.py).
Other probes of ``probe.*`` (knn) read time slices of sequence models and do
not apply here; they are ignored.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..allocator import keep_freed_memory
from ..config import ConfigError, check_int, check_number
from ..dense_data import CLASS_NAMES, distortion_groups, generate, split_per_class
from ..probes import CURVE_COLUMNS, ProbeContext
from ..probes.category_structure import CategoryStructureProbe
from ..probes.gradient_spectrum import GradientSpectrumProbe
from ..probes.schedule import log_spaced
from ..train import resolve_device
from . import RunContext, RunResult, StudyRunner, register

log = logging.getLogger(__name__)
OPTIMISERS = ("adam", "sgd")
DATA_DRAWS = ("replicate", "fixed")


def data_seed(cfg) -> int:
    """The generator's seed of a run: ``study.data.seed`` itself (``draw: fixed``) or mixed with the
    replicate number (``draw: replicate``), so that replicates see independent, reproducible data sets."""
    seed = int(cfg.study.data.seed)
    if cfg.study.data.get("draw", "fixed") == "fixed":
        return seed
    return int(np.random.SeedSequence([seed, int(cfg.design.replicate)]).generate_state(1)[0])


class SmallVGG(nn.Module):
    """VGG-style: blocks of two 3x3 conv + ReLU and a 2x2 max-pool, then ReLU FC layers.

    The defaults (channels 32-64-128, FC 1024-384, 16 x 16 input, 5 classes)
    have 1,207,269 weights (docs/science.md 2a: about 1.24 M). ``forward`` returns
    (logits, penultimate features), as the headline's model returns
    (logits, hidden states).
    """

    def __init__(
        self, size: int = 16, channels=(32, 64, 128), hidden=(1024, 384), n_classes: int = 5, in_channels: int = 1
    ):
        super().__init__()
        blocks, c_in = [], in_channels
        for c in channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c, 3, padding=1),
                    nn.ReLU(),
                    nn.Conv2d(c, c, 3, padding=1),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                )
            )
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        side = size // 2 ** len(channels)
        if side < 1:
            raise ValueError(f"image size {size} is too small for {len(channels)} pooling blocks")
        fcs, width = [], c_in * side * side
        for h in hidden:
            fcs.append(nn.Sequential(nn.Linear(width, h), nn.ReLU()))
            width = h
        self.fcs = nn.ModuleList(fcs)
        self.readout = nn.Linear(width, n_classes)
        # the layers the category-structure probe reads, input to output
        self.probe_layers = (
            [f"blocks.{i}" for i in range(len(blocks))] + [f"fcs.{i}" for i in range(len(fcs))] + ["readout"]
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for block in self.blocks:
            x = block(x)
        x = x.flatten(1)
        for fc in self.fcs:
            x = fc(x)
        return self.readout(x), x


def n_weights(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# -- learning-curve fits -------------------------------------------------------
def _hyperbolic(t, a, b, c):
    return a - b / (1.0 + c * t)


def _exponential(t, a, b, c):
    return a - b * np.exp(-c * t)


FORMS = {"hyperbolic": _hyperbolic, "exponential": _exponential}


def fit_learning_curve(t, y) -> list[dict]:
    """Least-squares fits of both forms; AIC / BIC with k = 3 parameters (+ the noise variance).

    AIC = n ln(RSS / n) + 2 (k + 1), BIC = n ln(RSS / n) + (k + 1) ln n; with
    equal k, the comparison is that of the residual sums of squares, and the
    form with the lower AIC / BIC is the better description.
    """
    from scipy.optimize import curve_fit

    t, y = np.asarray(t, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(y)
    t, y = t[ok], y[ok]
    n, k = len(t), 3
    out = []
    for form, fn in FORMS.items():
        best = None
        if n > k + 1:
            span = max(float(t.max() - t.min()), 1.0)
            tail = float(np.mean(y[-max(1, n // 10) :]))
            for rate in 10.0 ** np.linspace(np.log10(0.3 / span), np.log10(30.0 / span), 7):
                try:
                    params, _ = curve_fit(
                        fn,
                        t,
                        y,
                        p0=(tail, tail - float(y[0]), rate),
                        maxfev=5000,
                        bounds=([-np.inf, -np.inf, 0.0], [np.inf, np.inf, np.inf]),
                    )
                except (RuntimeError, ValueError):
                    continue
                rss = float(((y - fn(t, *params)) ** 2).sum())
                if best is None or rss < best[1]:
                    best = (params, rss)
        if best is None:
            out.append(
                {
                    "form": form,
                    "a": np.nan,
                    "b": np.nan,
                    "c": np.nan,
                    "n": n,
                    "rss": np.nan,
                    "r2": np.nan,
                    "aic": np.nan,
                    "bic": np.nan,
                    "converged": False,
                }
            )
            continue
        params, rss = best
        tss = float(((y - y.mean()) ** 2).sum())
        loglike_term = n * math.log(max(rss, 1e-300) / n)
        out.append(
            {
                "form": form,
                "a": float(params[0]),
                "b": float(params[1]),
                "c": float(params[2]),
                "n": n,
                "rss": rss,
                "r2": 1 - rss / tss if tss > 0 else np.nan,
                "aic": loglike_term + 2 * (k + 1),
                "bic": loglike_term + (k + 1) * math.log(n),
                "converged": True,
            }
        )
    return out


def checkpoint_steps(total_steps: int, steps_per_epoch: int, per_decade: float) -> list[int]:
    """Step 0, log-spaced steps, and every epoch end (sorted, unique)."""
    steps = {0, *log_spaced(total_steps, per_decade)}
    steps |= set(range(steps_per_epoch, total_steps + 1, steps_per_epoch))
    steps.add(total_steps)
    return sorted(s for s in steps if s <= total_steps)


@register
class DenseSampleRunner(StudyRunner):
    name = "dense_sample"
    # headline keys that do not affect these runs (trainer.device / num_threads
    # are read but are not semantic anyway); `probe` stays: its
    # gradient_spectrum block is honoured here
    ignored_keys = ("data_source", "dataset", "model", "trainer", "split", "labels", "pair", "deficit")

    def validate(self, cfg: DictConfig) -> None:
        if cfg.get("labels", "real") != "real":
            raise ConfigError(f"labels={cfg.labels!r}: study dense_sample has no shuffled-label runs; allowed: real")
        s = "study"
        for key, minimum in (
            ("data.per_class", 2),
            ("data.train_per_class", 1),
            ("data.size", 8),
            ("data.clutter", 0),
            ("epochs", 1),
            ("batch_size", 1),
        ):
            check_int(cfg, f"{s}.{key}", minimum)
        check_int(cfg, f"{s}.data.seed", 0)
        if cfg.study.data.get("draw", "fixed") not in DATA_DRAWS:
            raise ConfigError(f"study.data.draw={cfg.study.data.get('draw')!r}; allowed: {', '.join(DATA_DRAWS)}")
        check_number(cfg, f"{s}.lr", 0, None)
        check_number(cfg, f"{s}.checkpoints.per_decade", 0, None)
        for key in ("data.noise", "data.shear", "data.translate", "data.rotation_deg"):
            check_number(cfg, f"{s}.{key}", -1e-12, None)
        data = cfg.study.data
        if data.train_per_class >= data.per_class:
            raise ConfigError(
                f"study.data.train_per_class={data.train_per_class} must be < study.data.per_class="
                f"{data.per_class} (the rest of each class is the test set)"
            )
        n_test = data.per_class - data.train_per_class
        per = cfg.study.category_structure.get("per_class", 50)
        split = cfg.study.category_structure.get("split", "test")
        available = n_test if split == "test" else data.train_per_class
        if per > available:
            raise ConfigError(
                f"study.category_structure.per_class={per}: the {split} set has only {available} "
                f"exemplars per class; allowed: 2..{available}"
            )
        if cfg.study.optimizer not in OPTIMISERS:
            raise ConfigError(f"study.optimizer={cfg.study.optimizer!r}; allowed: {', '.join(OPTIMISERS)}")
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
        options = OmegaConf.to_container(cfg.study.category_structure, resolve=True)
        options.pop("enabled", None)
        for key in ("schedule", "per_decade", "epochs"):  # the study's checkpoints decide
            options.pop(key, None)
        return options

    @staticmethod
    def _gradient_probe(cfg: DictConfig) -> GradientSpectrumProbe:
        options = OmegaConf.to_container(cfg.probe.gradient_spectrum, resolve=True)
        options.pop("enabled", None)
        return GradientSpectrumProbe(**options)

    def run(self, cfg: DictConfig, ctx: RunContext) -> RunResult:
        t0 = time.perf_counter()
        study = cfg.study
        keep_freed_memory()
        if cfg.trainer.get("num_threads"):
            torch.set_num_threads(int(cfg.trainer.num_threads))
        device = resolve_device(cfg.trainer.device)
        if device.type == "cuda":
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(ctx.rng_seed)
        generator = torch.Generator().manual_seed(ctx.rng_seed)

        d = study.data
        data = generate(
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
        train_idx, test_idx = split_per_class(data.y, int(d.train_per_class))
        as_t = lambda a, dt: torch.as_tensor(a, dtype=dt, device=device)
        x_train, y_train = as_t(data.x[train_idx], torch.float32), as_t(data.y[train_idx], torch.long)
        x_test, y_test = as_t(data.x[test_idx], torch.float32), as_t(data.y[test_idx], torch.long)
        t_data = time.perf_counter() - t0

        model = SmallVGG(int(d.size), tuple(study.model.channels), tuple(study.model.hidden), len(data.class_names)).to(
            device
        )
        if study.optimizer == "adam":
            optimiser = torch.optim.Adam(model.parameters(), lr=float(study.lr))
        else:
            optimiser = torch.optim.SGD(model.parameters(), lr=float(study.lr), momentum=0.9)
        category = CategoryStructureProbe(**self._category_options(cfg))
        spectrum = None
        if cfg.probe.get("gradient_spectrum") and cfg.probe.gradient_spectrum.get("enabled", False):
            spectrum = self._gradient_probe(cfg)
            spectrum.set_label_column("distortion", distortion_groups(data.distortion[train_idx]))

        n_train, batch = len(x_train), int(study.batch_size)
        steps_per_epoch = math.ceil(n_train / batch)
        epochs = int(study.epochs)
        total = steps_per_epoch * epochs
        checkpoints = checkpoint_steps(total, steps_per_epoch, float(study.checkpoints.per_decade))
        probe_frames = {"category_structure": [], "gradient_spectrum": []}
        probe_seconds = {"category_structure": 0.0, "gradient_spectrum": 0.0}
        curve_rows: list[tuple] = []
        readouts: list[tuple] = []
        empty_curves = pd.DataFrame(
            {c: pd.Series(dtype=t) for c, t in zip(CURVE_COLUMNS, ("object", "object", "int32", "int32", "float64"))}
        )

        def evaluate(x, y) -> tuple[float, float]:
            model.eval()
            loss, correct = 0.0, 0
            with torch.no_grad():
                for s in range(0, len(x), 500):
                    logits, _ = model(x[s : s + 500])
                    loss += nn.functional.cross_entropy(logits, y[s : s + 500], reduction="sum").item()
                    correct += (logits.argmax(1) == y[s : s + 500]).sum().item()
            return loss / len(x), correct / len(x)

        def checkpoint(step: int, number: int) -> None:
            epoch_now = step // steps_per_epoch
            pctx = ProbeContext(epoch_now, model, x_train, y_train, x_test, y_test, None, lambda x: model(x)[1])
            extra = {
                "step": np.int64(step),
                "checkpoint": np.int32(number),
                "epoch": np.float64(step / steps_per_epoch),
            }
            tic = time.perf_counter()
            frame = category.compute(pctx)
            probe_seconds["category_structure"] += time.perf_counter() - tic
            x_probe, y_probe = category.probe_set(pctx)
            loss_p, acc_p = evaluate(x_probe, torch.as_tensor(y_probe, device=device))
            curve_rows.append((step, step / steps_per_epoch, "probe_set", "loss", loss_p))
            curve_rows.append((step, step / steps_per_epoch, "probe_set", "accuracy", acc_p))
            probe_frames["category_structure"].append(frame.assign(**extra))
            at_epoch_end = step % steps_per_epoch == 0
            if spectrum is not None and at_epoch_end and (step in (0, total) or spectrum.schedule.due(epoch_now)):
                tic = time.perf_counter()
                g = spectrum.compute(pctx)
                probe_seconds["gradient_spectrum"] += time.perf_counter() - tic
                probe_frames["gradient_spectrum"].append(g.assign(**extra))

        t_probe_start = sum(probe_seconds.values())
        tic_train = time.perf_counter()
        step, next_cp = 0, 0
        if checkpoints and checkpoints[0] == 0:
            checkpoint(0, 0)
            next_cp = 1
        for epoch in range(1, epochs + 1):
            order = torch.randperm(n_train, generator=generator).to(device)
            loss_sum, correct = 0.0, 0
            for start in range(0, n_train, batch):
                model.train()
                idx = order[start : start + batch]
                logits, _ = model(x_train[idx])
                loss = nn.functional.cross_entropy(logits, y_train[idx])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                step += 1
                batch_correct = (logits.detach().argmax(1) == y_train[idx]).sum().item()
                loss_sum += loss.item() * len(idx)
                correct += batch_correct
                curve_rows.append((step, step / steps_per_epoch, "batch", "loss", loss.item()))
                curve_rows.append((step, step / steps_per_epoch, "batch", "accuracy", batch_correct / len(idx)))
                if next_cp < len(checkpoints) and checkpoints[next_cp] == step:
                    checkpoint(step, next_cp)
                    next_cp += 1
            test_loss, test_acc = evaluate(x_test, y_test)
            curve_rows.append((step, float(epoch), "test", "loss", test_loss))
            curve_rows.append((step, float(epoch), "test", "accuracy", test_acc))
            epoch_readouts = {
                "train/loss": loss_sum / n_train,
                "train/accuracy": correct / n_train,
                "test/loss": test_loss,
                "test/accuracy": test_acc,
            }
            for key, value in epoch_readouts.items():
                split, metric = key.split("/")
                readouts.append((epoch, split, metric, value))
            log.info(
                "epoch %d/%d  train loss %.4f acc %.3f  test loss %.4f acc %.3f",
                epoch,
                epochs,
                *epoch_readouts.values(),
            )
            ctx.on_step(epoch, epoch_readouts, empty_curves)
        seconds_loop = time.perf_counter() - tic_train
        t_probes = sum(probe_seconds.values()) - t_probe_start

        curve = pd.DataFrame(curve_rows, columns=["step", "epoch", "curve", "metric", "value"])
        curve = curve.astype({"step": np.int64, "epoch": np.float64, "value": np.float64})
        fits = []
        for name in ("batch", "probe_set"):
            part = curve[(curve.curve == name) & (curve.metric == "accuracy")]
            for row in fit_learning_curve(part.step.to_numpy(), part.value.to_numpy()):
                fits.append({"curve": name, **row})
        fit_frame = pd.DataFrame(fits)
        readout_frame = pd.DataFrame(readouts, columns=["epoch", "split", "metric", "value"])
        readout_frame["epoch"] = readout_frame["epoch"].astype(np.int32)
        tables = {
            "category_structure": pd.concat(probe_frames["category_structure"], ignore_index=True),
            "learning_curve": curve,
            "curve_fits": fit_frame,
        }
        if spectrum is not None:
            tables["gradient_spectrum"] = pd.concat(probe_frames["gradient_spectrum"], ignore_index=True)
        test_loss, test_acc = evaluate(x_test, y_test)
        better = {}
        for name, part in fit_frame.groupby("curve"):
            part = part.dropna(subset=["aic"])
            if len(part) == 2:
                better[name] = {
                    "aic": part.loc[part.aic.idxmin(), "form"],
                    "delta_aic_hyperbolic_minus_exponential": float(
                        part.set_index("form").aic.hyperbolic - part.set_index("form").aic.exponential
                    ),
                }
        summary = {
            "class_names": list(data.class_names),
            "test_accuracy": test_acc,
            "test_loss": test_loss,
            "n_train": int(n_train),
            "n_test": int(len(x_test)),
            "data_seed": data_seed(cfg),
            "n_weights": n_weights(model),
            "epochs": epochs,
            "steps": int(total),
            "steps_per_epoch": int(steps_per_epoch),
            "checkpoints": [int(c) for c in checkpoints],
            "curve_fit_better": better,
            "device": str(device),
            "torch": torch.__version__,
            "seconds": {
                "data": t_data,
                "training": seconds_loop - t_probes,
                "probes": dict(probe_seconds),
                "total": time.perf_counter() - t0,
            },
        }
        return RunResult(empty_curves, readout_frame, summary, tables)
