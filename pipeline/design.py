"""The study grid: a study's design cells (every combination of its factors' levels), the
counterbalanced assignment of seed i to cell i mod n_cells as replicate i div n_cells, and the seed of
a run's random choices, drawn from its cell and replicate (never the raw seed), so that both ways of
naming a run compute the same record. docs/running.md, "The study grid", explains it for users."""

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
        """Human-readable: ``gesture/pair 3`` for the headline study, ``gesture/pair 3, model=gru`` for a
        study crossing it with other factors, ``depth=4, onset=0`` otherwise."""
        values = self.as_dict()
        if {"data_source", "pair"} <= set(values):
            others = [f"{key.split('.')[-1]}={value}" for key, value in self.factors if key not in SOURCE_PAIR]
            return ", ".join([f"{values['data_source']}/pair {values['pair']}", *others])
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


SOURCE_PAIR = ("data_source", "pair")


def crosses_source_pairs(keys: Sequence[str]) -> bool:
    """A study whose factors end with data source and class pair: its cells are the (source, pair) grid of
    its ``data_sources``, crossed with the levels of any factors before them (``[model, data_source, pair]``)."""
    return tuple(keys[-2:]) == SOURCE_PAIR and not set(keys[:-2]) & set(SOURCE_PAIR)


def study_cells(study_cfg: Mapping[str, Any], pairs_per_source: Mapping[str, int] | None = None) -> list[Cell]:
    """Every cell of the study, in design order: every combination of the factors' levels, the last factor
    varying fastest; in a study over data sources and class pairs the other factors vary fastest (seeds 0,
    1, 2 of an architecture study are its three models on one class pair, so that a partial sweep compares
    them on the same pairs)."""
    keys = factor_keys(study_cfg)
    levels = study_cfg.get("levels") or {}
    if study_cfg.get("data_sources"):
        if not crosses_source_pairs(keys):
            raise ValueError("a study with data_sources must have factors [..., data_source, pair]")
        if pairs_per_source is None:
            raise ValueError("a study with data_sources needs the number of class pairs of each data source")
        others = keys[:-2]
        _require_levels(study_cfg, others, levels)
        return [
            Cell(tuple(zip(others, combo)) + (("data_source", source), ("pair", pair)))
            for source in study_cfg["data_sources"]
            for pair in range(pairs_per_source[source])
            for combo in itertools.product(*(list(levels[k]) for k in others))
        ]
    _require_levels(study_cfg, keys, levels)
    return [Cell(tuple(zip(keys, combo))) for combo in itertools.product(*(list(levels[k]) for k in keys))]


def _require_levels(study_cfg: Mapping[str, Any], keys: Sequence[str], levels: Mapping[str, Any]) -> None:
    missing = [key for key in keys if key not in levels]
    if missing:
        raise ValueError(
            f"study {study_cfg.get('name')!r} declares no levels for {', '.join(missing)}: "
            f"add study.levels or give the factor on the command line"
        )


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


def run_seed(cell: Cell, replicate: int, labels: str = "real", paired_over: Sequence[str] = ()) -> int:
    """The 32-bit seed of every random choice of a run, from its design identity. Factors in ``paired_over``
    (``study.paired_over``, e.g. ``[model]``) are left out, so that runs differing only in them share their
    random choices (splits, batch order, the initial weights' seed): a paired design."""
    if paired_over:
        cell = Cell(tuple((key, value) for key, value in cell.factors if key not in paired_over))
    cell_code = zlib.crc32(json.dumps(cell.factors, sort_keys=False, default=str).encode())
    entropy = [cell_code, int(replicate), 0 if labels == "real" else 1]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])
