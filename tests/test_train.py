"""The training loop's batches (no batch of one sample in BatchNorm's training
mode) and the authors' BatchNorm readout option. Small data, a few epochs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from analysis.health import updates_per_epoch
from pipeline.config import ConfigError
from pipeline.model import SequenceClassifier
from pipeline.probes import Probe
from pipeline.splits import make_splits
from pipeline.train import batch_bounds, evaluate_model, train_run
from tests.helpers import run_config


@pytest.mark.parametrize(
    "n,batch_size,expected",
    [
        (12, 4, [4, 4, 4]),  # remainder 0
        (13, 4, [4, 4, 5]),  # remainder 1: the single sample joins the batch before it
        (14, 4, [4, 4, 4, 2]),  # remainder 2: a batch of two stays
        (5, 4, [5]),  # remainder 1 after one full batch
        (1, 4, [1]),  # one sample in all: nothing to merge with
        (3, 1, [1, 1, 1]),  # batch size 1 (refused by the run's validation when BatchNorm is on)
        (2, 1, [1, 1]),
        (257, 256, [257]),
        (1664, 256, [256] * 6 + [128]),
    ],
)
def test_batch_bounds(n, batch_size, expected):
    bounds = batch_bounds(n, batch_size)
    assert [stop - start for start, stop in bounds] == expected
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # contiguous, each row once
    assert updates_per_epoch(n, batch_size) == len(expected)  # the analysis counts the same


def test_updates_per_epoch_agrees_with_the_training_loop_everywhere():
    for n in range(1, 70):
        for b in range(1, 20):
            assert updates_per_epoch(n, b) == len(batch_bounds(n, b)), (n, b)
            sizes = [e - s for s, e in batch_bounds(n, b)]
            assert min(sizes) >= 2 or n == 1 or b == 1


class _BatchSizes(Probe):
    """Records nothing; the model hook records the batch sizes of the training passes."""

    name = "none"

    def measure(self, ctx):
        return pd.DataFrame(columns=["probe", "split", "epoch", "time_slice", "value"])


def _tiny_splits(n_train: int, n_features: int = 1, time_slices: int = 6):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_train, time_slices, n_features)).astype(np.float32)
    y = np.arange(n_train) % 2
    from pipeline.splits import RunSplits

    idx = np.arange(n_train)
    return RunSplits(x, y, x[:5], y[:5], x[:7], y[:7], idx, idx[:5], idx[:7])


@pytest.mark.parametrize("n_train,batch_size", [(12, 4), (13, 4), (14, 4), (9, 2), (129, 128)])
def test_training_never_gives_batchnorm_one_sample(n_train, batch_size):
    """With one feature torch refuses a one-sample batch in training mode; 13 % 4 == 1 used to crash."""
    model = SequenceClassifier(6, 1, 4)
    seen = []
    model.norm.register_forward_pre_hook(lambda m, args: seen.append((m.training, args[0].shape[0])))
    result = train_run(
        model,
        _tiny_splits(n_train),
        [_BatchSizes()],
        epochs=2,
        lr=1e-3,
        batch_size=batch_size,
        shuffle=True,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
    )
    train_sizes = [size for training, size in seen if training]
    assert min(train_sizes) >= 2
    assert sum(train_sizes) == 2 * n_train
    assert result.updates_per_epoch == len(batch_bounds(n_train, batch_size))


def test_batch_size_one_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="trainer.batch_size"):
        run_config("trainer.batch_size=1")
    cfg = run_config("trainer.batch_size=1", "model.batchnorm_time=false")  # no BatchNorm: allowed
    assert cfg.trainer.batch_size == 1


def test_unknown_readout_batchnorm_names_the_choices():
    with pytest.raises(ConfigError, match="eval, train_mode_as_authors"):
        run_config("trainer.readout_batchnorm=train")


def test_authors_readout_uses_batch_statistics_and_leaves_running_ones():
    torch.manual_seed(0)
    model = SequenceClassifier(6, 3, 5)
    x = torch.randn(9, 6, 3) * 3 + 1
    y = torch.tensor([0, 1] * 4 + [0])
    model.train()
    with torch.no_grad():  # give the running statistics values that differ from any batch's
        model(torch.randn(40, 6, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    loss_eval, acc_eval = evaluate_model(model, x, y, batch_size=4, readout_batchnorm="eval")
    loss_auth, acc_auth = evaluate_model(model, x, y, batch_size=4, readout_batchnorm="train_mode_as_authors")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # neither readout changed a parameter or buffer
    assert not model.training and not model.norm.training and model.norm.track_running_stats

    # independent reference: plain BatchNorm arithmetic per batch (4, then 5 rows: 9 % 4 == 1 merges)
    def reference(batch_stats: bool) -> float:
        total = 0.0
        for s, e in [(0, 4), (4, 9)]:
            xb = x[s:e]
            if batch_stats:
                mean = xb.mean(dim=(0, 2), keepdim=True)
                var = xb.var(dim=(0, 2), unbiased=False, keepdim=True)
            else:
                mean = model.norm.running_mean[None, :, None]
                var = model.norm.running_var[None, :, None]
            z = (xb - mean) / torch.sqrt(var + model.norm.eps)
            z = z * model.norm.weight[None, :, None] + model.norm.bias[None, :, None]
            with torch.no_grad():
                hidden, _ = model.lstm(z)
                logits = model.readout(hidden[:, -1])
            total += nn.functional.cross_entropy(logits, y[s:e], reduction="sum").item()
        return total / len(x)

    assert loss_eval == pytest.approx(reference(False), rel=1e-5)
    assert loss_auth == pytest.approx(reference(True), rel=1e-5)
    assert abs(loss_eval - loss_auth) > 1e-3  # the two readouts really differ here


def test_grouped_splits_reach_the_run(tmp_path):
    """A run on the watch data: its train and test windows come from different recordings."""
    from pipeline.data import load_dataset

    cfg = run_config("dataset=watch", "pair=14")
    data = load_dataset(cfg.dataset)
    splits = make_splits(data.x, data.y, (4, 5), np.random.default_rng(0), groups=data.groups)
    train_groups = set(data.groups[splits.train_index]) | set(data.groups[splits.val_index])
    assert not train_groups & set(data.groups[splits.test_index])
