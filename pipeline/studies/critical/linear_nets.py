"""Deep linear networks of the critical-period studies (Kleinman, Achille & Soatto 2024), in numpy.

Two competing pathways summed into one output, trained on hierarchical data, with each pathway's
share of each singular mode (``train_two_pathways``); and a deep matrix factorisation trained on a
deficit matrix, then on the target (``train_matrix_completion``). Definitions and measurements:
docs/companion_critical_multitask.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...blas import single_threaded_blas
from ...deficit import Window

# --------------------------------------------------------------------------
# data


def hierarchical_items(levels: int = 3) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``X`` (items as one-hot columns, 2^levels x 2^levels), ``Y`` (features x items), feature names.

    Features of a binary tree with ``levels`` splits: the root (every item),
    then each node of every level (2 halves, 4 quarters, 8 leaves for 3 levels):
    1 + 2 + 4 + 8 = 15 features for 8 items.
    """
    n_items = 2**levels
    level_names = ["root", "half", "quarter", "leaf"] if levels == 3 else [f"level{d}" for d in range(levels + 1)]
    rows, names = [], []
    for depth in range(levels + 1):
        width = n_items // 2**depth
        for node in range(2**depth):
            row = np.zeros(n_items)
            row[node * width : (node + 1) * width] = 1.0
            rows.append(row)
            names.append(f"{level_names[depth]}-{node}")
    return np.eye(n_items), np.array(rows), names


def low_rank_matrix(rng: np.random.Generator, n: int, rank: int) -> np.ndarray:
    """``U V^T / sqrt(rank)`` with i.i.d. N(0, 1) ``U, V`` (n x rank), rescaled to Frobenius norm ``n``
    (so the entries have root mean square 1); the generator of Kleinman et al.'s matrix completion."""
    u = rng.standard_normal((n, rank))
    v = rng.standard_normal((n, rank))
    w = u @ v.T / np.sqrt(rank)
    return w * (n / np.linalg.norm(w))


# --------------------------------------------------------------------------
# deep linear chains


def gaussian_chain(rng: np.random.Generator, dims: list[int], init_scale: float, dtype=np.float64) -> list[np.ndarray]:
    """Layers ``W_k`` of shape (dims[k+1], dims[k]) with i.i.d. N(0, sigma_k^2) entries,
    ``sigma_k = init_scale^(1/D) / sqrt(dims[k+1])``: each layer scales a random vector's norm by
    about ``init_scale^(1/D)``, so the end-to-end map starts at about ``init_scale`` (small init)."""
    depth = len(dims) - 1
    gain = init_scale ** (1.0 / depth)
    return [
        rng.normal(0.0, gain / np.sqrt(dims[k + 1]), size=(dims[k + 1], dims[k])).astype(dtype) for k in range(depth)
    ]


def aligned_chain(
    rng: np.random.Generator, u: np.ndarray, v: np.ndarray, strengths: np.ndarray, depth: int, width: int
) -> list[np.ndarray]:
    """Kleinman et al.'s aligned ("diagonal") initialisation: ``W_1 = R A V^T``, ``W_k = R A R^T``,
    ``W_D = U A R^T`` with one random orthogonal ``R`` (width x width) and ``A = diag(strengths^(1/D))``,
    so that the end-to-end map is ``U diag(strengths) V^T``: every layer is balanced and aligned with
    the data's singular vectors, and each mode then follows its own scalar dynamics (``analytic_pathways``).
    ``u``/``v``: the data's singular vectors (outputs x r, inputs x r); ``strengths``: r values > 0."""
    r = len(strengths)
    if depth == 1:
        return [u[:, :r] @ np.diag(strengths) @ v[:, :r].T]
    if width < r:
        raise ValueError(f"width={width} is below the {r} modes of the aligned initialisation")
    q, tri = np.linalg.qr(rng.standard_normal((width, width)))
    rot = q * np.sign(np.diag(tri))  # Haar-distributed orthogonal matrix
    a = np.asarray(strengths, dtype=float) ** (1.0 / depth)
    first = rot[:, :r] @ np.diag(a) @ v[:, :r].T
    middle = rot[:, :r] @ np.diag(a) @ rot[:, :r].T  # modes beyond the data's rank start (and stay) at 0
    last = u[:, :r] @ np.diag(a) @ rot[:, :r].T
    return [first] + [middle.copy() for _ in range(depth - 2)] + [last]


def aligned_strengths(
    rng: np.random.Generator, n_modes: int, width: int, init_scale: float, noise: float
) -> np.ndarray:
    """The authors' initial mode strengths: ``init_scale * (1 + noise * z)`` for ``width`` normal draws,
    sorted in decreasing order, the first ``n_modes`` kept (their ``eps (1 + 0.1 randn)``)."""
    values = np.sort(init_scale * (1.0 + noise * rng.standard_normal(max(width, n_modes))))[::-1]
    if values[n_modes - 1] <= 0:
        raise ValueError(f"aligned_noise={noise} gives a non-positive initial strength; use a smaller noise")
    return values[:n_modes].copy()


def analytic_pathways(
    depth: int, target: np.ndarray, k0_a: np.ndarray, k0_b: np.ndarray, lr: float, steps: int, window: Window
) -> tuple[np.ndarray, np.ndarray]:
    """Each mode's strength in pathways a and b, ``(steps + 1) x modes``, from the aligned initialisation.

    With balanced, aligned layers every layer of a pathway keeps one value ``p`` per mode and the
    pathway's strength is ``k = p^D``; a full-batch gradient step on ``0.5 * sum (y - yhat)^2`` with
    one-hot items is exactly ``p <- p + lr * p^(D-1) * (s - k_a - k_b)`` (``s``: the mode's full
    strength), pathway b skipping its step inside the deficit window (Kleinman et al.'s ODE, discretised
    as they do). It equals the simulation up to rounding (tests/test_critical.py)."""
    pa = np.asarray(k0_a, dtype=float) ** (1.0 / depth)
    pb = np.asarray(k0_b, dtype=float) ** (1.0 / depth)
    target = np.asarray(target, dtype=float)
    ka, kb = np.empty((steps + 1, len(pa))), np.empty((steps + 1, len(pb)))
    for t in range(steps + 1):
        ka[t], kb[t] = pa**depth, pb**depth
        if t == steps:
            break
        omega = target - ka[t] - kb[t]
        step_a = lr * pa ** (depth - 1) * omega
        if not window.active(t):
            pb = pb + lr * pb ** (depth - 1) * omega
        pa = pa + step_a
    return ka, kb


def chain_product(layers: list[np.ndarray]) -> np.ndarray:
    out = layers[0]
    for w in layers[1:]:
        out = w @ out
    return out


def _forward(layers: list[np.ndarray], x: np.ndarray | None) -> list[np.ndarray | None]:
    """Inputs of every layer and the output; ``x=None`` is the identity (no product is spent on it)."""
    out = layers[0] if x is None else layers[0] @ x
    acts: list[np.ndarray | None] = [x, out]
    for w in layers[1:]:
        out = w @ out
        acts.append(out)
    return acts


def _output(acts: list[np.ndarray | None]) -> np.ndarray:
    """The chain's output, the last of ``_forward``'s list (only its first entry, the input, may be None)."""
    out = acts[-1]
    assert out is not None
    return out


def _descend(layers: list[np.ndarray], acts: list[np.ndarray | None], delta: np.ndarray, lr: float) -> None:
    """One gradient step, in place, given the loss gradient ``delta`` at the chain's output.

    ``acts[k]`` is the input of layer k (``acts[0]`` the data, None for the
    identity); the gradient of layer k is ``delta_k acts[k]^T`` and
    ``delta_{k-1} = W_k^T delta_k``.
    """
    delta = lr * delta
    for k in range(len(layers) - 1, -1, -1):
        w = layers[k]
        layer_input = acts[k]
        grad = delta if layer_input is None else delta @ layer_input.T
        if k:
            delta = w.T @ delta
        w -= grad


# --------------------------------------------------------------------------
# competing pathways


@dataclass
class PathwaysResult:
    shares: pd.DataFrame  # step, mode, level, singular_value, target, strength_a/b, share_a/b, deficit
    losses: pd.DataFrame  # step, loss
    final_loss: float
    singular_values: np.ndarray  # of Sigma_yx
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def mode_basis(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``U, s, V`` of ``Sigma_yx = Y X^T / P`` (nonzero modes only) and the target map's strengths."""
    p = x.shape[1]
    sigma_yx = y @ x.T / p
    u, s, vt = np.linalg.svd(sigma_yx, full_matrices=False)
    rank = int((s > 1e-10 * s[0]).sum())
    u, s, v = u[:, :rank], s[:rank], vt[:rank].T
    optimum = np.linalg.lstsq(x.T, y.T, rcond=None)[0].T  # Sigma_yx Sigma_x^-1 (least squares map)
    target = np.einsum("oi,oj,ji->i", u, optimum, v)
    return u, s, v, target


def mode_levels(s: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """1-based level of each mode: modes with equal singular values share a level."""
    levels, current = np.empty(len(s), dtype=np.int64), 0
    for i, value in enumerate(s):
        if i == 0 or abs(value - s[i - 1]) > tol * s[0]:
            current += 1
        levels[i] = current
    return levels


# the columns of PathwaysResult.shares: one row per recorded step and mode
SHARE_COLUMNS = (
    "step",
    "mode",
    "level",
    "singular_value",
    "target",
    "strength_a",
    "strength_b",
    "share_a",
    "share_b",
    "deficit",
)


def _mode_rows(t, lvl, s, target, ka, kb, share_a, active) -> list[tuple]:
    """The rows of SHARE_COLUMNS for one recorded step, one per mode."""
    return [
        (
            t,
            i + 1,
            int(lvl[i]),
            float(s[i]),
            float(target[i]),
            float(ka[i]),
            float(kb[i]),
            float(share_a[i]),
            float(1 - share_a[i]),
            active,
        )
        for i in range(len(s))
    ]


def _analytic_frame(ka: np.ndarray, kb: np.ndarray, shares: pd.DataFrame) -> pd.DataFrame:
    """The exact per-mode strengths of both pathways at the recorded steps, in long format."""
    steps_rec = np.array(sorted(shares.step.unique()))
    modes = np.arange(1, ka.shape[1] + 1)
    return pd.DataFrame(
        {
            "step": np.repeat(steps_rec, len(modes)).astype(np.int32),
            "mode": np.tile(modes, len(steps_rec)).astype(np.int32),
            "strength_a": ka[steps_rec].ravel(),
            "strength_b": kb[steps_rec].ravel(),
        }
    )


@single_threaded_blas()
def train_two_pathways(
    *,
    depth: int,
    width: int = 100,
    lr: float = 0.01,
    steps: int = 1000,
    window: Window = Window(0, 0),
    init_scale: float = 0.01,
    mirrored: bool = True,
    aligned: bool = False,
    aligned_noise: float = 0.1,
    rng: np.random.Generator,
    record_every: int = 10,
    levels: int = 3,
    on_record: Callable[[int, float, float], None] | None = None,
) -> PathwaysResult:
    """Two depth-``depth`` linear pathways summed into one output; pathway b is deprived
    (no parameter update) at steps t in ``window`` (t counts updates from 0).

    Recorded after 0, ``record_every``, 2 ``record_every``, ..., ``steps`` updates.
    ``mirrored``: pathway b starts as an exact copy of pathway a, so without a
    deficit the two stay identical (shares exactly 1/2) and any imbalance is the
    deficit's doing; otherwise each pathway draws its own initial weights.
    ``aligned``: the authors' initialisation (``aligned_chain``; both pathways
    identical, mode strengths ``init_scale (1 + aligned_noise z)``); the exact
    per-mode solution (``analytic_pathways``) is then in ``extra["analytic"]``
    (step, mode, strength_a, strength_b at the recorded steps).
    """
    import time

    t0 = time.perf_counter()
    x, y, _ = hierarchical_items(levels)
    u, s, v, target = mode_basis(x, y)
    lvl = mode_levels(s)
    dims = [x.shape[0]] + [width] * (depth - 1) + [y.shape[0]]
    analytic = None
    if aligned:
        k0 = aligned_strengths(rng, len(s), width, init_scale, aligned_noise)
        path_a = aligned_chain(rng, u, v, k0, depth, width)
        path_b = [w.copy() for w in path_a]
        analytic = analytic_pathways(depth, target, k0, k0, lr, steps, window)
    else:
        path_a = gaussian_chain(rng, dims, init_scale)
        path_b = [w.copy() for w in path_a] if mirrored else gaussian_chain(rng, dims, init_scale)

    xin = None if x.shape[0] == x.shape[1] and np.array_equal(x, np.eye(x.shape[0])) else x
    rows, losses = [], []

    def record(t: int, loss: float) -> None:
        ka = np.einsum("oi,oj,ji->i", u, chain_product(path_a), v)
        kb = np.einsum("oi,oj,ji->i", u, chain_product(path_b), v)
        total = ka + kb
        with np.errstate(divide="ignore", invalid="ignore"):
            share_a = np.where(total != 0, ka / total, np.nan)
        active = window.active(t - 1) if t > 0 else False
        rows.extend(_mode_rows(t, lvl, s, target, ka, kb, share_a, active))
        losses.append((t, loss))
        if on_record is not None:
            on_record(t, loss, float(1 - share_a[0]))

    loss = float("nan")
    for t in range(steps + 1):
        acts_a = _forward(path_a, xin)
        acts_b = _forward(path_b, xin)
        err = _output(acts_a) + _output(acts_b) - y
        loss = 0.5 * float(np.sum(err * err))
        if t % record_every == 0 or t == steps:
            record(t, loss)
        if t == steps:
            break
        _descend(path_a, acts_a, err, lr)
        if not window.active(t):
            _descend(path_b, acts_b, err, lr)

    shares = pd.DataFrame(rows, columns=list(SHARE_COLUMNS))
    shares = shares.astype({"step": np.int32, "mode": np.int32, "level": np.int32})
    loss_frame = pd.DataFrame(losses, columns=["step", "loss"]).astype({"step": np.int32})
    extra = {} if analytic is None else {"analytic": _analytic_frame(*analytic, shares)}
    return PathwaysResult(shares, loss_frame, loss, s, time.perf_counter() - t0, extra)


def imbalance(shares: pd.DataFrame, mode: int, step: int) -> float:
    """``(k_a - k_b) / target`` of a mode at a recorded step (0 = balanced)."""
    row = shares[(shares["mode"] == mode) & (shares.step == step)].iloc[0]
    return float((row.strength_a - row.strength_b) / row.target)


# --------------------------------------------------------------------------
# matrix completion


@dataclass
class CompletionResult:
    errors: pd.DataFrame  # step, phase, train_loss, test_error, test_error_current, unobserved_error
    singular_values: pd.DataFrame  # step, phase, index, value
    final_test_error: float
    final_train_loss: float
    seconds: float = 0.0


@single_threaded_blas()
def train_matrix_completion(
    *,
    depth: int,
    n: int = 100,
    rank_deficit: int = 10,
    rank_target: int = 5,
    n_observed: int = 2000,
    deficit_steps: int = 0,
    steps: int = 2000,
    lr: float = 10.0,
    init_scale: float = 1e-3,
    rng: np.random.Generator,
    record_every: int = 50,
    n_singular: int = 10,
    dtype=np.float32,
    on_record: Callable[[int, float, float], None] | None = None,
) -> CompletionResult:
    """Deep linear factorisation ``W = W_D ... W_1`` (n x n factors) fitted to ``n_observed`` entries
    (one mask, drawn once) of a rank-``rank_deficit`` deficit matrix for ``deficit_steps`` steps, then
    of the rank-``rank_target`` target for ``steps`` steps.

    Draw order from ``rng``: target, deficit matrix (independent of the target),
    observed positions (uniform, without replacement), initial factors
    (``gaussian_chain`` with the end-to-end scale ``init_scale * sqrt(n)`` in
    Frobenius norm, as the authors' ``gaussian`` init). Loss: ``0.5 * mean`` of
    the squared error over the observed entries; test error: mean squared error
    against the target over all n^2 entries.
    """
    import time

    t0 = time.perf_counter()
    target = low_rank_matrix(rng, n, rank_target)
    deficit = low_rank_matrix(rng, n, rank_deficit)
    chosen = np.zeros(n * n, dtype=bool)
    chosen[rng.choice(n * n, n_observed, replace=False)] = True
    observed = chosen.reshape(n, n)
    layers = gaussian_chain(rng, [n] * (depth + 1), init_scale, dtype=dtype)
    mask = observed.astype(dtype)
    target_t, deficit_t = target.astype(dtype), deficit.astype(dtype)
    unobserved = ~observed
    total = deficit_steps + steps
    err_rows: list[tuple] = []
    sv_rows: list[tuple] = []

    def record(t: int, w: np.ndarray) -> tuple[float, float]:
        phase = "deficit" if t < deficit_steps else "target"
        current = deficit_t if phase == "deficit" else target_t
        w64 = w.astype(np.float64)
        diff_current = w64 - current
        train = 0.5 * float(np.sum((diff_current * observed) ** 2)) / n_observed
        diff = w64 - target
        test = float(np.mean(diff**2))
        err_rows.append((t, phase, train, test, float(np.mean(diff_current**2)), float(np.mean(diff[unobserved] ** 2))))
        values = np.linalg.svd(w64, compute_uv=False)[:n_singular]
        sv_rows.extend((t, phase, i + 1, float(value)) for i, value in enumerate(values))
        if on_record is not None:
            on_record(t, train, test)
        return train, test

    scale = 1.0 / n_observed
    for t in range(total + 1):
        acts = _forward(layers, None)
        w = _output(acts)
        if t % record_every == 0 or t == total or t == deficit_steps:
            record(t, w)
        if t == total:
            break
        current = deficit_t if t < deficit_steps else target_t
        _descend(layers, acts, (mask * (w - current)) * scale, lr)

    errors = pd.DataFrame(
        err_rows, columns=["step", "phase", "train_loss", "test_error", "test_error_current", "unobserved_error"]
    ).drop_duplicates("step", keep="last")
    svs = pd.DataFrame(sv_rows, columns=["step", "phase", "index", "value"]).drop_duplicates(
        ["step", "index"], keep="last"
    )
    errors = errors.astype({"step": np.int32}).reset_index(drop=True)
    svs = svs.astype({"step": np.int32, "index": np.int32}).reset_index(drop=True)
    last = errors.iloc[-1]
    return CompletionResult(errors, svs, float(last.test_error), float(last.train_loss), time.perf_counter() - t0)
