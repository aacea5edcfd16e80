"""The sequence classifiers whose learning-curve maps the pipeline draws, and the protocol any model follows.

The protocol (docs/bring_your_own.md): a model is a ``torch.nn.Module`` built as
``Model(time_slices=T, n_features=F, n_classes=C, **options)`` whose ``forward`` maps a float32 batch
N x T x F to ``(logits, states)``: logits N x C (the class scores the loss trains) and states N x T x H,
``states[:, t]`` being the representation of the sequence at time slice t + 1, which the probes read
(the learning-curve map is the KNN accuracy of these states, slice by slice). Built-in models
(``model=lstm|gru|rnn|transformer|tcn``) follow it; ``model=custom model._target_=pkg.Net`` instantiates
a user's module the same way (``hydra.utils.instantiate``).

Every built-in model is: BatchNorm over the time axis (an option, ``batchnorm_time``), a sequence layer
that is causal (the state of slice t depends on inputs up to t only), and a linear readout of the state at
the last time slice. The LSTM is the study's final model (Jiang & Dale 2025).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from .model_config import BUILTIN_OPTIONS, user_model_options

__all__ = [
    "BUILTIN_MODELS",
    "SequenceClassifier",
    "GRUClassifier",
    "RNNClassifier",
    "TransformerClassifier",
    "TCNClassifier",
    "build_model",
    "check_protocol",
    "hidden_size_for",
    "model_label",
    "state_size",
    "tcn_layers_for",
    "ModelProtocolError",
]


class ModelProtocolError(ValueError):
    """A model that does not follow the protocol (logits N x C, states N x T x H); the message says what it returned."""


def time_norm(time_slices: int, enabled: bool) -> nn.Module:
    """``BatchNorm1d(T)`` on N x T x F: the time axis is the channel axis, so each time slice gets its own
    mean and variance, pooled over the batch and the features, as the authors normalised."""
    return nn.BatchNorm1d(time_slices) if enabled else nn.Identity()


class SequenceClassifier(nn.Module):
    """BatchNorm over the time axis, one LSTM layer, linear readout of the last step (the study's model).

    The input is N x T x F. ``BatchNorm1d(T)`` treats the time axis as the
    channel axis, so each time index gets its own mean and variance, pooled over
    the batch and the features, which is how the authors normalised.
    """

    recurrent: Callable[..., nn.Module] = nn.LSTM
    layer_name = "lstm"

    def __init__(
        self, time_slices: int, n_features: int, hidden_size: int, n_classes: int = 2, batchnorm_time: bool = True
    ):
        super().__init__()
        self.norm = time_norm(time_slices, batchnorm_time)
        # the layer's attribute name is its kind (lstm, gru, rnn): parameter names in the gradient spectra
        setattr(self, self.layer_name, self.recurrent(n_features, hidden_size, num_layers=1, batch_first=True))
        self.readout = nn.Linear(hidden_size, n_classes)
        self.state_size = hidden_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N x classes) and the hidden states h_t of every time slice (N x T x H)."""
        hidden, _ = getattr(self, self.layer_name)(self.norm(x))
        return self.readout(hidden[:, -1]), hidden


class GRUClassifier(SequenceClassifier):
    """The study's model with a GRU layer in place of the LSTM."""

    recurrent = nn.GRU
    layer_name = "gru"


class RNNClassifier(SequenceClassifier):
    """The study's model with a vanilla (Elman, tanh) recurrent layer in place of the LSTM."""

    recurrent = nn.RNN
    layer_name = "rnn"


def sinusoidal_positions(time_slices: int, size: int) -> torch.Tensor:
    """T x size sinusoidal position codes (Vaswani et al. 2017); no parameters, no random numbers."""
    position = torch.arange(time_slices, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, size, 2, dtype=torch.float32) * (-math.log(10000.0) / size))
    codes = torch.zeros(time_slices, size)
    codes[:, 0::2] = torch.sin(position * rate)
    codes[:, 1::2] = torch.cos(position * rate[: size // 2])
    return codes


class TransformerClassifier(nn.Module):
    """BatchNorm over time, a linear embedding plus sinusoidal positions, a causal Transformer encoder
    (pre-norm layers; slice t attends to slices 1..t only), and a linear readout of the last slice.

    The states the probes read are the encoder's outputs (after its final LayerNorm), N x T x hidden_size.
    """

    def __init__(
        self,
        time_slices: int,
        n_features: int,
        hidden_size: int,
        n_classes: int = 2,
        batchnorm_time: bool = True,
        n_heads: int = 2,
        n_layers: int = 1,
        feedforward_size: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.norm = time_norm(time_slices, batchnorm_time)
        self.embed = nn.Linear(n_features, hidden_size)
        self.register_buffer("positions", sinusoidal_positions(time_slices, hidden_size), persistent=False)
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            n_heads,
            dim_feedforward=feedforward_size or 4 * hidden_size,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, n_layers, norm=nn.LayerNorm(hidden_size), enable_nested_tensor=False
        )
        mask = nn.Transformer.generate_square_subsequent_mask(time_slices)
        self.register_buffer("causal_mask", mask, persistent=False)
        self.readout = nn.Linear(hidden_size, n_classes)
        self.state_size = hidden_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        steps = x.shape[1]
        positions = cast(torch.Tensor, self.positions)
        mask = cast(torch.Tensor, self.causal_mask)
        h = self.embed(self.norm(x)) + positions[:steps]
        states = self.encoder(h, mask=mask[:steps, :steps], is_causal=True)
        return self.readout(states[:, -1]), states


def tcn_layers_for(time_slices: int, kernel_size: int) -> int:
    """The fewest dilated layers (dilations 1, 2, 4, ...) whose receptive field covers every time slice:
    1 + (kernel_size - 1) (2^L - 1) >= T, so the last slice's state sees the whole sequence."""
    layers = 1
    while 1 + (kernel_size - 1) * (2**layers - 1) < time_slices:
        layers += 1
    return layers


class TCNClassifier(nn.Module):
    """BatchNorm over time, a 1x1 convolution to hidden_size channels, residual causal dilated
    convolutions (Bai et al. 2018: dilation 2^i, left padding only, so slice t sees inputs up to t), and a
    linear readout of the last slice. The states the probes read are the last layer's outputs."""

    def __init__(
        self,
        time_slices: int,
        n_features: int,
        hidden_size: int,
        n_classes: int = 2,
        batchnorm_time: bool = True,
        kernel_size: int = 3,
        n_layers: int | None = None,
    ):
        super().__init__()
        self.norm = time_norm(time_slices, batchnorm_time)
        self.inputs = nn.Conv1d(n_features, hidden_size, 1)
        layers = n_layers or tcn_layers_for(time_slices, kernel_size)
        self.dilations = [2**i for i in range(layers)]
        self.kernel_size = kernel_size
        self.convs = nn.ModuleList(nn.Conv1d(hidden_size, hidden_size, kernel_size, dilation=d) for d in self.dilations)
        self.readout = nn.Linear(hidden_size, n_classes)
        self.state_size = hidden_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.inputs(self.norm(x).transpose(1, 2))  # N x H x T
        for conv, dilation in zip(self.convs, self.dilations):
            left = nn.functional.pad(h, ((self.kernel_size - 1) * dilation, 0))  # causal: pad the past only
            h = h + torch.relu(conv(left))
        states = h.transpose(1, 2)
        return self.readout(states[:, -1]), states


# name -> class; the config keys each takes beyond the sizes: model_config.BUILTIN_OPTIONS
BUILTIN_MODELS: dict[str, type[nn.Module]] = {
    "lstm": SequenceClassifier,
    "gru": GRUClassifier,
    "rnn": RNNClassifier,
    "transformer": TransformerClassifier,
    "tcn": TCNClassifier,
}


def hidden_size_for(model_cfg, n_features: int) -> int:
    """The study used hidden size = input size; a floor keeps univariate inputs usable. A Transformer's
    automatic size is rounded up to a multiple of its heads (each head gets hidden_size / n_heads)."""
    size = model_cfg.hidden_size if model_cfg.hidden_size is not None else n_features
    size = max(int(size), int(model_cfg.min_hidden_size))
    heads = int(model_cfg.get("n_heads") or 1)
    if model_cfg.hidden_size is None and size % heads:
        size += heads - size % heads
    return size


def is_user_model(model_cfg) -> bool:
    return model_cfg.get("_target_", None) is not None


def model_label(model_cfg) -> str:
    """The model's name in records and the analysis: ``model.name`` (a built-in's, or the user's label)."""
    return str(model_cfg.get("name") or model_cfg.get("_target_"))


def build_model(model_cfg, time_slices: int, n_features: int, n_classes: int = 2) -> nn.Module:
    """The run's model: a built-in by ``model.name``, or the user's ``model._target_`` (Hydra instantiates it
    with ``time_slices``, ``n_features``, ``n_classes`` and the config's other keys)."""
    if is_user_model(model_cfg):
        return _instantiate_user_model(model_cfg, time_slices, n_features, n_classes)
    name = model_cfg.name
    if name not in BUILTIN_MODELS:
        raise ValueError(f"model.name={name!r} is unknown; allowed: {', '.join(BUILTIN_MODELS)}")
    cls = BUILTIN_MODELS[name]
    extra = {key: model_cfg[key] for key in BUILTIN_OPTIONS[name] if model_cfg.get(key) is not None}
    return cls(
        time_slices,
        n_features,
        hidden_size_for(model_cfg, n_features),
        n_classes,
        bool(model_cfg.batchnorm_time),
        **extra,
    )


def _instantiate_user_model(model_cfg, time_slices: int, n_features: int, n_classes: int) -> nn.Module:
    from hydra.utils import instantiate

    spec = {"_target_": model_cfg["_target_"], **user_model_options(model_cfg)}
    model = instantiate(spec, time_slices=time_slices, n_features=n_features, n_classes=n_classes)
    if not isinstance(model, nn.Module):
        target = model_cfg["_target_"]
        raise ModelProtocolError(f"model._target_={target} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def check_protocol(model: nn.Module, x: torch.Tensor, n_classes: int, where: str) -> int:
    """One forward pass of ``x`` (N x T x F, N >= 2) in evaluation mode, without gradients: the model
    returns logits N x n_classes and states N x T x H; returns H. Draws no random numbers and changes no
    state (BatchNorm's running statistics are read, not updated), so the run is unchanged by it."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        model.train(was_training)
    n, steps = x.shape[0], x.shape[1]
    if not isinstance(output, (tuple, list)) or len(output) != 2:
        raise ModelProtocolError(
            f"{where}: forward returned {type(output).__name__}; the protocol wants (logits N x C, states N x T x H)"
        )
    logits, states = output
    if not (torch.is_tensor(logits) and tuple(logits.shape) == (n, n_classes)):
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise ModelProtocolError(f"{where}: logits of shape {shape}; the protocol wants N x C = ({n}, {n_classes})")
    if not (torch.is_tensor(states) and states.ndim == 3 and tuple(states.shape[:2]) == (n, steps)):
        shape = tuple(states.shape) if torch.is_tensor(states) else type(states).__name__
        raise ModelProtocolError(
            f"{where}: states of shape {shape}; the protocol wants N x T x H = ({n}, {steps}, H), one state per time slice"
        )
    if not states.is_floating_point():
        raise ModelProtocolError(f"{where}: states of dtype {states.dtype}; the probes need floating-point states")
    return int(states.shape[2])


def state_size(model: nn.Module) -> int | None:
    """H of the model's states where the model says it (built-ins: ``state_size``)."""
    size = getattr(model, "state_size", None)
    return int(size) if size is not None else None
