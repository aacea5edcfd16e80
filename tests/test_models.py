"""The model zoo: every built-in model follows the protocol (logits N x C, states N x T x H), the Transformer
and the TCN are causal, BatchNorm over time is an option of each, the LSTM is the study's model as it was,
and a user's module is instantiated by Hydra and checked at planning."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from pipeline.config import ConfigError
from pipeline.model import (
    BUILTIN_MODELS,
    ModelProtocolError,
    SequenceClassifier,
    build_model,
    check_protocol,
    hidden_size_for,
    tcn_layers_for,
)
from pipeline.model_config import check_model_config
from tests.helpers import REPO, run_config

MODELS = list(BUILTIN_MODELS)


def model_cfg(group: str, **keys):
    base = OmegaConf.load(REPO / "conf" / "model" / f"{group}.yaml")
    return OmegaConf.merge(base, keys)


def built(group: str, time_slices=12, n_features=3, seed=0, **keys):
    torch.manual_seed(seed)
    return build_model(model_cfg(group, **keys), time_slices, n_features)


@pytest.mark.parametrize("name", MODELS)
def test_every_builtin_model_follows_the_protocol(name):
    model = built(name)
    x = torch.randn(5, 12, 3)
    assert check_protocol(model, x, 2, name) == 32  # input size 3, floor 32
    logits, states = model(x)
    assert logits.shape == (5, 2) and states.shape == (5, 12, 32)
    # the readout reads the last time slice's state
    assert torch.allclose(model.readout(states[:, -1]), logits, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("training", [False, True])
def test_every_builtin_model_is_causal(name, training):
    """The state of slice t depends on inputs up to t only: changing slice 7 leaves slices 0..6 alone
    (BatchNorm over time normalises each slice by its own statistics, in training mode too)."""
    model = built(name, n_layers=2) if name == "transformer" else built(name)
    model.train(training)
    x = torch.randn(6, 12, 3)
    changed = x.clone()
    changed[:, 7] += torch.randn(6, 3) * 3
    with torch.no_grad():
        before, after = model(x)[1], model(changed)[1]
    assert torch.equal(before[:, :7], after[:, :7])
    assert not torch.allclose(before[:, 7], after[:, 7])


@pytest.mark.parametrize("name", ["transformer", "tcn"])
def test_the_last_state_sees_the_first_time_slice(name):
    """Causal, yet the readout's state covers the whole sequence (the TCN's receptive field, attention)."""
    model = built(name, time_slices=150)
    x = torch.randn(3, 150, 3, requires_grad=True)
    model.eval()
    model(x)[1][:, -1].sum().backward()
    assert x.grad[:, 0].abs().sum() > 0


def test_tcn_layers_cover_the_sequence():
    assert tcn_layers_for(150, 3) == 7 and tcn_layers_for(40, 3) == 5 and tcn_layers_for(20, 3) == 4
    for steps in (2, 20, 40, 150, 1000):
        for k in (2, 3, 5):
            layers = tcn_layers_for(steps, k)
            assert 1 + (k - 1) * (2**layers - 1) >= steps > 1 + (k - 1) * (2 ** (layers - 1) - 1) or layers == 1


@pytest.mark.parametrize("name", MODELS)
def test_batchnorm_over_time_is_an_option_of_every_model(name):
    with_norm, without = built(name), built(name, batchnorm_time=False)
    norms = [m for m in with_norm.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(norms) == 1 and norms[0].num_features == 12  # one mean/variance per time slice
    assert not [m for m in without.modules() if isinstance(m, nn.BatchNorm1d)]


def test_the_lstm_is_the_study_model_as_built_before():
    """Same modules, parameter names and random initialisation as the original construction, in this order:
    BatchNorm1d(T), LSTM(F, H), Linear(H, 2)."""
    torch.manual_seed(7)
    reference = [nn.BatchNorm1d(150), nn.LSTM(6, 32, num_layers=1, batch_first=True), nn.Linear(32, 2)]
    model = built("lstm", time_slices=150, n_features=6, seed=7)
    assert isinstance(model, SequenceClassifier) and [n for n, _ in model.named_children()] == [
        "norm",
        "lstm",
        "readout",
    ]
    ours = dict(model.named_parameters())
    theirs = {
        f"{prefix}.{k}": v for prefix, m in zip(("norm", "lstm", "readout"), reference) for k, v in m.named_parameters()
    }
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_automatic_sizes():
    assert hidden_size_for(model_cfg("lstm"), 50) == 50 and hidden_size_for(model_cfg("lstm"), 6) == 32
    # a Transformer's automatic width is a multiple of its heads
    assert hidden_size_for(model_cfg("transformer", n_heads=4), 50) == 52
    assert hidden_size_for(model_cfg("transformer", n_heads=4, hidden_size=64), 50) == 64


@pytest.mark.parametrize(
    "group,keys,message",
    [
        ("lstm", {"name": "lstmm"}, "model.name='lstmm': allowed values are lstm, gru, rnn, transformer, tcn"),
        ("gru", {"hidden_size": 0}, "model.hidden_size=0"),
        ("rnn", {"batchnorm_time": "yes"}, "model.batchnorm_time='yes': must be true or false"),
        (
            "transformer",
            {"hidden_size": 50, "n_heads": 4},
            "model.hidden_size=50: a Transformer's size must be a multiple of model.n_heads=4",
        ),
        ("transformer", {"dropout": 1.5}, "model.dropout=1.5"),
        ("transformer", {"n_heads": 0}, "model.n_heads=0"),
        ("tcn", {"kernel_size": 1}, "model.kernel_size=1"),
        ("tcn", {"n_layers": 0}, "model.n_layers=0"),
    ],
)
def test_bad_model_options_name_the_key(group, keys, message):
    with pytest.raises(ConfigError) as err:
        check_model_config(model_cfg(group, **keys))
    assert message in str(err.value)


# ---------------------------------------------------------------------------------------------- user modules

USER_MODULE = '''
import torch
from torch import nn


class MeanNet(nn.Module):
    """A user's model: a running mean of a linear embedding (causal), read out at the last slice."""

    def __init__(self, time_slices, n_features, n_classes, width=8):
        super().__init__()
        self.embed = nn.Linear(n_features, width)
        self.readout = nn.Linear(width, n_classes)

    def forward(self, x):
        h = torch.tanh(self.embed(x))
        steps = torch.arange(1, x.shape[1] + 1, dtype=h.dtype).view(1, -1, 1)
        states = h.cumsum(1) / steps
        return self.readout(states[:, -1]), states


class FlatStates(MeanNet):
    def forward(self, x):
        logits, states = super().forward(x)
        return logits, states.mean(2)


def not_a_model(time_slices, n_features, n_classes):
    return "hello"
'''


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    package = tmp_path / "my_models"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_models"
    for name in [m for m in sys.modules if m.startswith("my_models")]:
        del sys.modules[name]


def test_a_user_module_is_instantiated_by_hydra(user_package):
    cfg = model_cfg("custom", _target_="my_models.MeanNet", name="mean", width=5)
    check_model_config(cfg)
    model = build_model(cfg, 12, 3)
    assert type(model).__name__ == "MeanNet" and model.embed.out_features == 5
    assert check_protocol(model, torch.randn(4, 12, 3), 2, "mean") == 5


@pytest.mark.parametrize(
    "keys,message",
    [
        ({}, "model._target_ is required with model=custom"),
        ({"_target_": "my_models.Nope"}, "model._target_=my_models.Nope"),
        ({"_target_": "no_such_package.Net"}, "model._target_=no_such_package.Net"),
        ({"_target_": "my_models.MeanNet", "depth": 3}, "got an unexpected keyword argument 'depth'"),
    ],
)
def test_a_bad_user_module_fails_at_planning_naming_the_key(user_package, keys, message):
    with pytest.raises(ConfigError) as err:
        check_model_config(model_cfg("custom", **keys))
    assert message in str(err.value)


def test_a_module_outside_the_protocol_is_refused_with_what_it_returned(user_package):
    flat = build_model(model_cfg("custom", _target_="my_models.FlatStates"), 12, 3)
    with pytest.raises(
        ModelProtocolError, match=r"states of shape \(4, 12\); the protocol wants N x T x H = \(4, 12, H\)"
    ):
        check_protocol(flat, torch.randn(4, 12, 3), 2, "custom")
    with pytest.raises(ModelProtocolError, match="returned a str, not a torch.nn.Module"):
        build_model(model_cfg("custom", _target_="my_models.not_a_model"), 12, 3)


@pytest.fixture
def toy_data(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "toy.npz"
    np.savez(path, x=rng.normal(size=(60, 9, 2)), y=np.arange(60) % 2)
    return path


def test_a_user_module_is_planned_on_the_runs_data(user_package, toy_data, tmp_path):
    """At planning, the module is built for the run's data (T, F) and run once: a constructor argument it
    takes may be added with +model.<key>; a value it cannot use, or an answer outside the protocol, is a
    ConfigError naming model._target_, before anything is written."""
    base = ["dataset=arrays", f"dataset.path={toy_data}", "model=custom", f"paths.root={tmp_path / 'out'}"]
    cfg = run_config(*base, "model._target_=my_models.MeanNet", "+model.width=5", "model.name=mean")
    assert cfg.model.width == 5 and cfg.design.class_names is not None
    with pytest.raises(
        ConfigError, match=r"model._target_=my_models.MeanNet cannot be built or run on dataset=arrays \(T=9, F=2\)"
    ):
        run_config(*base, "model._target_=my_models.MeanNet", "+model.width=abc")
    with pytest.raises(ConfigError, match=r"states of shape \(2, 9\)"):
        run_config(*base, "model._target_=my_models.FlatStates")
    # a built-in model takes no keys it does not know
    with pytest.raises(ConfigError, match=r"model.width: unknown key; the keys of model are name, hidden_size"):
        run_config("dataset=arrays", f"dataset.path={toy_data}", "+model.width=5", f"paths.root={tmp_path / 'out'}")
    assert not (tmp_path / "out").exists()
