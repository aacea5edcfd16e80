"""The multitasking network and its pseudo-kernel, in numpy with hand-written gradients.

``h = sigmoid(W_xh x + W_th t + b)``, ``f = sigmoid(W_hy h + W_ty t + b)`` (fixed b); the
pseudo-kernel ``K_k(x, x_n) = <grad loss_n, grad f_k(x)>`` predicts one gradient step's output
change, ``-(lr / N) sum_n K_k(x, x_n)`` on the mean loss (docs/companion_critical_multitask.md).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from .data import MultitaskEnv, TaskData

PARAMS = ("W_xh", "W_th", "W_hy", "W_ty")


def init_params(rng: np.random.Generator, env: MultitaskEnv, n_hidden: int, init_range: float) -> dict:
    """U(-init_range, init_range) weights; the draws are U(-1, 1) scaled, so two ranges from the same
    generator state differ only by the scale."""
    shapes = {
        "W_xh": (n_hidden, env.n_inputs),
        "W_th": (n_hidden, env.n_tasks),
        "W_hy": (env.n_outputs, n_hidden),
        "W_ty": (env.n_outputs, env.n_tasks),
    }
    return {k: rng.uniform(-1.0, 1.0, size=shape) * init_range for k, shape in shapes.items()}


def copy_params(params: dict) -> dict:
    return {k: v.copy() for k, v in params.items()}


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return expit(v)


def forward(params: dict, x: np.ndarray, t: np.ndarray, bias: float = -2.0) -> tuple[np.ndarray, np.ndarray]:
    """Hidden and output activations, (N, H) and (N, n_outputs)."""
    h = _sigmoid(x @ params["W_xh"].T + t @ params["W_th"].T + bias)
    f = _sigmoid(h @ params["W_hy"].T + t @ params["W_ty"].T + bias)
    return h, f


def loss(params: dict, data: TaskData, bias: float = -2.0) -> float:
    """Mean over samples of the summed squared error over output units."""
    if len(data) == 0:
        return float("nan")
    _, f = forward(params, data.x, data.t, bias)
    return float(np.mean(np.sum((f - data.y) ** 2, axis=1)))


def loss_by_set(params: dict, data: TaskData, bias: float = -2.0) -> np.ndarray:
    _, f = forward(params, data.x, data.t, bias)
    per_sample = np.sum((f - data.y) ** 2, axis=1)
    return np.bincount(data.set_id, per_sample, minlength=len(data.sets)) / np.maximum(
        np.bincount(data.set_id, minlength=len(data.sets)), 1
    )


REDUCTIONS = ("mean", "sum")


def gradients(
    params: dict, x: np.ndarray, t: np.ndarray, y: np.ndarray, bias: float = -2.0, reduction: str = "mean"
) -> dict:
    """Gradient of the batch loss: the mean (``reduction="mean"``) or the sum (``"sum"``) over samples of
    the summed squared error."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}; allowed: {', '.join(REDUCTIONS)}")
    h, f = forward(params, x, t, bias)
    scale = 2.0 / len(x) if reduction == "mean" else 2.0
    r = scale * (f - y) * f * (1.0 - f)  # dL/da, (N, O)
    c = (r @ params["W_hy"]) * h * (1.0 - h)  # dL/dz, (N, H)
    return {"W_xh": c.T @ x, "W_th": c.T @ t, "W_hy": r.T @ h, "W_ty": r.T @ t}


def sgd_step(params: dict, x, t, y, lr: float, bias: float = -2.0, reduction: str = "mean") -> None:
    for k, g in gradients(params, x, t, y, bias, reduction).items():
        params[k] -= lr * g


def train_epoch(
    params: dict,
    data: TaskData,
    lr: float,
    batch_size: int | None,
    rng: np.random.Generator,
    bias: float = -2.0,
    reduction: str = "mean",
) -> None:
    """One epoch of minibatch SGD in a random order drawn from ``rng``; ``batch_size=None``: one
    full-batch step (no draw from ``rng``)."""
    if batch_size is None:
        sgd_step(params, data.x, data.t, data.y, lr, bias, reduction)
        return
    order = rng.permutation(len(data))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        sgd_step(params, data.x[idx], data.t[idx], data.y[idx], lr, bias, reduction)


# --------------------------------------------------------------------------
# pseudo-kernel


def kernel(params: dict, query: TaskData, train: TaskData, bias: float = -2.0) -> np.ndarray:
    """``K[q, k, n] = < grad loss_n, grad f_k(x_q) >`` over all trained weights, shape (Q, O, N).

    ``loss_n`` is sample n's summed squared error (not divided by N). Closed
    form for this network: with ``r_n = dloss_n/da_n`` (output pre-activations),
    ``c_n = (W_hy^T r_n) * h_n (1 - h_n)``, ``s_q = f_q (1 - f_q)`` and
    ``g_q = h_q (1 - h_q)``:
    ``K[q,k,n] = s_qk r_nk (h_q.h_n + t_q.t_n) + s_qk sum_j W_hy[k,j] g_qj c_nj (u_q.u_n)``
    where ``u = [x, t]`` is the input of the hidden layer.
    """
    hq, fq = forward(params, query.x, query.t, bias)
    hn, fn = forward(params, train.x, train.t, bias)
    w_hy = params["W_hy"]
    r = 2.0 * (fn - train.y) * fn * (1.0 - fn)  # (N, O)
    c = (r @ w_hy) * hn * (1.0 - hn)  # (N, H)
    s = fq * (1.0 - fq)  # (Q, O)
    g = hq * (1.0 - hq)  # (Q, H)
    uq = np.hstack([query.x, query.t])
    un = np.hstack([train.x, train.t])
    out_layer = hq @ hn.T + query.t @ train.t.T  # (Q, N)
    in_products = uq @ un.T  # (Q, N)
    k_out = np.empty((len(query), w_hy.shape[0], len(train)))
    for k in range(w_hy.shape[0]):
        hidden = (g * w_hy[k]) @ c.T  # (Q, N)
        k_out[:, k, :] = s[:, k : k + 1] * (r[:, k][None, :] * out_layer + hidden * in_products)
    return k_out


def directional_change(params: dict, direction: dict, query: TaskData, bias: float = -2.0) -> np.ndarray:
    """First-order change of the outputs on ``query`` when the weights move by ``direction``, (Q, O)."""
    h, f = forward(params, query.x, query.t, bias)
    dz = query.x @ direction["W_xh"].T + query.t @ direction["W_th"].T
    dh = h * (1.0 - h) * dz
    da = dh @ params["W_hy"].T + h @ direction["W_hy"].T + query.t @ direction["W_ty"].T
    return f * (1.0 - f) * da


def predicted_change(
    params: dict, query: TaskData, train: TaskData, lr: float, bias: float = -2.0, reduction: str = "mean"
) -> np.ndarray:
    """The kernel's one-step prediction ``-(lr / N) sum_n K[:, :, n]`` (``reduction="sum"``:
    ``-lr sum_n K[:, :, n]``) of a full-batch step on ``train``."""
    grad = gradients(params, train.x, train.t, train.y, bias, reduction)
    return directional_change(params, {k: -lr * v for k, v in grad.items()}, query, bias)


def actual_change(
    params: dict, query: TaskData, train: TaskData, lr: float, bias: float = -2.0, reduction: str = "mean"
) -> np.ndarray:
    """The real change of the outputs on ``query`` after one full-batch SGD step on ``train`` (on a copy)."""
    before = forward(params, query.x, query.t, bias)[1]
    stepped = copy_params(params)
    sgd_step(stepped, train.x, train.t, train.y, lr, bias, reduction)
    return forward(stepped, query.x, query.t, bias)[1] - before


def kernel_components(k: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Top singular values and right singular vectors (over training samples) of K as a (Q*O, N) matrix:
    the top eigenvectors of ``K^T K``, signs fixed so each vector's largest entry is positive."""
    mat = k.reshape(-1, k.shape[-1])
    gram = mat.T @ mat
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1][:n_components]
    values = np.sqrt(np.clip(values[order], 0, None))
    vectors = vectors[:, order]
    signs = np.sign(vectors[np.abs(vectors).argmax(0), np.arange(vectors.shape[1])])
    signs[signs == 0] = 1
    return values, vectors * signs


def output_components(k: np.ndarray, units, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """The kernel of some output units (an output group) as a (Q * len(units), N) matrix M: its singular
    values (all min(Q * len(units), N) of them) and its top right singular vectors over training samples
    (the top eigenvectors of M^T M), signs fixed as in ``kernel_components``. Computed from the smaller of
    the two Gram matrices."""
    mat = k[:, list(units), :].reshape(-1, k.shape[-1])
    small_left = mat.shape[0] < mat.shape[1]
    values, basis = np.linalg.eigh(mat @ mat.T if small_left else mat.T @ mat)
    order = np.argsort(values)[::-1]
    values = np.sqrt(np.clip(values[order], 0, None))
    top = order[:n_components]
    if small_left:  # right vectors from the left ones: v = M^T u / s
        scale = np.where(values[: len(top)] > 0, values[: len(top)], 1.0)
        vectors = (mat.T @ basis[:, top]) / scale
    else:
        vectors = basis[:, top]
    signs = np.sign(vectors[np.abs(vectors).argmax(0), np.arange(vectors.shape[1])])
    signs[signs == 0] = 1
    return values, vectors * signs


def representation_sharing(params: dict, env: MultitaskEnv, stimulus_index, bias: float = -2.0) -> np.ndarray:
    """(n_tasks, n_tasks) cosine similarity of the single tasks' hidden representations of the same
    stimuli, each centred over the stimuli: how much two tasks share a representation."""
    data = env.dataset(env.task_sets([1]), stimulus_index)
    h, _ = forward(params, data.x, data.t, bias)
    n_stim = len(stimulus_index)
    reps = h.reshape(env.n_tasks, n_stim, -1)
    reps = reps - reps.mean(axis=1, keepdims=True)
    flat = reps.reshape(env.n_tasks, -1)
    norms = np.linalg.norm(flat, axis=1)
    norms[norms == 0] = 1.0
    return (flat @ flat.T) / np.outer(norms, norms)


# --------------------------------------------------------------------------
# clustering (small, deterministic; no scikit-learn import in a run)


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 4, iters: int = 100) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding, best of ``n_init`` by inertia; returns labels."""
    points = np.asarray(points, dtype=np.float64)
    best: np.ndarray | None = None
    best_inertia = np.inf
    sq = (points**2).sum(1)
    for _ in range(n_init):
        chosen = [points[rng.integers(len(points))]]
        for _ in range(1, k):
            d = np.min(((points[:, None, :] - np.array(chosen)[None]) ** 2).sum(-1), axis=1)
            total = d.sum()
            chosen.append(
                points[rng.choice(len(points), p=d / total)] if total > 0 else points[rng.integers(len(points))]
            )
        centres = np.array(chosen)
        labels: np.ndarray | None = None
        for _ in range(iters):
            dist = sq[:, None] - 2 * points @ centres.T + (centres**2).sum(1)[None]
            new = dist.argmin(1)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            for c in range(k):
                members = points[labels == c]
                if len(members):
                    centres[c] = members.mean(0)
        assert labels is not None, "iters >= 1"
        inertia = float(np.sum((points - centres[labels]) ** 2))
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    assert best is not None, "a finite inertia"
    return best


def adjusted_rand_index(a, b) -> float:
    """Adjusted Rand index of two labellings (Hubert & Arabie 1985); 1 = identical partitions, ~0 = chance."""
    _, ai = np.unique(np.asarray(a, dtype=str), return_inverse=True)
    _, bi = np.unique(np.asarray(b, dtype=str), return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)
    comb = lambda v: v * (v - 1) / 2.0
    index = comb(table).sum()
    rows, cols, n = comb(table.sum(1)).sum(), comb(table.sum(0)).sum(), comb(float(len(ai)))
    expected = rows * cols / n if n else 0.0
    maximum = 0.5 * (rows + cols)
    return float((index - expected) / (maximum - expected)) if maximum != expected else 1.0
