"""The training loop: epochs of Adam on one run's splits, probes after each epoch."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from .probes import Probe, ProbeContext
from .schema import CURVE_COLUMNS, empty_curves
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
    # optimiser updates per epoch (batches, after batch_bounds' merge rule)
    updates_per_epoch: int = 0
    # rows of probes that write tables of their own (Probe.table != "curves")
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


READOUT_BATCHNORM = ("eval", "train_mode_as_authors")


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each batch of ``n`` rows: consecutive ``batch_size`` rows,
    except that a last batch of one row is merged into the batch before it.

    BatchNorm in training mode normalises each time slice by the batch's own
    statistics; a batch of one sample has none worth the name (with one feature
    torch refuses it, with several it normalises over one sample's features).
    So when ``n % batch_size == 1`` the last batch holds ``batch_size + 1``
    rows. ``n == 1`` stays one batch of one. ``batch_size == 1`` keeps
    one-sample batches (nothing to merge them into); the run's validation
    refuses it when the model has BatchNorm (``model.batchnorm_time``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    starts = list(range(0, n, batch_size))
    if batch_size > 1 and len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [(start, stop) for start, stop in zip(starts, starts[1:] + [n])]


def _batchnorm_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _clock(seconds: float) -> str:
    """``1:05`` / ``1:02:05``: how long, as the console shows it."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def evaluate_model(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, readout_batchnorm: str = "eval"
) -> tuple[float, float]:
    """Mean loss and accuracy of a clean pass (no update).

    ``eval``: the model in evaluation mode (BatchNorm uses its running
    statistics). ``train_mode_as_authors``: BatchNorm normalises each batch by
    its own statistics, as the authors' readouts did (they never call
    ``eval()``); the running statistics are left untouched, so nothing else
    (the probes' clean passes, later epochs) sees a difference.
    """
    if readout_batchnorm not in READOUT_BATCHNORM:
        raise ValueError(f"trainer.readout_batchnorm={readout_batchnorm!r}; allowed: {', '.join(READOUT_BATCHNORM)}")
    norms = _batchnorm_modules(model) if readout_batchnorm == "train_mode_as_authors" else []
    tracked = [m.track_running_stats for m in norms]
    model.eval()
    for m in norms:
        m.train()
        m.track_running_stats = False  # batch statistics, no update of the running ones
    loss_sum, correct = 0.0, 0
    try:
        with torch.no_grad():
            for start, stop in batch_bounds(len(x), batch_size):
                logits, _ = model(x[start:stop])
                target = y[start:stop]
                loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum").item()
                correct += (logits.argmax(1) == target).sum().item()
    finally:
        for m, flag in zip(norms, tracked):
            m.track_running_stats = flag
            m.eval()
    return loss_sum / len(x), correct / len(x)


def clean_pass_states(model: nn.Module, batch_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The hidden states of a clean pass (evaluation mode, no gradients) over any inputs, in batches."""

    def states(x: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return torch.cat([model(x[s:e])[1] for s, e in batch_bounds(len(x), batch_size)])

    return states


def _train_one_epoch(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    order: torch.Tensor,
    epoch: int,
    batch_size: int,
    batch_transform: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None,
    grad_clip_norm: float | None,
    keep_states: bool,
) -> tuple[float, int, torch.Tensor | None]:
    """One pass over the training set in ``order``: (summed loss, correct count, training-pass states or None)."""
    n_train = len(x_train)
    states = None
    loss_sum, correct = 0.0, 0
    for start, stop in batch_bounds(n_train, batch_size):
        idx = order[start:stop]
        inputs = x_train[idx] if batch_transform is None else batch_transform(epoch, x_train[idx], idx)
        logits, hidden = model(inputs)
        loss = nn.functional.cross_entropy(logits, y_train[idx])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
        optimiser.step()
        if keep_states:
            if states is None:
                states = torch.empty((n_train, *hidden.shape[1:]), dtype=hidden.dtype, device=x_train.device)
            states[idx] = hidden.detach()
        loss_sum += loss.item() * len(idx)
        correct += (logits.detach().argmax(1) == y_train[idx]).sum().item()
    return loss_sum, correct, states


def _measure_probes(
    probes: list[Probe], ctx: ProbeContext, probe_seconds: dict[str, float], tables: dict[str, list[pd.DataFrame]]
) -> pd.DataFrame:
    """Every probe measures the epoch: its curve rows are returned, other tables' rows go to ``tables``."""
    epoch_curves = []
    for probe in probes:
        tic = time.perf_counter()
        rows = probe.measure(ctx)
        probe_seconds[probe.name] += time.perf_counter() - tic
        if probe.table == "curves":
            epoch_curves.append(rows)
        else:
            tables.setdefault(probe.table, []).append(rows)
    return pd.concat(epoch_curves, ignore_index=True) if epoch_curves else empty_curves(object)


def _split_tensors(splits: RunSplits, device: torch.device) -> tuple[torch.Tensor, ...]:
    """x and y of the train, validation and test splits on ``device`` (float32 inputs, long labels)."""
    pairs = ((splits.x_train, splits.y_train), (splits.x_val, splits.y_val), (splits.x_test, splits.y_test))
    return tuple(
        torch.as_tensor(a, dtype=dtype, device=device)
        for x, y in pairs
        for a, dtype in ((x, torch.float32), (y, torch.long))
    )


EPOCH_LINE = "epoch %d/%d  train loss %.4f acc %.3f  val loss %.4f acc %.3f  (%.1f s; ~%s left)"


def _training_result(
    curves: list[pd.DataFrame],
    readouts: list[tuple[object, ...]],
    test_loss: float,
    test_acc: float,
    t_train: float,
    probe_seconds: dict[str, float],
    n_updates: int,
    tables: dict[str, list[pd.DataFrame]],
) -> TrainingResult:
    """The run's record tables in their stored column order and dtypes, with its timings."""
    readout_frame = pd.DataFrame(readouts, columns=["epoch", "split", "metric", "value"])
    readout_frame["epoch"] = readout_frame["epoch"].astype(np.int32)
    curve_frame = pd.concat(curves, ignore_index=True)[list(CURVE_COLUMNS)]
    curve_frame = curve_frame.astype({"epoch": np.int32, "time_slice": np.int32, "value": np.float64})
    return TrainingResult(
        curve_frame,
        readout_frame,
        test_acc,
        test_loss,
        t_train,
        sum(probe_seconds.values()),
        probe_seconds,
        n_updates,
        {name: pd.concat(frames, ignore_index=True) for name, frames in tables.items()},
    )


def train_run(
    model: nn.Module,
    splits: RunSplits,
    probes: list[Probe],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    shuffle: bool,
    device: torch.device,
    generator: torch.Generator,
    on_epoch: Callable[[int, dict, pd.DataFrame], None] | None = None,
    batch_transform: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    readout_batchnorm: str = "eval",
    grad_clip_norm: float | None = None,
) -> TrainingResult:
    """Train for ``epochs`` epochs; after each, every probe measures the model.

    ``batch_transform(epoch, x_batch, index)`` may replace a training batch's
    inputs before the forward pass (a deficit: blocked or corrupted inputs
    during some epochs); probes and evaluation always see the real inputs.

    Training-pass hidden states are kept (detached, in sample order) only when
    a probe needs them: the states each batch produced in its forward pass,
    before that batch's parameter update, as the authors recorded them.

    Batches follow ``batch_bounds`` (a last batch of one sample joins the one
    before it). ``readout_batchnorm`` sets how the validation and test readouts
    use BatchNorm (see ``evaluate_model``). ``grad_clip_norm``: before each update the
    gradient is rescaled to at most this total norm (``torch.nn.utils.clip_grad_norm_``);
    None, the authors' training, leaves it as it is.
    """
    if readout_batchnorm not in READOUT_BATCHNORM:
        raise ValueError(f"trainer.readout_batchnorm={readout_batchnorm!r}; allowed: {', '.join(READOUT_BATCHNORM)}")
    model.to(device)
    x_train, y_train, x_val, y_val, x_test, y_test = _split_tensors(splits, device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    keep_states = any(p.needs_training_pass_states for p in probes)
    n_train = len(x_train)
    curves, readouts = [], []
    tables: dict[str, list[pd.DataFrame]] = {}
    probe_seconds = {p.name: 0.0 for p in probes}
    t_train = 0.0

    t_start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        tic = time.perf_counter()
        t_epoch = tic
        model.train()
        order = (torch.randperm(n_train, generator=generator) if shuffle else torch.arange(n_train)).to(device)
        loss_sum, correct, states = _train_one_epoch(
            model, optimiser, x_train, y_train, order, epoch, batch_size, batch_transform, grad_clip_norm, keep_states
        )
        val_loss, val_acc = evaluate_model(model, x_val, y_val, batch_size, readout_batchnorm)
        t_train += time.perf_counter() - tic

        epoch_readouts = {
            "train/loss": loss_sum / n_train,
            "train/accuracy": correct / n_train,
            "val/loss": val_loss,
            "val/accuracy": val_acc,
        }
        readouts += [(epoch, *key.split("/", 1), value) for key, value in epoch_readouts.items()]

        ctx = ProbeContext(
            epoch, model, x_train, y_train, x_test, y_test, states, clean_pass_states(model, batch_size), epochs
        )
        epoch_frame = _measure_probes(probes, ctx, probe_seconds, tables)
        curves.append(epoch_frame)
        now = time.perf_counter()
        eta = _clock((now - t_start) / epoch * (epochs - epoch))
        log.info(EPOCH_LINE, epoch, epochs, *epoch_readouts.values(), now - t_epoch, eta)
        if on_epoch is not None:
            on_epoch(epoch, epoch_readouts, epoch_frame)

    test_loss, test_acc = evaluate_model(model, x_test, y_test, batch_size, readout_batchnorm)
    readouts.append((epochs, "test", "loss", test_loss))
    readouts.append((epochs, "test", "accuracy", test_acc))
    n_updates = len(batch_bounds(n_train, batch_size))
    return _training_result(curves, readouts, test_loss, test_acc, t_train, probe_seconds, n_updates, tables)
