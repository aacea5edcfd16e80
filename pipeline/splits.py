"""From a loaded data set to one run's train / validation / test sets.

The order of operations follows the study: (null runs only) permute the labels
over the whole data set; keep the samples of the run's class pair; split 80/20
into train-full / test; randomly oversample the minority class of train-full;
split 80/20 into train / validation. Every random choice draws from the run's
generator, so the run's seed fixes all of them.

With ``groups`` (one id per sequence: the windows cut from one recording), both
splits are drawn over groups instead of sequences, so no recording has windows
on both sides; oversampled copies stay in their row's group. With real labels
every group holds one class and each class gives ``fraction`` of its groups (at
least one, never all). Null runs permute the labels over sequences, as the
study did (its clips, not its videos, were shuffled): the windows of one
recording then carry independent labels, so a window's nearest neighbours (the
overlapping windows of its own recording) say nothing about its label and the
probe's null stays at its chance level; their splits are drawn over the groups
of the pair as a whole, since a group no longer belongs to one class.
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


def _some_groups(ids: np.ndarray, fraction: float, rng: np.random.Generator, what: str) -> np.ndarray:
    """``fraction`` of the group ids (at least one, never all), drawn at random."""
    if len(ids) < 2:
        raise ValueError(f"{what} has {len(ids)} recording(s); splitting by recording needs at least 2")
    n_second = min(max(1, int(round(fraction * len(ids)))), len(ids) - 1)
    return ids[rng.permutation(len(ids))[:n_second]]


def _split_groups(
    index: np.ndarray,
    groups: np.ndarray,
    y: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
    per_class: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Random split over groups: (1 - fraction) of each class's groups first (``per_class``), or of all groups."""
    if per_class:
        second_groups = [
            _some_groups(np.unique(groups[index][y[index] == cls]), fraction, rng, f"class {cls} of the pair")
            for cls in np.unique(y[index])
        ]
    else:
        second_groups = [_some_groups(np.unique(groups[index]), fraction, rng, "the pair")]
    second = np.isin(groups[index], np.concatenate(second_groups))
    return index[~second], index[second]


def make_splits(
    x: np.ndarray,
    y: np.ndarray,
    pair: tuple[int, int],
    rng: np.random.Generator,
    *,
    shuffle_labels: bool = False,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
    oversample: bool = True,
    groups: np.ndarray | None = None,
) -> RunSplits:
    """Select the pair, relabel it 0 / 1 (pair[0] -> 0) and split it (over ``groups`` when given)."""
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != y.shape:
            raise ValueError(f"groups has shape {groups.shape}, labels {y.shape}")
    labels = rng.permutation(y) if shuffle_labels else y
    by_class = not shuffle_labels  # a group of a null run holds both classes
    in_pair = np.flatnonzero(np.isin(labels, pair))
    if len(in_pair) < 10:
        raise ValueError(f"class pair {pair} has only {len(in_pair)} sequences; need at least 10")
    binary = np.full(len(labels), -1, dtype=np.int64)
    binary[labels == pair[0]] = 0
    binary[labels == pair[1]] = 1
    if groups is None:
        train_full, test = _split(in_pair, test_fraction, rng)
    else:
        train_full, test = _split_groups(in_pair, groups, binary, test_fraction, rng, by_class)
    if oversample:
        train_full = oversample_minority(train_full, binary, rng)
    if groups is None:
        train, val = _split(train_full, val_fraction, rng)
    else:
        train, val = _split_groups(train_full, groups, binary, val_fraction, rng, by_class)
        # random row order, as _split gives (it matters with trainer.shuffle=false)
        train, val = train[rng.permutation(len(train))], val[rng.permutation(len(val))]
    return RunSplits(x[train], binary[train], x[val], binary[val], x[test], binary[test], train, val, test)


def repeated_share(index: np.ndarray) -> float:
    """Share of the rows whose data-set row occurs more than once among them (oversampled copies and their
    originals). Such a row's state has an identical twin with its label, so the resubstitution 3-NN probe
    scores it 1 whatever the labels; a null run's start rises above 0.75 with this share."""
    index = np.asarray(index)
    if index.size == 0:
        return 0.0
    _, inverse, counts = np.unique(index, return_inverse=True, return_counts=True)
    return float(np.mean(counts[inverse] > 1))
