"""A run's splits: over sequences (the study's), or over recordings when the data
set cuts several windows from one recording."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.splits import make_splits


def _grouped(n_groups_per_class=(10, 7, 5), windows=(3, 9), seed=0):
    """Labels and recording ids: each recording is one class and gives 3..9 windows."""
    rng = np.random.default_rng(seed)
    y, groups = [], []
    gid = 0
    for cls, n_groups in enumerate(n_groups_per_class):
        for _ in range(n_groups):
            k = int(rng.integers(*windows))
            y += [cls] * k
            groups += [gid] * k
            gid += 1
    y, groups = np.array(y, dtype=np.int64), np.array(groups, dtype=np.int64)
    x = np.arange(len(y), dtype=np.float32).reshape(-1, 1, 1)  # x encodes the row
    return x, y, groups


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shuffle", [False, True])
def test_no_recording_on_two_sides(seed, shuffle):
    x, y, groups = _grouped()
    s = make_splits(x, y, (0, 1), np.random.default_rng(seed), groups=groups, shuffle_labels=shuffle)
    g_train, g_val, g_test = (set(groups[i]) for i in (s.train_index, s.val_index, s.test_index))
    assert not g_train & g_test and not g_val & g_test and not g_train & g_val
    # rows are what the indices say, and every row of a chosen test recording is in test
    assert np.array_equal(x[s.test_index, 0, 0], s.x_test[:, 0, 0])
    in_pair = set(s.train_index) | set(s.val_index) | set(s.test_index)  # null runs: the shuffled labels' pair
    assert sorted(s.test_index) == sorted(set(np.flatnonzero(np.isin(groups, list(g_test)))) & in_pair)
    # each class gives recordings to test and validation
    assert set(s.y_test) == {0, 1} and set(s.y_val) == {0, 1}
    if not shuffle:
        # 20% of each class's recordings (rounded, at least one) go to test: 10 -> 2, 7 -> 1
        per_class = {c: len({g for g in g_test if y[groups == g][0] == c}) for c in (0, 1)}
        assert per_class == {0: 2, 1: 1}
    # oversampling balances the classes of train + validation, and only repeats train-full rows
    train_full = np.concatenate([s.train_index, s.val_index])
    binary = np.concatenate([s.y_train, s.y_val])
    assert (binary == 0).sum() == (binary == 1).sum()
    assert not set(train_full) & set(s.test_index)


def test_shuffled_labels_are_drawn_per_sequence_and_splits_stay_by_recording():
    """Null runs permute the labels over sequences, as the study did: a recording's windows then carry
    both classes, and the splits still keep each recording on one side."""
    x, y, groups = _grouped(n_groups_per_class=(12, 12, 12), windows=(8, 12), seed=3)
    s = make_splits(x, y, (0, 2), np.random.default_rng(1), groups=groups, shuffle_labels=True)
    labels = np.concatenate([s.y_train, s.y_val, s.y_test])
    index = np.concatenate([s.train_index, s.val_index, s.test_index])
    mixed = [g for g in np.unique(groups[index]) if len(set(labels[groups[index] == g])) == 2]
    assert len(mixed) >= len(np.unique(groups[index])) // 2
    g_train, g_test = set(groups[s.train_index]), set(groups[s.test_index])
    assert not g_train & g_test


def _knn3_resubstitution(x, y):
    from sklearn.neighbors import KNeighborsClassifier

    return float((KNeighborsClassifier(3).fit(x, y).predict(x) == y).mean())


@pytest.mark.parametrize("seed", range(3))
def test_shuffled_null_is_at_the_probe_chance_level_on_near_duplicate_windows(seed):
    """The windows of one recording are near-duplicates (overlapping windows): the probe's nearest
    neighbours of a window are its own recording's. Labels shuffled over recordings would keep each
    recording one label, and the resubstitution 3-NN would score ~1 on a null run; shuffled over
    sequences it scores its chance level, 0.75 (the sample's own vote plus two coin flips)."""
    rng = np.random.default_rng(seed)
    n_groups, per_group = 60, 20
    groups = np.repeat(np.arange(n_groups), per_group).astype(np.int64)
    y = (np.arange(n_groups) % 2).repeat(per_group).astype(np.int64)
    centres = rng.normal(size=(n_groups, 4)) * 10
    x = (centres[groups] + rng.normal(scale=0.01, size=(len(y), 4))).astype(np.float32)[:, None, :]
    s = make_splits(x, y, (0, 1), np.random.default_rng(seed), groups=groups, shuffle_labels=True, oversample=False)
    null_accuracy = _knn3_resubstitution(s.x_train[:, 0], s.y_train)
    assert abs(null_accuracy - 0.75) < 0.05
    # the same windows labelled per recording (the rule this replaces) leave no null at all
    per_recording = np.random.default_rng(seed).permutation(np.arange(n_groups) % 2)[groups[s.train_index]]
    assert _knn3_resubstitution(s.x_train[:, 0], per_recording) > 0.98


def test_same_seed_same_grouped_splits():
    x, y, groups = _grouped()
    a = make_splits(x, y, (1, 2), np.random.default_rng(5), groups=groups)
    b = make_splits(x, y, (1, 2), np.random.default_rng(5), groups=groups)
    for f in ("train_index", "val_index", "test_index"):
        assert np.array_equal(getattr(a, f), getattr(b, f))


def test_one_recording_per_class_cannot_be_split():
    x, y, groups = _grouped(n_groups_per_class=(1, 4), windows=(20, 21))
    with pytest.raises(ValueError, match="class 0 of the pair has 1 recording.*at least 2"):
        make_splits(x, y, (0, 1), np.random.default_rng(0), groups=groups)


def test_without_groups_the_split_is_over_sequences():
    """The study's split: no group constraint, 20% of the pair's sequences in test."""
    x, y, groups = _grouped()
    s = make_splits(x, y, (0, 1), np.random.default_rng(0))
    n_pair = int(np.isin(y, (0, 1)).sum())
    assert len(s.test_index) == round(0.2 * n_pair)
    assert set(groups[s.test_index]) & set(groups[s.train_index])  # windows of one recording straddle


def test_repeated_share_by_brute_force():
    from pipeline.splits import repeated_share

    index = np.array([5, 3, 5, 7, 9, 3, 5, 1])  # 5 x3 and 3 x2 repeat: 5 of 8 rows
    assert repeated_share(index) == 5 / 8
    assert repeated_share(np.arange(10)) == 0.0 and repeated_share(np.array([], dtype=int)) == 0.0


@pytest.mark.parametrize("seed", range(2))
def test_oversampled_twins_score_one_under_random_labels(seed):
    """Random labels, distinct states, a share of rows repeated (oversampling): scikit-learn's resubstitution
    3-NN scores every repeated row (its twin votes with it), and the other rows at most the 0.75 of distinct
    states (fewer where their nearest neighbours are a twin pair, two votes of one label)."""
    from pipeline.splits import repeated_share

    rng = np.random.default_rng(seed)
    originals = rng.normal(size=(1500, 5))
    labels = rng.integers(0, 2, size=1500)
    index = np.concatenate([np.arange(1500), rng.choice(1500, size=400, replace=True)])
    from sklearn.neighbors import KNeighborsClassifier

    x, y = originals[index], labels[index]
    correct = KNeighborsClassifier(3).fit(x, y).predict(x) == y
    _, inverse, counts = np.unique(index, return_inverse=True, return_counts=True)
    repeated = counts[inverse] > 1
    assert repeated.mean() == repeated_share(index) > 0.3
    assert correct[repeated].all() and correct[~repeated].mean() < 0.78
