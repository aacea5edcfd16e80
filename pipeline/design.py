"""The study grid: which design cell and replicate a run belongs to.

A study declares its data sources; its design cells are (data source, class
pair) for every class pair of each source, in the order the study lists the
sources and then by pair index. A sweep over ``seed=range(0, n)`` treats seed i
as a simulated participant who runs cell ``i mod n_cells`` as replicate
``i div n_cells``: any n that is a multiple of n_cells gives a balanced design.

When ``data_source`` or ``pair`` is given on the command line the cell is
explicit, and ``seed`` is the replicate number within it. Both ways name the
same run: a run's random choices are drawn from (data source, pair, replicate,
labels), never from the raw seed, so ``seed=37`` in a counterbalanced sweep and
``data_source=... pair=... seed=1`` in an explicit sweep compute the same record.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np

FACTOR_KEYS = ("data_source", "pair")


@dataclass(frozen=True)
class Cell:
    data_source: str
    pair: int


@dataclass(frozen=True)
class Design:
    data_source: str
    pair: int
    replicate: int
    # the participant number of a counterbalanced sweep (None for explicit cells)
    participant: int | None
    assignment: str  # "counterbalanced" | "explicit"


def n_pairs(n_classes: int) -> int:
    return n_classes * (n_classes - 1) // 2


def study_cells(data_sources: Iterable[str], pairs_per_source: dict[str, int]) -> list[Cell]:
    return [Cell(source, pair) for source in data_sources for pair in range(pairs_per_source[source])]


def assign(seed: int, cells: list[Cell]) -> tuple[Cell, int]:
    """Counterbalancing: seed i -> (cell i mod n_cells, replicate i div n_cells)."""
    if seed < 0:
        raise ValueError(f"seed={seed}: must be >= 0")
    return cells[seed % len(cells)], seed // len(cells)


def participant_of(cell: Cell, replicate: int, cells: list[Cell]) -> int:
    """The inverse of ``assign``."""
    return replicate * len(cells) + cells.index(cell)


def override_key(override: str) -> str:
    """``+a.b=1`` -> ``a.b``; ``~a`` -> ``a``."""
    return override.split("=", 1)[0].lstrip("+~")


def is_explicit(task_overrides: Iterable[str]) -> bool:
    return any(override_key(o) in FACTOR_KEYS for o in task_overrides)


def run_seed(data_source: str, pair: int, replicate: int, labels: str) -> int:
    """The 32-bit seed of every random choice of a run, from its design identity."""
    entropy = [zlib.crc32(data_source.encode()), int(pair), int(replicate), 0 if labels == "real" else 1]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])
