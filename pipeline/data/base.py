"""Shared pieces of the data layer: the SequenceData record, config access,
path resolution with helpful errors, and padding. numpy only (no torch)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# the shipped data sources; others are declared by config (conf/data_source/<name>.yaml)
SOURCES = ("gesture", "sentence")


@dataclass(frozen=True, eq=False)
class SequenceData:
    """A loaded data set (see docs/architecture.md, "Data").

    ``x`` float32 (N, T, F), zero-padded at the end; ``y`` int64 (N,) indices
    into ``class_names``; ``lengths`` int64 (N,) real (unpadded, after any cut)
    length of each sequence. Arrays returned by ``load_dataset`` are read-only
    because they are shared through the in-process cache: copy before editing.
    ``groups`` int64 (N,) or None: sequences cut from one recording share a
    group id, and a run's splits never put one group on both sides
    (``pipeline.splits``); every group holds one class.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    lengths: np.ndarray
    source: str
    name: str
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        x, y, lengths = self.x, self.y, self.lengths
        if x.ndim != 3 or x.dtype != np.float32:
            raise ValueError(f"SequenceData.x must be float32 (N, T, F), got {x.dtype} {x.shape}")
        if y.shape != (x.shape[0],) or y.dtype != np.int64:
            raise ValueError(f"SequenceData.y must be int64 (N,), got {y.dtype} {y.shape}")
        if lengths.shape != (x.shape[0],) or lengths.dtype != np.int64:
            raise ValueError(f"SequenceData.lengths must be int64 (N,), got {lengths.dtype} {lengths.shape}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(f"SequenceData.source must name the data source, got {self.source!r}")
        if len(y) and (y.min() < 0 or y.max() >= len(self.class_names)):
            raise ValueError("SequenceData.y holds a class index outside class_names")
        if self.groups is not None:
            groups = self.groups
            if groups.shape != (x.shape[0],) or groups.dtype != np.int64:
                raise ValueError(f"SequenceData.groups must be int64 (N,), got {groups.dtype} {groups.shape}")
            _, first = np.unique(groups, return_inverse=True)
            per_group = np.zeros(first.max() + 1 if len(first) else 0, dtype=np.int64)
            per_group[first] = y
            if len(y) and not np.array_equal(per_group[first], y):
                raise ValueError("SequenceData.groups: a group holds sequences of two classes")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def time_slices(self) -> int:
        return int(self.x.shape[1])

    @property
    def n_features(self) -> int:
        return int(self.x.shape[2])

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.y, minlength=self.n_classes)
        return {name: int(c) for name, c in zip(self.class_names, counts)}


class DataNotFoundError(FileNotFoundError):
    """A user-supplied data file is missing; the message says how to get it."""


# ----------------------------------------------------------------------------- config access


def opt(cfg: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``cfg[key]`` for a plain dict or an OmegaConf DictConfig, ``default`` when absent or null."""
    try:
        value = cfg.get(key, default)
    except Exception:  # pragma: no cover - exotic mappings
        value = getattr(cfg, key, default)
    return default if value is None else value


def require(cfg: Mapping[str, Any], key: str) -> Any:
    value = opt(cfg, key)
    if value is None:
        raise ValueError(f"dataset config {opt(cfg, 'name', '?')!r} needs the key {key!r}")
    return value


def as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, bytes, int, float)):
        return [value]
    return list(value)


# ----------------------------------------------------------------------------- paths


def resolve_path(value: str | os.PathLike) -> Path:
    """A configured path: ``~`` expanded; relative paths are relative to the CWD."""
    return Path(os.path.expanduser(os.fspath(value))).absolute()


def require_path(value: str | os.PathLike | None, what: str, how: str, key: str) -> Path:
    """Resolve ``value``; raise DataNotFoundError with the how-to when it does not exist."""
    if value is None or str(value).strip() == "":
        raise DataNotFoundError(f"{what}: no path given. {how} Set {key}=<path>.")
    path = resolve_path(value)
    if not path.exists():
        raise DataNotFoundError(f"{what} not found at {path}. {how} Or set {key}=<path>.")
    return path


def package_dir(package: str, *parts: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(
            f"The Python package {package!r} is not installed. Install the project's dependencies "
            f"(`make setup`, or `pip install -e .`); {package} is listed in pyproject.toml."
        )
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)


# ----------------------------------------------------------------------------- padding


def pad_sequences(
    seqs: Sequence[np.ndarray], time_slices: int, n_features: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Stack (L_i, F) arrays into float32 (N, T, F): cut after ``time_slices``
    (the end is dropped), zero-pad at the end. Returns (x, lengths=min(L_i, T))."""
    if n_features is None:
        if not seqs:
            raise ValueError("pad_sequences needs n_features when there are no sequences")
        n_features = int(seqs[0].shape[1])
    x = np.zeros((len(seqs), int(time_slices), int(n_features)), dtype=np.float32)
    lengths = np.zeros(len(seqs), dtype=np.int64)
    for i, s in enumerate(seqs):
        n = min(len(s), int(time_slices))
        if n:
            x[i, :n] = s[:n]
        lengths[i] = n
    return x, lengths


def seeded_subsample(groups: Iterable[np.ndarray], per_class: int | None, seed: int) -> list[np.ndarray]:
    """For each array of candidate indices, ``per_class`` of them drawn without
    replacement by ``numpy.random.default_rng(seed)`` (one generator, classes in
    order), returned sorted; all of them when ``per_class`` is None."""
    rng = np.random.default_rng(seed)
    out = []
    for idx in groups:
        idx = np.asarray(idx)
        if per_class is None or per_class >= len(idx):
            out.append(idx)
        else:
            out.append(np.sort(rng.choice(idx, size=int(per_class), replace=False)))
    return out
