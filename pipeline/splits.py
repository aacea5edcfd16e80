"""From a loaded data set to one run's train / validation / test sets.

The order of operations follows the study: (null runs only) permute the labels
over the whole data set; keep the samples of the run's class pair; split 80/20
into train-full / test; randomly oversample the minority class of train-full;
split 80/20 into train / validation. Every random choice draws from the run's
generator, so the run's seed fixes all of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RunSplits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    # indices into the loaded data set, for provenance (oversampled rows repeat)
    train_index: np.ndarray
    val_index: np.ndarray
    test_index: np.ndarray


def _split(index: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random split: (1 - fraction) first, fraction second (at least one each)."""
    order = rng.permutation(len(index))
    n_second = min(max(1, int(round(fraction * len(index)))), len(index) - 1)
    return index[order[n_second:]], index[order[:n_second]]


def oversample_minority(index: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random oversampling: draw minority-class rows with replacement until the classes are equal."""
    classes, counts = np.unique(y[index], return_counts=True)
    parts = [index]
    for cls, count in zip(classes, counts):
        missing = counts.max() - count
        if missing:
            pool = index[y[index] == cls]
            parts.append(rng.choice(pool, size=missing, replace=True))
    return np.concatenate(parts)


def make_splits(x: np.ndarray, y: np.ndarray, pair: tuple[int, int], rng: np.random.Generator,
                *, shuffle_labels: bool = False, test_fraction: float = 0.2,
                val_fraction: float = 0.2, oversample: bool = True) -> RunSplits:
    """Select the pair, relabel it 0 / 1 (pair[0] -> 0) and split it."""
    labels = rng.permutation(y) if shuffle_labels else y
    in_pair = np.flatnonzero(np.isin(labels, pair))
    if len(in_pair) < 10:
        raise ValueError(f"class pair {pair} has only {len(in_pair)} sequences; need at least 10")
    binary = np.full(len(labels), -1, dtype=np.int64)
    binary[labels == pair[0]] = 0
    binary[labels == pair[1]] = 1
    train_full, test = _split(in_pair, test_fraction, rng)
    if oversample:
        train_full = oversample_minority(train_full, binary, rng)
    train, val = _split(train_full, val_fraction, rng)
    return RunSplits(x[train], binary[train], x[val], binary[val], x[test], binary[test],
                     train, val, test)
