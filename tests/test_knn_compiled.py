"""The probe's compiled CPU search (pipeline/probes/knn_compiled.py) against the torch search (the GPU path),
the exact brute force of the tie rule, and torch's groups of identical states: on real LSTM states with padded
tails, tie-heavy states and the corner cases of its bounds (tiny slices, k near N, large norms, float64 states,
non-finite states)."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from pipeline.probes import knn, knn_compiled
from pipeline.probes.knn import _groups_of_identical_states, _resubstitution_by_groups, knn_curve
from tests.knn_reference import brute_force_curve, hypergeometric_curve, near_identical_cluster


def lstm_states(n: int, slices: int, hidden: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded LSTM's hidden states on zero-padded noisy sines: padded tails run into one fixed point, a few
    float32 units apart before they reach it (the clusters the compiled search moves its origin into)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    steps = np.arange(slices)
    freq = 0.05 + 0.05 * labels[:, None] + 0.02 * rng.random((n, 3))
    x = np.sin(2 * np.pi * freq[:, None, :] * steps[None, :, None] + rng.random((n, 1, 3)) * 6)
    x = (x + 0.3 * rng.normal(size=x.shape)).astype(np.float32)
    x[steps[None, :] >= rng.integers(2, slices + 1, n)[:, None]] = 0.0
    torch.manual_seed(seed)
    with torch.no_grad():
        states = torch.nn.LSTM(3, hidden, batch_first=True)(torch.tensor(x))[0].contiguous()
    return states, torch.tensor(labels)


def both_searches(states: torch.Tensor, labels: torch.Tensor, k: int, gram_dtype: torch.dtype):
    onehot = torch.nn.functional.one_hot(labels.long(), max(2, int(labels.max()) + 1)).to(torch.float64)
    ref = states.transpose(0, 1)
    args = (ref, labels.long(), onehot, k, 2**16)
    return (
        _resubstitution_by_groups(*args, compiled=True, gram_dtype=gram_dtype),
        _resubstitution_by_groups(*args, compiled=False, gram_dtype=gram_dtype),
    )


def assert_same(compiled, torch_search):
    torch.testing.assert_close(compiled[0], torch_search[0], rtol=0, atol=0)
    assert torch.equal(compiled[1], torch_search[1])


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("gram_dtype", [torch.float32, torch.float64])
def test_lstm_states_equal_the_torch_search_bit_for_bit(k, gram_dtype):
    states, labels = lstm_states(300, 60, 8)
    compiled, reference = both_searches(states, labels, k, gram_dtype)
    assert_same(compiled, reference)
    assert compiled[1].any(), "the padded tails should produce ties"
    last = states[:, -1].double()
    distances = torch.cdist(last, last)
    assert distances[distances > 0].min() < 1e-7, "and distinct states a few float32 units apart"


def test_lstm_states_equal_the_exact_brute_force():
    states, labels = lstm_states(160, 10, 6, seed=3)
    compiled, _ = both_searches(states, labels, 3, torch.float32)
    accuracy, share = hypergeometric_curve(states.numpy().astype(np.float64), labels.numpy())
    np.testing.assert_allclose(compiled[0].sum(-1).numpy() / len(labels), accuracy, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(compiled[1].double().mean(-1).numpy(), share)


@pytest.mark.parametrize("gram_dtype", [torch.float32, torch.float64])
def test_tie_heavy_states_with_three_classes(gram_dtype):
    """Shared first token, a fixed point, near-identical tails, a one-sample class, -0 and +0."""
    rng = np.random.default_rng(1)
    n, slices, hidden = 300, 6, 8
    states = np.tanh(rng.normal(size=(n, slices, hidden))).astype(np.float32)
    states[:90, 0] = states[0, 0]
    states[120:200, 3:] = np.tanh(rng.normal(size=(1, 3, hidden))).astype(np.float32)
    states[200:260, 4:] = near_identical_cluster(rng, 60, 2, hidden)
    states[260:270, :, 0] = 0.0
    states[270:280] = states[260:270]
    states[270:280, :, 0] = -0.0
    labels = rng.integers(0, 2, n)
    labels[7] = 2
    for k in (2, 3, 4):
        compiled, reference = both_searches(torch.tensor(states), torch.tensor(labels), k, gram_dtype)
        assert_same(compiled, reference)
    two_classes = np.minimum(labels, 1)
    compiled, _ = both_searches(torch.tensor(states), torch.tensor(two_classes), 3, gram_dtype)
    accuracy, share = hypergeometric_curve(states.astype(np.float64), two_classes.astype(object))
    np.testing.assert_allclose(compiled[0].sum(-1).numpy() / n, accuracy, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(compiled[1].double().mean(-1).numpy(), share)


@pytest.mark.parametrize(
    "case",
    ["two states", "k is N - 1", "one group per slice", "large norms", "float64 states", "one state per class"],
)
def test_corner_cases_of_the_bounds(case):
    rng = np.random.default_rng(2)
    states = np.tanh(rng.normal(size=(40, 5, 4))).astype(np.float32)
    labels = rng.integers(0, 2, 40)
    k, dtype = 3, torch.float32
    if case == "two states":
        states, labels, k = states[:2], np.array([0, 1]), 1
    elif case == "k is N - 1":
        states, labels, k = states[:6], labels[:6], 5
    elif case == "one group per slice":
        states[:] = states[0]
    elif case == "large norms":  # the clusters' distances far below the norms' rounding
        states = (states * 1e4 + 3e4).astype(np.float32)
        states[10:30, 3:] = near_identical_cluster(rng, 20, 2, 4) * 1e4
    elif case == "float64 states":  # not float32 values: the move to the median is not exact, nothing moves
        states = np.tanh(rng.normal(size=(40, 5, 4)))
        states[:12, 2:] = states[0, 2:]
        dtype = torch.float64
    else:
        states, labels, k = states[:3], np.array([0, 1, 1]), 2
    compiled, reference = both_searches(torch.tensor(states), torch.tensor(labels), k, dtype)
    assert_same(compiled, reference)
    exact = brute_force_curve(states.astype(np.float64), labels, k=k)
    np.testing.assert_allclose(compiled[0].sum(-1).numpy() / len(labels), exact, rtol=0, atol=1e-12)


def test_non_finite_states_fail_with_a_clear_error():
    """A diverged network: no neighbours are defined; the error says where and why (it was an IndexError)."""
    states, labels = lstm_states(50, 3, 4)
    states[5, 1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"not finite at time slices \[2\].*diverged"):
        knn_curve(states, labels)


def test_the_search_is_chosen_by_its_predicted_cost(monkeypatch, tmp_path):
    """The compiled search is taken where the time it saves on the work to come (N^2 T H per call, times the
    calls expected) outweighs its one-off cost: compiling on a machine whose cache is empty, loading where the
    cache holds the kernels, nothing once it ran; never below COMPILED_MIN_STATES or off the CPU. The curves do
    not change with the choice."""
    monkeypatch.setattr(knn, "_process", {"torch_work": 0.0, "compiled": False})
    monkeypatch.setenv("LCM_COMPILE_CACHE", str(tmp_path / "empty"))
    cpu, unit = torch.device("cpu"), knn.SAVED_SECONDS_PER_UNIT
    assert knn.one_off_seconds() == knn.COMPILE_SECONDS
    calls_to_pay = int(knn.COMPILE_SECONDS / (1352**2 * 150 * 32 * unit)) + 1  # default gesture maps
    assert not knn.use_compiled_search(cpu, 1352, 150, 32)  # one map: compiling would not pay
    assert not knn.use_compiled_search(cpu, 1352, 150, 32, expected_calls=calls_to_pay - 1)
    assert knn.use_compiled_search(cpu, 1352, 150, 32, expected_calls=calls_to_pay)
    # one call of N 4000, T 150, H 64 saves ~15 s: less than compiling (the torch search is faster for it alone)
    assert not knn.use_compiled_search(cpu, 4000, 150, 64)
    assert knn.use_compiled_search(cpu, 8000, 150, 64)  # ~61 s saved: one large call pays on its own
    assert not knn.use_compiled_search(torch.device("meta"), 8000, 150, 64)
    assert not knn.use_compiled_search(cpu, knn.COMPILED_MIN_STATES - 1, 150, 64, expected_calls=10**6)

    states, labels = lstm_states(1100, 4, 6, seed=5)
    before = knn_curve(states, labels)
    assert not knn._process["compiled"] and knn._process["torch_work"] == 1100**2 * 4 * 6
    after = knn_curve(states, labels, expected_calls=10**6)
    assert knn._process["compiled"] and knn.one_off_seconds() == 0
    np.testing.assert_array_equal(after.accuracy, before.accuracy)
    np.testing.assert_array_equal(after.tie_share, before.tie_share)


def test_many_small_calls_add_up_to_the_compiled_search(monkeypatch):
    """Calls each too small to pay for the one-off cost switch once the torch search's work in the process
    has reached it (a caller that does not say how many calls come)."""
    monkeypatch.setattr(knn, "_process", {"torch_work": 0.0, "compiled": False})
    cpu = torch.device("cpu")
    one_call = 1000**2 * 40 * 32
    needed = knn.one_off_seconds() / knn.SAVED_SECONDS_PER_UNIT
    knn._process["torch_work"] = needed - 2 * one_call
    assert not knn.use_compiled_search(cpu, 1000, 40, 32)
    knn._process["torch_work"] = needed
    assert knn.use_compiled_search(cpu, 1000, 40, 32)


def test_groups_are_torchs_partition():
    states, _ = lstm_states(300, 20, 6)
    states[100:140, 4] = states[0, 4]
    slices = states.transpose(0, 1).contiguous()
    group, n_groups = knn_compiled.identical_groups(slices.numpy())
    expected, n_expected = _groups_of_identical_states(slices)
    assert torch.equal(n_groups, n_expected)
    for t in range(slices.shape[0]):
        # the same partition: every (ours, torch's) pair of ids is one of the groups
        assert torch.unique(torch.stack([group[t], expected[t]]), dim=1).shape[1] == int(n_groups[t])


def test_blas_behind_the_products_is_limited_to_torchs_threads():
    """The products come from scipy's BLAS through numba, which torch.set_num_threads does not reach."""
    with knn_compiled.blas_threads():
        scipy_blas = [pool for pool in threadpool_info() if "scipy_openblas-" in pool["filepath"]]
        assert scipy_blas and all(pool["num_threads"] == torch.get_num_threads() for pool in scipy_blas)


def clusters_of_near_ties(n: int, slices: int, hidden: int, clusters: int, units: int, seed: int = 0):
    """States in ``clusters`` tight clusters per slice, each a few float32 units around its centre: distances
    (~1e-13) far below the float32 rounding of the Gram identity at the clusters' norms (~1e-6)."""
    rng = np.random.default_rng(seed)
    centre = np.tanh(rng.normal(size=(clusters, slices, hidden))).astype(np.float32)
    x = centre[rng.integers(0, clusters, n)]
    x = (x + rng.integers(-units, units + 1, size=x.shape) * np.spacing(np.abs(x))).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(rng.integers(0, 2, n))


@pytest.mark.parametrize("gram_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "kind", ["near ties", "tight clusters", "quantised", "clusters with tiny coordinates", "one cluster"]
)
def test_clustered_states_equal_the_torch_search_bit_for_bit(kind, gram_dtype):
    """Blocks of the triangle in a tight cluster away from the slice's median are moved to their own origin:
    several clusters of near-ties, tight (0.01) clusters, equal distances between distinct states (a grid),
    clusters whose coordinates span more than float64 can move exactly (the move falls back), one cluster."""
    rng = np.random.default_rng(4)
    if kind == "near ties":
        states, labels = clusters_of_near_ties(420, 4, 12, clusters=5, units=4)
    elif kind == "one cluster":
        states, labels = clusters_of_near_ties(300, 3, 12, clusters=1, units=2)
    elif kind == "quantised":
        walk = np.cumsum(rng.normal(size=(400, 4, 10)) * 0.3, 1)
        states, labels = torch.from_numpy((np.round(np.tanh(walk) * 4) / 4).astype(np.float32)), None
    else:
        centre = np.tanh(rng.normal(size=(6, 4, 12)))
        x = centre[rng.integers(0, 6, 420)] + 0.01 * rng.normal(size=(420, 4, 12))
        if kind == "clusters with tiny coordinates":
            x[:200, :, 0] = 1e-12 * rng.random((200, 4))  # 1e-12 - 0.9 is not exact in float64 after rounding
            x[200:, :, 0] = 0.9
        states, labels = torch.from_numpy(x.astype(np.float32)), None
    if labels is None:
        labels = torch.from_numpy(rng.integers(0, 3, len(states)))
    compiled, reference = both_searches(states, labels, 3, gram_dtype)
    assert_same(compiled, reference)


def test_near_ties_in_several_clusters_are_settled_by_the_products(monkeypatch):
    """The products settle most rows of clusters of near-ties away from the slice's median (blocks moved to
    their own origin); with the slice's median as the only origin every such row was left open."""
    monkeypatch.setattr(knn_compiled, "SEARCH_COUNTS", {"rows": 0, "open": 0, "wide": 0})
    states, labels = clusters_of_near_ties(640, 3, 16, clusters=4, units=4, seed=2)
    compiled, reference = both_searches(states, labels, 3, torch.float32)
    assert_same(compiled, reference)
    counts = knn_compiled.SEARCH_COUNTS
    assert counts["rows"] == 640 * 3
    assert counts["open"] < 0.2 * counts["rows"], counts
