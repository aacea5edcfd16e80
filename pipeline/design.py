"""The study grid: a study's design cells (every combination of its factors' levels), the
counterbalanced assignment of seed i to cell i mod n_cells as replicate i div n_cells, and the seed of
a run's random choices, drawn from its cell and replicate (never the raw seed), so that both ways of
naming a run compute the same record. README.md, "The study grid", explains it for users."""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Cell:
    """One combination of factor levels: ((config key, value), ...) in the study's factor order."""

    factors: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, **values: Any) -> Cell:
        return cls(tuple(values.items()))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.factors)

    def get(self, key: str, default: Any = None) -> Any:
        return self.as_dict().get(key, default)

    def overrides(self) -> list[str]:
        return [
            f"{key}={json.dumps(value) if isinstance(value, str) and ' ' in value else value}"
            for key, value in self.factors
        ]

    def label(self) -> str:
        """Human-readable: ``gesture/pair 3`` for the headline study, ``depth=4, onset=0`` otherwise."""
        values = self.as_dict()
        if set(values) == {"data_source", "pair"}:
            return f"{values['data_source']}/pair {values['pair']}"
        return ", ".join(f"{key.split('.')[-1]}={value}" for key, value in self.factors)


@dataclass(frozen=True)
class Design:
    cell: Cell
    replicate: int
    # the participant number of a counterbalanced sweep (None for explicit cells)
    participant: int | None
    assignment: str  # "counterbalanced" | "explicit"


def n_pairs(n_classes: int) -> int:
    return n_classes * (n_classes - 1) // 2


def factor_keys(study_cfg: Mapping[str, Any]) -> list[str]:
    return [str(k) for k in study_cfg["factors"]]


def study_cells(study_cfg: Mapping[str, Any], pairs_per_source: Mapping[str, int] | None = None) -> list[Cell]:
    """Every cell of the study, in design order."""
    keys = factor_keys(study_cfg)
    if study_cfg.get("data_sources"):
        if keys != ["data_source", "pair"]:
            raise ValueError("a study with data_sources must have factors [data_source, pair]")
        if pairs_per_source is None:
            raise ValueError("a study with data_sources needs the number of class pairs of each data source")
        return [
            Cell.of(data_source=source, pair=pair)
            for source in study_cfg["data_sources"]
            for pair in range(pairs_per_source[source])
        ]
    levels = study_cfg.get("levels") or {}
    missing = [key for key in keys if key not in levels]
    if missing:
        raise ValueError(
            f"study {study_cfg.get('name')!r} declares no levels for {', '.join(missing)}: "
            f"add study.levels or give the factor on the command line"
        )
    return [Cell(tuple(zip(keys, combo))) for combo in itertools.product(*(list(levels[k]) for k in keys))]


def assign(seed: int, cells: Sequence[Cell]) -> tuple[Cell, int]:
    """Counterbalancing: seed i -> (cell i mod n_cells, replicate i div n_cells)."""
    if seed < 0:
        raise ValueError(f"seed={seed}: must be >= 0")
    return cells[seed % len(cells)], seed // len(cells)


def override_key(override: str) -> str:
    """``+a.b=1`` -> ``a.b``; ``~a`` -> ``a``."""
    return override.split("=", 1)[0].lstrip("+~")


def is_explicit(task_overrides: Iterable[str], keys: Iterable[str] = ("data_source", "pair")) -> bool:
    keys = set(keys)
    return any(override_key(o) in keys for o in task_overrides)


def run_seed(cell: Cell, replicate: int, labels: str = "real") -> int:
    """The 32-bit seed of every random choice of a run, from its design identity."""
    cell_code = zlib.crc32(json.dumps(cell.factors, sort_keys=False, default=str).encode())
    entropy = [cell_code, int(replicate), 0 if labels == "real" else 1]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])
