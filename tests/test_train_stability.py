"""trainer.grad_clip_norm: each update's gradient rescaled to at most that norm, checked against a hand-written
training loop; null (the authors' training) leaves runs and run ids as they were."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from pipeline import identity
from pipeline.config import ConfigError
from pipeline.model import SequenceClassifier
from pipeline.splits import RunSplits
from pipeline.train import batch_bounds, train_run
from tests.helpers import run_config


def _splits(n: int = 40, time_slices: int = 5, n_features: int = 3) -> RunSplits:
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(n, time_slices, n_features)) * 5).astype(np.float32)  # large inputs: large gradients
    y = np.arange(n) % 2
    idx = np.arange(n)
    return RunSplits(x, y, x[:6], y[:6], x[:8], y[:8], idx, idx[:6], idx[:8])


def _model() -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(time_slices=5, n_features=3, hidden_size=4)


def _by_hand(splits: RunSplits, clip: float | None, epochs: int, batch_size: int) -> dict:
    """The training loop written out: shuffled batches, cross-entropy, clip, Adam."""
    model = _model()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(7)
    x, y = torch.as_tensor(splits.x_train), torch.as_tensor(splits.y_train, dtype=torch.long)
    norms = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start, stop in batch_bounds(len(x), batch_size):
            idx = order[start:stop]
            loss = nn.functional.cross_entropy(model(x[idx])[0], y[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            total = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters()))
            norms.append(float(total))
            if clip is not None and total > clip:
                for p in model.parameters():
                    p.grad.mul_(clip / (float(total) + 1e-6))
            optimiser.step()
    return {"state": model.state_dict(), "norms": norms}


@pytest.mark.parametrize("clip", [None, 0.05])
def test_clipping_is_the_hand_written_loop(clip):
    splits = _splits()
    model = _model()
    train_run(
        model,
        splits,
        [],
        epochs=2,
        lr=0.05,
        batch_size=8,
        shuffle=True,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(7),
        grad_clip_norm=clip,
    )
    reference = _by_hand(splits, clip, epochs=2, batch_size=8)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, reference["state"][name], rtol=1e-5, atol=1e-6)
    if clip is not None:  # the bound was reached, so clipping changed the training
        assert max(reference["norms"]) > clip
        unclipped = _by_hand(splits, None, epochs=2, batch_size=8)["state"]
        assert not torch.allclose(unclipped["readout.weight"], reference["state"]["readout.weight"])


def test_null_is_a_config_without_the_key_and_a_value_changes_the_run_id():
    authors = run_config("data_source=sentence", "pair=2", "trainer.grad_clip_norm=null")
    assert "grad_clip_norm" not in identity.semantic_config(authors)["trainer"]
    plain = OmegaConf.to_container(authors, resolve=True)
    del plain["trainer"]["grad_clip_norm"]  # a config from before the key existed
    assert identity.run_id(OmegaConf.create(plain)) == identity.run_id(authors)
    default = run_config("data_source=sentence", "pair=2")
    assert default.trainer.grad_clip_norm == 1.0
    assert identity.run_id(default) != identity.run_id(authors)
    assert identity.semantic_config(default)["trainer"]["grad_clip_norm"] == 1.0


@pytest.mark.parametrize("value", ["0", "-1", "yes"])
def test_a_bad_clip_norm_names_the_key(value):
    with pytest.raises(ConfigError, match="trainer.grad_clip_norm"):
        run_config(f"trainer.grad_clip_norm={value}")
