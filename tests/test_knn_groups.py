"""The probe's search over groups of identical states (resubstitution, random-order rule) against the search
over all samples, brute force and scikit-learn, on tie-heavy states."""

import numpy as np
import pytest
import torch

from pipeline.probes.knn import _groups_of_identical_states, knn_curve
from tests.knn_reference import (
    assert_within_monte_carlo,
    brute_force_curve,
    hypergeometric_curve,
    near_identical_cluster,
    sklearn_over_orders,
)


def all_samples_curve(states: torch.Tensor, labels: torch.Tensor, **kwargs):
    """The same readout through the search over every sample: resubstitution under the random-order rule is
    the query path with the training states as queries (each sample one point at distance 0 among the rest)."""
    return knn_curve(states, labels, states, labels, **kwargs)


def test_groups_are_the_partition_into_equal_states():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(300, 4, 6)).astype(np.float32)
    states[100:160] = states[3]  # a fixed point
    states[200:260] = near_identical_cluster(rng, 60, 4, 6)  # distinct states a few units apart
    states[260:280] = states[200:220]  # repeats among them
    states[280:290, :, 0] = 0.0
    states[290:300] = states[280:290]
    states[290:300, :, 0] = -0.0  # -0 and +0 are the same state: distance 0 to each other
    as_slices = torch.tensor(states).transpose(0, 1)
    group, n_groups = _groups_of_identical_states(as_slices)
    for t in range(4):
        rows = torch.tensor(states[:, t])
        _, expected = torch.unique(rows + 0.0, dim=0, return_inverse=True)  # + 0.0 turns -0 into +0
        # the same partition: every (group, expected) pair is one of n_groups, ids differ only by a renaming
        pairs = torch.unique(torch.stack([group[t], expected]), dim=1).shape[1]
        assert int(n_groups[t]) == int(expected.max()) + 1 == pairs == int(group[t].max()) + 1


def test_tie_heavy_states_equal_the_search_over_all_samples_bit_for_bit():
    """Fixed points, shared first tokens, near-identical tails, one-sample classes, three classes."""
    rng = np.random.default_rng(1)
    n, slices, hidden = 400, 6, 8
    states = np.tanh(rng.normal(size=(n, slices, hidden))).astype(np.float32)
    states[:120, 0] = states[0, 0]  # a shared first token
    states[150:260, 3:] = np.tanh(rng.normal(size=(1, 3, hidden))).astype(np.float32)  # a fixed point
    states[260:330, 4:] = near_identical_cluster(rng, 70, 2, hidden)
    labels = rng.integers(0, 2, n)
    labels[7] = 2  # a class of one sample
    for y in (labels, np.minimum(labels, 1)):
        for dtype in (torch.float64, torch.float32):
            ours = knn_curve(torch.tensor(states), torch.tensor(y), gram_dtype=dtype)
            every = all_samples_curve(torch.tensor(states), torch.tensor(y), gram_dtype=dtype)
            np.testing.assert_array_equal(ours.accuracy, every.accuracy)
            np.testing.assert_array_equal(ours.tie_share, every.tie_share)
            assert ours.tie_share.max() > 0.2


@pytest.mark.parametrize("k", [1, 3, 4])
def test_groups_with_multiplicities_agree_with_the_subset_enumeration(k):
    rng = np.random.default_rng(10 + k)
    base = rng.integers(0, 3, size=(12, 3, 4)) / 2.0  # coarse states: distinct points at equal distances too
    states = np.repeat(base, rng.integers(1, 7, len(base)), axis=0)
    labels = rng.integers(0, 3, len(states))
    labels[0] = 3  # a class of one sample
    ours = knn_curve(torch.tensor(states), torch.tensor(labels), k=k)
    np.testing.assert_allclose(ours.accuracy, brute_force_curve(states, labels, k=k), rtol=0, atol=1e-12)


def test_one_sample_classes_and_all_identical_states():
    labels = np.array([0, 1, 2, 0, 0, 1, 3])
    states = np.zeros((7, 2, 3))
    states[:, 1] = np.arange(7)[:, None] // 3  # slice 2: groups of 3, 3, 1
    ours = knn_curve(torch.tensor(states), torch.tensor(labels))
    np.testing.assert_allclose(ours.accuracy, brute_force_curve(states, labels), rtol=0, atol=1e-12)
    # slice 2: the groups of 3 fill their room exactly; the one-sample group draws 2 of the next 3
    np.testing.assert_array_equal(ours.tie_share, [1.0, 1 / 7])


def test_near_identical_cluster_gives_sklearns_mean_with_exact_distances():
    """States a few float32 units apart: scikit-learn's k-d tree (explicit differences, as the exact rule)."""
    rng = np.random.default_rng(3)
    states = np.concatenate(
        [near_identical_cluster(rng, 40, 2, 3), np.tanh(rng.normal(size=(20, 2, 3))).astype(np.float32)]
    ).astype(np.float64)
    labels = rng.integers(0, 2, len(states))
    ours = knn_curve(torch.tensor(states, dtype=torch.float32), torch.tensor(labels))
    assert ours.tie_share.max() > 0
    mean, standard_error = sklearn_over_orders(states, labels, k=3, orders=300, algorithm="kd_tree")
    assert_within_monte_carlo(ours.accuracy, mean, standard_error)
    np.testing.assert_allclose(ours.accuracy, brute_force_curve(states, labels), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [1300, 2600])
def test_long_rows_with_groups_agree_with_the_references(n):
    """Rows long enough for the strided search (both column widths), groups in the ragged row end."""
    rng = np.random.default_rng(n)
    states = rng.normal(size=(n, 2, 5)).astype(np.float32)
    states[n // 2 : n // 2 + 200] = states[5]
    states[-7:] = states[9]
    states[100:160, 1] = near_identical_cluster(rng, 60, 1, 5)[:, 0]
    labels = rng.integers(0, 2, n)
    accuracy, share = hypergeometric_curve(states.astype(np.float64), labels)
    for dtype in (torch.float64, torch.float32):
        ours = knn_curve(torch.tensor(states), torch.tensor(labels), gram_dtype=dtype)
        np.testing.assert_allclose(ours.accuracy, accuracy, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(ours.tie_share, share)
        every = all_samples_curve(torch.tensor(states), torch.tensor(labels), gram_dtype=dtype)
        np.testing.assert_array_equal(ours.accuracy, every.accuracy)


def test_blocking_of_group_rows_does_not_change_the_result():
    rng = np.random.default_rng(5)
    states = torch.tensor(near_identical_cluster(rng, 80, 3, 4))
    states[40:] = torch.tensor(np.tanh(rng.normal(size=(40, 3, 4))).astype(np.float32))
    labels = torch.tensor(rng.integers(0, 2, 80))
    a = knn_curve(states, labels, max_elements=1)
    b = knn_curve(states, labels)
    np.testing.assert_array_equal(a.accuracy, b.accuracy)
    np.testing.assert_array_equal(a.tie_share, b.tie_share)
