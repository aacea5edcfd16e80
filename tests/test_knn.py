"""The information-processing probe against scikit-learn and brute-force references of both tie rules."""

import math

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from pipeline.probes.knn import knn_accuracy, knn_curve
from tests.knn_reference import (
    OLD,
    assert_within_monte_carlo,
    brute_force_curve,
    hypergeometric_curve,
    old_rule_curve,
    sklearn_curve,
    sklearn_over_orders,
)

# ---------------------------------------------------------------------------
# Tie-free states: scikit-learn exactly
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n,slices,hidden", [(60, 7, 4), (203, 5, 32)])
def test_matches_sklearn_exactly_on_continuous_states(n, slices, hidden):
    rng = np.random.default_rng(n)
    labels = rng.integers(0, 2, n)
    # class-dependent drift, so that accuracy varies over the time slices
    states = rng.normal(size=(n, slices, hidden)) + labels[:, None, None] * np.linspace(0, 1.5, slices)[None, :, None]
    as32 = torch.tensor(states, dtype=torch.float32)
    theirs = sklearn_curve(states.astype(np.float32).astype(np.float64), labels)
    for ties in ("expected_random_order", OLD):
        curve = knn_curve(as32, torch.tensor(labels), ties=ties)
        np.testing.assert_array_equal(curve.accuracy, theirs)
        np.testing.assert_array_equal(curve.tie_share, np.zeros(slices))
    assert curve.accuracy.dtype == np.float64 and curve.accuracy.shape == (slices,)


@pytest.mark.parametrize("k", [1, 2, 4, 5])
def test_other_k_and_three_classes_match_sklearn_with_vote_ties_to_the_lower_class(k):
    rng = np.random.default_rng(k)
    labels = rng.integers(0, 3, 90)
    states = rng.normal(size=(90, 3, 6)) + labels[:, None, None] * 0.4
    np.testing.assert_array_equal(
        knn_accuracy(torch.tensor(states), torch.tensor(labels), k=k), sklearn_curve(states, labels, k=k)
    )


def test_leave_one_out_matches_sklearn_fit_without_the_sample():
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 2, 50)
    states = rng.normal(size=(50, 3, 5)) + labels[:, None, None] * 0.5
    expected = [
        np.mean(
            [
                KNeighborsClassifier(3)
                .fit(np.delete(states[:, t], i, 0), np.delete(labels, i))
                .predict(states[i : i + 1, t])[0]
                == labels[i]
                for i in range(50)
            ]
        )
        for t in range(3)
    ]
    for ties in ("expected_random_order", OLD):
        np.testing.assert_array_equal(
            knn_accuracy(torch.tensor(states), torch.tensor(labels), ties=ties, leave_one_out=True), expected
        )


def test_test_split_readout_scores_queries_against_training_states():
    rng = np.random.default_rng(3)
    ref, ref_y = rng.normal(size=(40, 3, 5)), rng.integers(0, 2, 40)
    qry, qry_y = rng.normal(size=(15, 3, 5)), rng.integers(0, 2, 15)
    ours = knn_accuracy(torch.tensor(ref), torch.tensor(ref_y), torch.tensor(qry), torch.tensor(qry_y))
    theirs = [KNeighborsClassifier(3).fit(ref[:, t], ref_y).score(qry[:, t], qry_y) for t in range(3)]
    np.testing.assert_array_equal(ours, theirs)


# ---------------------------------------------------------------------------
# Exact ties: scikit-learn over random sample orders, and the brute-force rule
# ---------------------------------------------------------------------------


def _groups_of_identical_states(rng, hidden: int, slices: int = 2):
    """Distinct states repeated 1-9 times each, labels drawn per copy: groups span both classes."""
    base = rng.normal(size=(12, slices, hidden))
    copies = rng.integers(1, 10, len(base))
    states = np.repeat(base, copies, axis=0)
    return states, rng.integers(0, 2, len(states))


def _quantised_states(rng, n: int = 70, hidden: int = 16, slices: int = 1):
    """Coordinates in {0, 1, 2} / 4: many distinct points at exactly equal distances."""
    labels = rng.integers(0, 2, n)
    states = rng.integers(0, 3, size=(n, slices, hidden)) / 4.0
    states[:, :, 0] += labels[:, None] / 4.0  # a little class information
    return states, labels


def _one_class_tied_group(rng, slices: int = 2):
    """A group of identical class-1 states and a group of identical class-0 states among distinct ones."""
    states = rng.normal(size=(40, slices, 3))
    labels = rng.integers(0, 2, 40)
    states[:7], labels[:7] = states[0], 1
    states[7:12], labels[7:12] = states[7] + 0.01, 0
    return states, labels


CASES = {
    "identical groups, H 16 (scikit-learn: brute force)": lambda rng: _groups_of_identical_states(rng, 16, 1),
    "identical groups, H 3 (scikit-learn: k-d tree)": lambda rng: _groups_of_identical_states(rng, 3, 1),
    "quantised states": _quantised_states,
    "all states identical": lambda rng: (np.zeros((30, 1, 4)) + rng.normal(size=(1, 1, 4)), rng.integers(0, 2, 30)),
    "one class only in the tied group": _one_class_tied_group,
}


@pytest.mark.parametrize("case", CASES)
def test_ties_give_sklearns_mean_accuracy_over_random_sample_orders(case):
    rng = np.random.default_rng(len(case))
    states, labels = CASES[case](rng)
    curve = knn_curve(torch.tensor(states), torch.tensor(labels))
    assert curve.tie_share.max() > 0  # the case does have ties
    mean, standard_error = sklearn_over_orders(states, labels, k=3, orders=300)
    assert_within_monte_carlo(curve.accuracy, mean, standard_error)
    # and the same to rounding as the rule enumerated subset by subset
    np.testing.assert_allclose(curve.accuracy, brute_force_curve(states, labels), rtol=0, atol=1e-12)
    if case.startswith("identical groups"):  # the comparison can fail: the old rule is far outside it
        old = knn_accuracy(torch.tensor(states), torch.tensor(labels), ties=OLD)
        assert np.all(np.abs(old - mean) > 10 * standard_error), (old, mean, standard_error)


def test_leave_one_out_with_ties_gives_sklearns_mean_without_the_sample():
    rng = np.random.default_rng(12)
    states, labels = _groups_of_identical_states(rng, 16, slices=1)
    states, labels = states[:24], labels[:24]
    ours = knn_accuracy(torch.tensor(states), torch.tensor(labels), leave_one_out=True)
    mean, standard_error = sklearn_over_orders(states, labels, k=3, orders=25, leave_one_out=True)
    assert_within_monte_carlo(ours, mean, standard_error)
    np.testing.assert_allclose(ours, brute_force_curve(states, labels, leave_one_out=True), rtol=0, atol=1e-12)


def test_all_states_identical_is_the_closed_form():
    """One tied group of n with n1 of class 1: each sample draws 3 of the n; the vote is the drawn majority."""
    n, n1 = 25, 11
    labels = np.r_[np.ones(n1, int), np.zeros(n - n1, int)]
    states = torch.ones((n, 1, 2))
    p_one = sum(math.comb(n1, x) * math.comb(n - n1, 3 - x) for x in (2, 3)) / math.comb(n, 3)
    expected = (n1 * p_one + (n - n1) * (1 - p_one)) / n
    curve = knn_curve(states, torch.tensor(labels))
    np.testing.assert_allclose(curve.accuracy, [expected], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(curve.tie_share, [1.0])


@pytest.mark.parametrize("k,n_classes", [(1, 2), (2, 2), (4, 3), (3, 4)])
def test_other_k_and_classes_agree_with_the_subset_enumeration(k, n_classes):
    rng = np.random.default_rng(k * 10 + n_classes)
    base = rng.integers(0, 3, size=(9, 2, 5)) / 2.0
    states = np.repeat(base, rng.integers(1, 6, len(base)), axis=0)
    labels = rng.integers(0, n_classes, len(states))
    ours = knn_accuracy(torch.tensor(states), torch.tensor(labels), k=k)
    np.testing.assert_allclose(ours, brute_force_curve(states, labels, k=k), rtol=0, atol=1e-12)


def test_test_split_with_ties_agrees_with_the_subset_enumeration():
    rng = np.random.default_rng(13)
    ref, ref_y = _quantised_states(rng, n=40, hidden=5)
    qry, qry_y = _quantised_states(rng, n=12, hidden=5)
    ours = knn_accuracy(torch.tensor(ref), torch.tensor(ref_y), torch.tensor(qry), torch.tensor(qry_y))
    np.testing.assert_allclose(ours, brute_force_curve(ref, ref_y, query=qry, query_labels=qry_y), rtol=0, atol=1e-12)


def test_tie_share_counts_samples_with_more_tied_points_than_room():
    rng = np.random.default_rng(14)
    states, labels = _groups_of_identical_states(rng, 4)
    curve = knn_curve(torch.tensor(states), torch.tensor(labels))
    accuracy, share = hypergeometric_curve(states, labels)
    np.testing.assert_array_equal(curve.tie_share, share)
    np.testing.assert_allclose(curve.accuracy, accuracy, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------
# Numerics: both Gram precisions, blocking, near-ties, long rows
# ---------------------------------------------------------------------------


def test_float32_products_give_the_same_result():
    rng = np.random.default_rng(5)
    states = torch.tensor(rng.normal(size=(120, 6, 8)), dtype=torch.float32)
    states[10:20] = states[0]  # exact duplicates, as at LSTM fixed points
    labels = torch.tensor(rng.integers(0, 2, 120))
    for ties in ("expected_random_order", OLD):
        np.testing.assert_array_equal(
            knn_accuracy(states, labels, ties=ties, gram_dtype=torch.float32), knn_accuracy(states, labels, ties=ties)
        )
    np.testing.assert_allclose(
        knn_accuracy(states, labels), brute_force_curve(states.double().numpy(), labels.numpy()), rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(
        knn_accuracy(states, labels, ties=OLD), old_rule_curve(states.double().numpy(), labels.numpy())
    )


def test_blocking_does_not_change_the_result():
    rng = np.random.default_rng(1)
    states = torch.tensor(rng.normal(size=(50, 9, 3)))
    states[30:45] = states[2]
    labels = torch.tensor(rng.integers(0, 2, 50))
    for ties in ("expected_random_order", OLD):
        for leave_one_out in (False, True):
            a = knn_curve(states, labels, ties=ties, leave_one_out=leave_one_out, max_elements=1)
            b = knn_curve(states, labels, ties=ties, leave_one_out=leave_one_out)
            np.testing.assert_array_equal(a.accuracy, b.accuracy)
            np.testing.assert_array_equal(a.tie_share, b.tie_share)


def test_old_rule_ties_follow_its_documented_rule():
    """Identical states with different labels (e.g. two sentences that start with the same token)."""
    rng = np.random.default_rng(2)
    base = rng.normal(size=(6, 4, 2))
    states = np.concatenate([base, base, base[:3]])  # exact duplicates -> distance ties at 0
    labels = rng.integers(0, 2, len(states))
    for leave_one_out in (False, True):
        np.testing.assert_array_equal(
            knn_accuracy(torch.tensor(states), torch.tensor(labels), ties=OLD, leave_one_out=leave_one_out),
            old_rule_curve(states, labels, leave_one_out=leave_one_out),
        )


def test_near_ties_below_rounding_are_decided_by_exact_distances():
    """Points closer together than the Gram identity's rounding error: only the
    exact path can order them; in float32 products most rows take it."""
    rng = np.random.default_rng(4)
    centre = rng.normal(size=(1, 3, 16)) * 10  # large norms -> large Gram rounding error
    states = centre + rng.normal(size=(90, 3, 16)) * 1e-6
    states[40:50] = states[0]  # exact duplicates among the near-duplicates
    labels = rng.integers(0, 3, 90)
    exact = states.astype(np.float32).astype(np.float64)
    new, old = brute_force_curve(exact, labels), old_rule_curve(exact, labels)
    as32 = torch.tensor(states, dtype=torch.float32)
    for dtype in (torch.float32, torch.float64):
        np.testing.assert_allclose(
            knn_accuracy(as32, torch.tensor(labels), gram_dtype=dtype, max_elements=500), new, rtol=0, atol=1e-12
        )
        np.testing.assert_array_equal(
            knn_accuracy(as32, torch.tensor(labels), ties=OLD, gram_dtype=dtype, max_elements=500), old
        )


def test_long_rows_take_the_strided_search_and_agree_with_the_references():
    """N >= 2048 selects the nearest by column minima instead of topk; ragged row ends and ties included."""
    rng = np.random.default_rng(6)
    n = 2101
    states = rng.normal(size=(n, 2, 3)).astype(np.float32)
    states[2000:2050] = states[7]  # a block of duplicates, some in the ragged end of the rows
    states[2095:] = states[3]
    labels = rng.integers(0, 2, n)
    exact = states.astype(np.float64)
    accuracy, share = hypergeometric_curve(exact, labels)
    old = old_rule_curve(exact, labels)
    for dtype in (torch.float32, torch.float64):
        curve = knn_curve(torch.tensor(states), torch.tensor(labels), gram_dtype=dtype)
        np.testing.assert_allclose(curve.accuracy, accuracy, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(curve.tie_share, share)
        np.testing.assert_array_equal(
            knn_accuracy(torch.tensor(states), torch.tensor(labels), ties=OLD, gram_dtype=dtype), old
        )


def test_strided_selection_returns_the_smallest_values():
    from pipeline.probes.knn import _smallest

    rng = np.random.default_rng(7)
    dist = torch.tensor(rng.integers(0, 50, size=(3, 40, 4099)), dtype=torch.float64)  # many ties
    values, index = _smallest(dist, 4)
    expected, _ = dist.topk(4, dim=-1, largest=False, sorted=True)
    torch.testing.assert_close(values, expected, rtol=0, atol=0)
    torch.testing.assert_close(dist.gather(-1, index), values, rtol=0, atol=0)
    assert (index.sort(-1).values.diff(dim=-1) > 0).all()  # distinct points


def test_bad_arguments_name_the_allowed_values():
    states, labels = torch.zeros((5, 2, 3)), torch.tensor([0, 1, 0, 1, 1])
    with pytest.raises(ValueError, match="expected_random_order, self_first_by_index"):
        knn_accuracy(states, labels, ties="random")
    with pytest.raises(ValueError, match=r"probe.knn.k=5: must be an integer in 1..4"):
        knn_accuracy(states, labels, k=5, leave_one_out=True)
