"""The probe interface: small modules that measure the model after an epoch.

A probe has one job. The training loop hands it a ``ProbeContext`` after every
epoch on its schedule and stores the tidy rows it returns; the loop does not
know what any probe computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import pandas as pd
import torch


@dataclass
class ProbeContext:
    epoch: int
    model: torch.nn.Module
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    # hidden states of the epoch's training forward passes (N x T x H, rows in
    # x_train order), present when a probe asked for them
    training_pass_states: torch.Tensor | None
    # hidden states of a clean pass (evaluation mode) over any inputs
    clean_pass_states: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)
    # the training loop's number of epochs (None: unknown), so that a probe can weigh a one-off cost against
    # the work left (the KNN probe's compiled search)
    epochs: int | None = None


class Probe:
    name: ClassVar[str]
    # The run-folder table its rows go to: "curves" (columns schema.CURVE_COLUMNS),
    # or a table of its own (<table>.parquet, named in schema.RECORD_TABLES) when
    # its rows need other columns (e.g. layer, group, singular-value index).
    table: ClassVar[str] = "curves"
    # True when the probe reads the states of the epoch's training passes, so
    # that the training loop keeps them (it costs N x T x H floats).
    needs_training_pass_states: ClassVar[bool] = False

    def measure(self, ctx: ProbeContext) -> pd.DataFrame:
        raise NotImplementedError
