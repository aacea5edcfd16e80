"""The study's sequence classifier (Jiang & Dale 2025, final version)."""

from __future__ import annotations

import torch
from torch import nn


class SequenceClassifier(nn.Module):
    """BatchNorm over the time axis, one LSTM layer, linear readout of the last step.

    The input is N x T x F. ``BatchNorm1d(T)`` treats the time axis as the
    channel axis, so each time index gets its own mean and variance, pooled over
    the batch and the features, which is how the authors normalised.
    """

    def __init__(
        self, time_slices: int, n_features: int, hidden_size: int, n_classes: int = 2, batchnorm_time: bool = True
    ):
        super().__init__()
        self.norm = nn.BatchNorm1d(time_slices) if batchnorm_time else nn.Identity()
        self.lstm = nn.LSTM(n_features, hidden_size, num_layers=1, batch_first=True)
        self.readout = nn.Linear(hidden_size, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N x classes) and the hidden states h_t of every time slice (N x T x H)."""
        hidden, _ = self.lstm(self.norm(x))
        return self.readout(hidden[:, -1]), hidden


def hidden_size_for(model_cfg, n_features: int) -> int:
    """The study used hidden size = input size; a floor keeps univariate inputs usable."""
    size = model_cfg.hidden_size if model_cfg.hidden_size is not None else n_features
    return max(int(size), int(model_cfg.min_hidden_size))


def build_model(model_cfg, time_slices: int, n_features: int, n_classes: int = 2) -> SequenceClassifier:
    if model_cfg.name != "lstm":
        raise ValueError(f"model.name={model_cfg.name!r} is unknown; allowed: lstm")
    return SequenceClassifier(
        time_slices, n_features, hidden_size_for(model_cfg, n_features), n_classes, bool(model_cfg.batchnorm_time)
    )
