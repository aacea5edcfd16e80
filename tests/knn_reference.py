"""References the KNN probe's tests compare against: scikit-learn, a brute-force search under each tie
rule, the exact expectation over tied subsets, scikit-learn's mean over random sample orders, and
tie-heavy states like a padded tail's."""

import itertools
import math
from fractions import Fraction

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

OLD = "self_first_by_index"


def sklearn_curve(states: np.ndarray, labels: np.ndarray, k: int = 3) -> np.ndarray:
    return np.array(
        [
            KNeighborsClassifier(n_neighbors=k).fit(states[:, t], labels).score(states[:, t], labels)
            for t in range(states.shape[1])
        ]
    )


def _distances(reference: np.ndarray, point: np.ndarray) -> np.ndarray:
    return np.sqrt(((reference - point) ** 2).sum(1))


def _sets(dist: np.ndarray, k: int):
    """S (strictly closer than the k-th distance) and E (at exactly the k-th distance), as index arrays."""
    kth = np.sort(dist)[k - 1]
    return np.flatnonzero(dist < kth), np.flatnonzero(dist == kth)


def _vote(labels: np.ndarray, n_classes: int) -> int:
    return int(np.argmax(np.bincount(labels, minlength=n_classes)))  # first maximum: the lower class


def brute_force_curve(
    states: np.ndarray,
    labels: np.ndarray,
    k: int = 3,
    leave_one_out: bool = False,
    query: np.ndarray | None = None,
    query_labels: np.ndarray | None = None,
) -> np.ndarray:
    """Plain loops over samples and explicit subsets: the k nearest are S plus each r-subset of E in turn,
    all subsets equally likely; the probability of a right vote is counted as an exact fraction."""
    same = query is None
    query, query_labels = (states, labels) if same else (query, query_labels)
    n_classes = int(max(labels.max(), query_labels.max())) + 1
    out = []
    for t in range(states.shape[1]):
        total = Fraction(0)
        for i in range(len(query)):
            dist = _distances(states[:, t], query[i, t])
            if leave_one_out:
                dist[i] = np.inf
            closer, tied = _sets(dist, k)
            subsets = list(itertools.combinations(tied, k - len(closer)))
            right = sum(
                _vote(labels[np.r_[closer, list(subset)].astype(int)], n_classes) == query_labels[i]
                for subset in subsets
            )
            total += Fraction(right, len(subsets))
        out.append(float(total / len(query)))
    return np.array(out)


def hypergeometric_curve(states: np.ndarray, labels: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and tie share for two classes, with math.comb instead of subsets (for large tied sets)."""
    acc, share = [], []
    for t in range(states.shape[1]):
        total, decided_by_ties = Fraction(0), 0
        for i in range(len(states)):
            closer, tied = _sets(_distances(states[:, t], states[i, t]), k)
            room, ones = k - len(closer), int(labels[tied].sum())
            decided_by_ties += len(tied) > room
            right = 0
            for x in range(room + 1):  # x points of class 1 among the drawn
                votes_one = int(labels[closer].sum()) + x
                prediction = int(votes_one > k - votes_one)
                right += math.comb(ones, x) * math.comb(len(tied) - ones, room - x) * (prediction == labels[i])
            total += Fraction(right, math.comb(len(tied), room))
        acc.append(float(total / len(states)))
        share.append(decided_by_ties / len(states))
    return np.array(acc), np.array(share)


def old_rule_curve(states: np.ndarray, labels: np.ndarray, k: int = 3, leave_one_out: bool = False) -> np.ndarray:
    """The old rule in plain loops: the sample itself first (or left out), then the others by a stable
    sort on (exact distance, index); majority vote, vote ties to the lower class."""
    n, slices, _ = states.shape
    out = []
    for t in range(slices):
        correct = 0
        for i in range(n):
            dist = _distances(states[:, t], states[i, t])
            dist[i] = np.inf if leave_one_out else -1.0
            nearest = np.argsort(dist, kind="stable")[:k]
            correct += int(_vote(labels[nearest], labels.max() + 1) == labels[i])
        out.append(correct / n)
    return np.array(out)


def sklearn_over_orders(
    states: np.ndarray,
    labels: np.ndarray,
    k: int,
    orders: int,
    seed: int = 0,
    leave_one_out: bool = False,
    algorithm: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's accuracy per time slice, averaged over uniformly random sample orders, and its standard error.

    Each order permutes states and labels together, fits and predicts, and maps
    the predictions back; leave-one-out fits on the other samples in that order.
    ``algorithm="kd_tree"`` makes scikit-learn compute distances from explicit
    differences, as the probe's exact path does; its brute-force search (what
    "auto" picks for more than 15 features) uses the Gram identity, whose
    rounding can reorder states that differ by less than its error.
    """
    rng = np.random.default_rng(seed)
    n, slices, _ = states.shape
    scores = np.empty((orders, slices))
    for o in range(orders):
        order = rng.permutation(n)
        x, y = states[order], labels[order]
        for t in range(slices):
            if leave_one_out:
                right = 0
                for i in range(n):
                    keep = np.arange(n) != i
                    model = KNeighborsClassifier(n_neighbors=k, algorithm=algorithm).fit(x[keep, t], y[keep])
                    right += int(model.predict(x[i : i + 1, t])[0] == y[i])
                scores[o, t] = right / n
            else:
                predicted = np.empty(n, dtype=labels.dtype)
                predicted[order] = (
                    KNeighborsClassifier(n_neighbors=k, algorithm=algorithm).fit(x[:, t], y).predict(x[:, t])
                )
                scores[o, t] = np.mean(predicted == labels)
    return scores.mean(0), scores.std(0, ddof=1) / np.sqrt(orders)


def assert_within_monte_carlo(ours: np.ndarray, mean: np.ndarray, standard_error: np.ndarray) -> None:
    # 5 standard errors: a false alarm about once in 3.5 million slices
    assert np.all(np.abs(ours - mean) <= 5 * standard_error + 1e-12), (ours, mean, standard_error)


def near_identical_cluster(rng, n: int, slices: int, hidden: int, dtype=np.float32) -> np.ndarray:
    """A padded tail short of its fixed point: states a few float32 units apart, with exact repeats."""
    centre = np.tanh(rng.normal(size=(1, slices, hidden))).astype(dtype)
    ulp = np.spacing(np.abs(centre)).astype(dtype)
    states = centre + rng.integers(-2, 3, size=(n, slices, hidden)).astype(dtype) * ulp
    return states.astype(dtype)
