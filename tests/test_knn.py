"""The information-processing probe against scikit-learn and a brute-force reference."""
import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from pipeline.probes.knn import knn_accuracy


def sklearn_curve(states: np.ndarray, labels: np.ndarray, k: int = 3) -> np.ndarray:
    return np.array([KNeighborsClassifier(n_neighbors=k).fit(states[:, t], labels).score(states[:, t], labels)
                     for t in range(states.shape[1])])


def brute_force_curve(states: np.ndarray, labels: np.ndarray, k: int = 3) -> np.ndarray:
    """Plain loops: the sample itself first, then the others by a stable sort on
    (exact distance, index); majority vote, vote ties to the lower class."""
    n, slices, _ = states.shape
    out = []
    for t in range(slices):
        correct = 0
        for i in range(n):
            dist = np.sqrt(((states[:, t] - states[i, t]) ** 2).sum(1))
            dist[i] = -1.0
            nearest = np.argsort(dist, kind="stable")[:k]
            votes = np.bincount(labels[nearest], minlength=labels.max() + 1)
            correct += int(np.argmax(votes) == labels[i])
        out.append(correct / n)
    return np.array(out)


@pytest.mark.parametrize("n,slices,hidden", [(60, 7, 4), (203, 5, 32)])
def test_matches_sklearn_exactly_on_continuous_states(n, slices, hidden):
    rng = np.random.default_rng(n)
    labels = rng.integers(0, 2, n)
    # class-dependent drift, so that accuracy varies over the time slices
    states = rng.normal(size=(n, slices, hidden)) + labels[:, None, None] * np.linspace(0, 1.5, slices)[None, :, None]
    ours = knn_accuracy(torch.tensor(states, dtype=torch.float32), torch.tensor(labels))
    theirs = sklearn_curve(states.astype(np.float32).astype(np.float64), labels)
    np.testing.assert_array_equal(ours, theirs)
    assert ours.dtype == np.float64 and ours.shape == (slices,)


def test_float32_products_give_the_same_result():
    rng = np.random.default_rng(5)
    states = torch.tensor(rng.normal(size=(120, 6, 8)), dtype=torch.float32)
    states[10:20] = states[0]  # exact duplicates, as at LSTM fixed points
    labels = torch.tensor(rng.integers(0, 2, 120))
    np.testing.assert_array_equal(knn_accuracy(states, labels, gram_dtype=torch.float32),
                                  knn_accuracy(states, labels))
    np.testing.assert_array_equal(knn_accuracy(states, labels), brute_force_curve(states.double().numpy(),
                                                                                  labels.numpy()))


def test_chunking_over_time_slices_does_not_change_the_result():
    rng = np.random.default_rng(1)
    states = torch.tensor(rng.normal(size=(50, 9, 3)))
    labels = torch.tensor(rng.integers(0, 2, 50))
    np.testing.assert_array_equal(knn_accuracy(states, labels, max_elements=1),
                                  knn_accuracy(states, labels))


def test_ties_follow_the_documented_rule():
    """Identical states with different labels (e.g. two sentences that start with the same token)."""
    rng = np.random.default_rng(2)
    base = rng.normal(size=(6, 4, 2))
    states = np.concatenate([base, base, base[:3]])  # exact duplicates -> distance ties at 0
    labels = rng.integers(0, 2, len(states))
    ours = knn_accuracy(torch.tensor(states), torch.tensor(labels))
    np.testing.assert_array_equal(ours, brute_force_curve(states, labels))


def test_test_split_readout_scores_queries_against_training_states():
    rng = np.random.default_rng(3)
    ref, ref_y = rng.normal(size=(40, 3, 5)), rng.integers(0, 2, 40)
    qry, qry_y = rng.normal(size=(15, 3, 5)), rng.integers(0, 2, 15)
    ours = knn_accuracy(torch.tensor(ref), torch.tensor(ref_y), torch.tensor(qry), torch.tensor(qry_y))
    theirs = [KNeighborsClassifier(3).fit(ref[:, t], ref_y).score(qry[:, t], qry_y) for t in range(3)]
    np.testing.assert_array_equal(ours, theirs)


def test_near_ties_below_rounding_are_decided_by_exact_distances():
    """Points closer together than the Gram identity's rounding error: only the
    exact path can order them; in float32 products most rows take it."""
    rng = np.random.default_rng(4)
    centre = rng.normal(size=(1, 3, 16)) * 10  # large norms -> large Gram rounding error
    states = centre + rng.normal(size=(90, 3, 16)) * 1e-6
    states[40:50] = states[0]  # exact duplicates among the near-duplicates
    labels = rng.integers(0, 3, 90)
    expected = brute_force_curve(states.astype(np.float32).astype(np.float64), labels)
    as32 = torch.tensor(states, dtype=torch.float32)
    for dtype in (torch.float32, torch.float64):
        np.testing.assert_array_equal(knn_accuracy(as32, torch.tensor(labels), gram_dtype=dtype, max_elements=500),
                                      expected)


def test_long_rows_take_the_strided_search_and_agree_with_brute_force():
    """N >= 2048 selects the nearest by column minima instead of topk; ragged row ends and ties included."""
    rng = np.random.default_rng(6)
    n = 2101
    states = rng.normal(size=(n, 2, 3)).astype(np.float32)
    states[2000:2050] = states[7]  # a block of duplicates, some in the ragged end of the rows
    states[2095:] = states[3]
    labels = rng.integers(0, 2, n)
    expected = brute_force_curve(states.astype(np.float64), labels)
    for dtype in (torch.float32, torch.float64):
        np.testing.assert_array_equal(knn_accuracy(torch.tensor(states), torch.tensor(labels), gram_dtype=dtype),
                                      expected)


def test_strided_selection_returns_the_smallest_values():
    from pipeline.probes.knn import _smallest
    rng = np.random.default_rng(7)
    dist = torch.tensor(rng.integers(0, 50, size=(3, 40, 4099)), dtype=torch.float64)  # many ties
    values, index = _smallest(dist, 4)
    expected, _ = dist.topk(4, dim=-1, largest=False, sorted=True)
    torch.testing.assert_close(values, expected, rtol=0, atol=0)
    torch.testing.assert_close(dist.gather(-1, index), values, rtol=0, atol=0)
    assert (index.sort(-1).values.diff(dim=-1) > 0).all()  # distinct points
