"""Deficit schedules (pipeline/deficit.py) and their wiring into the sequence runner."""

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from pipeline.config import ConfigError
from pipeline.deficit import Window, affected_samples, applies, build_batch_transform, describe, validate_deficit

X = np.arange(6 * 4 * 3, dtype=np.float32).reshape(6, 4, 3) + 1.0  # no zeros: zeroing is visible


def _cfg(**kw):
    base = {
        "kind": "zero",
        "onset": 1,
        "length": 2,
        "unit": "epoch",
        "sources": None,
        "features": None,
        "fraction": 1.0,
        "noise_std": 1.0,
    }
    return OmegaConf.create({**base, **kw})


def _apply(transform, epoch, rows=(0, 1, 2)):
    idx = torch.as_tensor(rows)
    return transform(epoch, torch.as_tensor(X)[idx], idx)


def test_window_is_half_open_and_zero_based():
    w = Window(3, 2)
    assert [t for t in range(8) if w.active(t)] == [3, 4]
    assert w.end == 5 and bool(w) and not bool(Window(3, 0))


def test_no_deficit_gives_no_transform():
    assert build_batch_transform(None, seed=0, x_train=X) is None
    assert build_batch_transform(_cfg(kind="none", length=5), seed=0, x_train=X) is None
    assert build_batch_transform(_cfg(length=0), seed=0, x_train=X) is None
    # a deficit restricted to another data source leaves this run alone
    assert build_batch_transform(_cfg(sources=["sentence"]), seed=0, x_train=X, source="gesture") is None
    assert build_batch_transform(_cfg(sources=["gesture"]), seed=0, x_train=X, source="gesture") is not None
    assert not applies(_cfg(kind="none")) and applies(_cfg())


def test_zero_deficit_blocks_inputs_only_inside_the_window():
    transform = build_batch_transform(_cfg(), seed=0, x_train=X)
    # train_run's epochs are 1-based: epochs 2 and 3 are indices 1 and 2, the window [1, 3)
    for epoch, blocked in ((1, False), (2, True), (3, True), (4, False)):
        out = _apply(transform, epoch)
        if blocked:
            assert torch.count_nonzero(out) == 0
        else:
            assert torch.equal(out, torch.as_tensor(X[:3]))


def test_zero_deficit_on_one_feature_and_a_share_of_samples():
    transform = build_batch_transform(_cfg(features=[1], fraction=0.5), seed=7, x_train=X)
    out = _apply(transform, 2, rows=range(6)).numpy()
    hit = affected_samples(6, 0.5, 7)
    assert hit.sum() == 3
    assert np.all(out[hit][..., 1] == 0) and np.all(out[hit][..., [0, 2]] == X[hit][..., [0, 2]])
    assert np.array_equal(out[~hit], X[~hit])
    # the affected samples are a property of the seed, not of the batch order
    assert np.array_equal(affected_samples(6, 0.5, 7), hit)
    assert not np.array_equal(affected_samples(100, 0.5, 7), affected_samples(100, 0.5, 8))


def test_noise_deficit_is_reproducible_and_leaves_the_data_alone():
    before = X.copy()
    a = build_batch_transform(_cfg(kind="noise"), seed=3, x_train=X)
    b = build_batch_transform(_cfg(kind="noise"), seed=3, x_train=X)
    c = build_batch_transform(_cfg(kind="noise"), seed=4, x_train=X)
    out_a, out_b, out_c = _apply(a, 2), _apply(b, 2), _apply(c, 2)
    assert torch.equal(out_a, out_b) and not torch.equal(out_a, out_c)
    assert not torch.equal(out_a, torch.as_tensor(X[:3]))
    assert np.array_equal(X, before)
    # noise has each feature's training standard deviation (times noise_std)
    big = np.random.default_rng(0).normal(0, [1.0, 5.0], size=(400, 50, 2)).astype(np.float32)
    noisy = build_batch_transform(_cfg(kind="noise", onset=0, length=1), seed=0, x_train=big)
    idx = torch.arange(400)
    sample = noisy(1, torch.as_tensor(big), idx).numpy().reshape(-1, 2)
    assert np.allclose(sample.std(0), big.reshape(-1, 2).std(0), rtol=0.05)


def test_step_unit_counts_training_batches():
    transform = build_batch_transform(_cfg(unit="step", onset=2, length=1), seed=0, x_train=X)
    blocked = [bool(torch.count_nonzero(_apply(transform, 1)) == 0) for _ in range(5)]
    assert blocked == [False, False, True, False, False]


@pytest.mark.parametrize(
    "override,match",
    [
        ({"kind": "blur"}, "deficit.kind='blur': allowed values are none, zero, noise"),
        ({"unit": "minute"}, "deficit.unit='minute': allowed values are epoch, step"),
        ({"length": -1}, "deficit.length=-1: must be an integer >= 0"),
        ({"fraction": 0}, r"deficit.fraction=0: must be a number in \(0, 1\]"),
        ({"features": [3]}, "this data set has 3 input feature"),
        ({"sources": "gesture"}, "deficit.sources='gesture': must be null or a list"),
    ],
)
def test_bad_deficits_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        build_batch_transform(_cfg(**override), seed=0, x_train=X)


def test_describe():
    assert describe(None) == "no deficit"
    assert (
        describe(_cfg(sources=["gesture"], fraction=0.25))
        == "inputs zeroed, epochs [1, 3), sources gesture, 25% of the training samples"
    )


def test_default_config_has_no_deficit():
    from tests.helpers import run_config

    cfg = run_config()
    assert cfg.deficit.kind == "none"
    validate_deficit(cfg.deficit)
    assert not applies(cfg.deficit)


@pytest.mark.slow
def test_sequence_run_with_a_deficit(tmp_path):
    """A headline run accepts a deficit: gesture inputs zeroed in the first epoch changes that epoch only
    in training (the probes and evaluation see the real inputs)."""
    from pipeline.run import execute
    from tests.helpers import run_plan

    common = ("data_source=gesture", "pair=0", "trainer.epochs=2", f"paths.root={tmp_path}")
    plain = execute(run_plan(*common))
    deprived = execute(run_plan(*common, "deficit.kind=zero", "deficit.length=1", "deficit.sources=[gesture]"))
    assert plain.state == deprived.state == "done" and plain.run_id != deprived.run_id
    a = pd.read_parquet(plain.run_dir / "readouts.parquet")
    b = pd.read_parquet(deprived.run_dir / "readouts.parquet")
    first = lambda f: f[(f.epoch == 1) & (f.split == "train") & (f.metric == "loss")].value.item()
    assert first(a) != first(b)
    import yaml

    assert yaml.safe_load((deprived.run_dir / "config.yaml").read_text())["deficit"]["kind"] == "zero"
