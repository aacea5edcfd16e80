"""The training loop: epochs of Adam on one run's splits, probes after each epoch."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from .probes import CURVE_COLUMNS, Probe, ProbeContext
from .splits import RunSplits

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; anything else must be a valid torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"trainer.device={name!r} is not a device; allowed: auto, cpu, cuda, cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"trainer.device={name!r} but no CUDA device is available here; use auto or cpu")
    return device


@dataclass
class TrainingResult:
    curves: pd.DataFrame
    readouts: pd.DataFrame
    test_accuracy: float
    test_loss: float
    seconds_training: float
    seconds_probes: float
    probe_seconds: dict[str, float] = field(default_factory=dict)
    # rows of probes that write tables of their own (Probe.table != "curves")
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Mean loss and accuracy of a clean pass in evaluation mode."""
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits, _ = model(x[start:start + batch_size])
            target = y[start:start + batch_size]
            loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum").item()
            correct += (logits.argmax(1) == target).sum().item()
    return loss_sum / len(x), correct / len(x)


def _clean_pass_states(model: nn.Module, batch_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def states(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return torch.cat([model(x[s:s + batch_size])[1] for s in range(0, len(x), batch_size)])
    return states


def train_run(model: nn.Module, splits: RunSplits, probes: list[Probe], *, epochs: int, lr: float,
              batch_size: int, shuffle: bool, device: torch.device, generator: torch.Generator,
              on_epoch: Callable[[int, dict, pd.DataFrame], None] | None = None,
              batch_transform: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
              ) -> TrainingResult:
    """Train for ``epochs`` epochs; after each, every probe measures the model.

    ``batch_transform(epoch, x_batch, index)`` may replace a training batch's
    inputs before the forward pass (a deficit: blocked or corrupted inputs
    during some epochs); probes and evaluation always see the real inputs.

    Training-pass hidden states are kept (detached, in sample order) only when
    a probe needs them: the states each batch produced in its forward pass,
    before that batch's parameter update, as the authors recorded them.
    """
    model.to(device)
    as_tensor = lambda a, dtype: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    x_train, y_train = as_tensor(splits.x_train, torch.float32), as_tensor(splits.y_train, torch.long)
    x_val, y_val = as_tensor(splits.x_val, torch.float32), as_tensor(splits.y_val, torch.long)
    x_test, y_test = as_tensor(splits.x_test, torch.float32), as_tensor(splits.y_test, torch.long)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    keep_states = any(p.needs_training_pass_states for p in probes)
    n_train = len(x_train)
    curves, readouts = [], []
    tables: dict[str, list[pd.DataFrame]] = {}
    probe_seconds = {p.name: 0.0 for p in probes}
    t_train = 0.0

    for epoch in range(1, epochs + 1):
        tic = time.perf_counter()
        model.train()
        order = (torch.randperm(n_train, generator=generator) if shuffle
                 else torch.arange(n_train)).to(device)
        states = None
        loss_sum, correct = 0.0, 0
        for start in range(0, n_train, batch_size):
            idx = order[start:start + batch_size]
            inputs = x_train[idx] if batch_transform is None else batch_transform(epoch, x_train[idx], idx)
            logits, hidden = model(inputs)
            loss = nn.functional.cross_entropy(logits, y_train[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if keep_states:
                if states is None:
                    states = torch.empty((n_train, *hidden.shape[1:]), dtype=hidden.dtype, device=device)
                states[idx] = hidden.detach()
            loss_sum += loss.item() * len(idx)
            correct += (logits.detach().argmax(1) == y_train[idx]).sum().item()
        val_loss, val_acc = _evaluate(model, x_val, y_val, batch_size)
        t_train += time.perf_counter() - tic

        epoch_readouts = {"train/loss": loss_sum / n_train, "train/accuracy": correct / n_train,
                          "val/loss": val_loss, "val/accuracy": val_acc}
        for key, value in epoch_readouts.items():
            split, metric = key.split("/")
            readouts.append((epoch, split, metric, value))

        ctx = ProbeContext(epoch, model, x_train, y_train, x_test, y_test, states,
                           _clean_pass_states(model, batch_size))
        epoch_curves = []
        for probe in probes:
            tic = time.perf_counter()
            rows = probe.measure(ctx)
            probe_seconds[probe.name] += time.perf_counter() - tic
            if probe.table == "curves":
                epoch_curves.append(rows)
            else:
                tables.setdefault(probe.table, []).append(rows)
        epoch_frame = (pd.concat(epoch_curves, ignore_index=True) if epoch_curves
                       else pd.DataFrame(columns=list(CURVE_COLUMNS)))
        curves.append(epoch_frame)
        log.info("epoch %d/%d  train loss %.4f acc %.3f  val loss %.4f acc %.3f",
                 epoch, epochs, *epoch_readouts.values())
        if on_epoch is not None:
            on_epoch(epoch, epoch_readouts, epoch_frame)

    test_loss, test_acc = _evaluate(model, x_test, y_test, batch_size)
    readouts.append((epochs, "test", "loss", test_loss))
    readouts.append((epochs, "test", "accuracy", test_acc))
    readout_frame = pd.DataFrame(readouts, columns=["epoch", "split", "metric", "value"])
    readout_frame["epoch"] = readout_frame["epoch"].astype(np.int32)
    curve_frame = pd.concat(curves, ignore_index=True)[list(CURVE_COLUMNS)]
    curve_frame = curve_frame.astype({"epoch": np.int32, "time_slice": np.int32, "value": np.float64})
    return TrainingResult(curve_frame, readout_frame, test_acc, test_loss, t_train,
                          sum(probe_seconds.values()), probe_seconds,
                          {name: pd.concat(frames, ignore_index=True) for name, frames in tables.items()})
