"""The dense-sample study's network: a small VGG-style convolutional classifier."""

from __future__ import annotations

import torch
from torch import nn


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
