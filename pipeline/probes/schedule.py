"""When a probe measures: every epoch, at log-spaced epochs, or at listed epochs.

The training loop calls every enabled probe after every epoch; a probe with a
sparser schedule returns an empty frame on the epochs it skips (so a skipped
epoch costs nothing). Studies with loops of their own (``study=dense_sample``)
place their checkpoints at log-spaced optimiser *steps* with ``log_spaced``.

``log`` with ``per_decade=p`` measures at ``round(10 ** (i / p))`` for
i = 0, 1, 2, ...: with the default p = 5, epochs 1, 2, 3, 4, 6, 10, 16, 25,
40, 63, 100, ... (about p points per factor of ten). Add the last epoch with
``epochs: [...]`` when it is wanted too (a probe does not know the run length).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

SCHEDULES = ("every_epoch", "log", "list")


def log_spaced(n_max: int, per_decade: float = 5.0, start: int = 1) -> list[int]:
    """Sorted unique integers ``round(10 ** (i / per_decade)) <= n_max`` (from ``start``)."""
    if n_max < 1:
        return []
    count = int(np.ceil(np.log10(n_max) * per_decade)) + 2
    points = np.unique(np.round(10.0 ** (np.arange(count) / per_decade)).astype(int))
    return [int(p) for p in points if start <= p <= n_max]


class Schedule:
    """Which epochs a probe measures (see the module docstring)."""

    def __init__(
        self,
        schedule: str = "every_epoch",
        per_decade: float = 5.0,
        epochs: Iterable[int] | None = None,
        owner: str = "probe",
    ):
        if schedule not in SCHEDULES:
            raise ValueError(f"{owner}.schedule={schedule!r}; allowed: {', '.join(SCHEDULES)}")
        if not per_decade or float(per_decade) <= 0:
            raise ValueError(f"{owner}.per_decade={per_decade!r}: must be a number > 0")
        if schedule == "list" and not epochs:
            raise ValueError(f"{owner}.schedule=list needs {owner}.epochs (a list of epoch numbers)")
        self.schedule, self.per_decade = schedule, float(per_decade)
        self.extra = {int(e) for e in (epochs or ())}

    def due(self, epoch: int) -> bool:
        if epoch in self.extra or self.schedule == "every_epoch":
            return True
        if self.schedule == "list":
            return False
        return epoch >= 1 and epoch in log_spaced(epoch, self.per_decade)
