"""The information-processing probe of Jiang & Dale (2025).

For every time slice t, a k-nearest-neighbour classifier (Euclidean, uniform
votes) is fit on the hidden states h_t of the training sequences and scored on
the same states (resubstitution: each sample counts as one of its own
neighbours). Over the time slices this is the information-processing curve;
over the epochs, the learning-curve map.

Numerics and ties: squared distances are computed from the Gram matrix
(|a|^2 + |b|^2 - 2 a.b, as scikit-learn does; |a|^2 dropped, constant per row),
as one matrix product of augmented states per block of time slices or query
rows, in float64 (float32 on request); rows whose k-th and (k+1)-th distances
are closer than that formula's worst-case rounding error get the distances of
their candidate neighbours recomputed in float64 from explicit differences, so
the neighbour sets are those of exact distances. In resubstitution a sample is always its own
first neighbour. Exact ties are common in real runs: identical inputs give
identical states (sentences that start with the same token, gestures that start
at the same value) and zero-padded tails drive the LSTM to the same fixed
point. When the k-th and (k+1)-th smallest distances are equal, the tied
points are taken in order of sample index (a stable sort); ties in the vote go
to the lower class index. Where there is no such tie the result equals
scikit-learn's ``KNeighborsClassifier`` exactly; where there is one,
scikit-learn's choice among equidistant points follows its internal heap order
and is not specified, so tests compare those slices with a brute-force
reference of the rule above instead. Only tied rows take the slower path.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .base import Probe, ProbeContext


def _augment(states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, H) states -> query side [-2 q, 1] and reference side [r, |r|^2], both (B, N, H + 1).

    Their product is |r|^2 - 2 q.r, the squared distance minus |q|^2 (constant
    along a row, so every row's order is unchanged): one plain matrix product
    per block with nothing to add afterwards. Scaling by -2 is exact.
    """
    ones = torch.ones((*states.shape[:-1], 1), dtype=states.dtype, device=states.device)
    return (torch.cat([states * -2, ones], -1),
            torch.cat([states, states.square().sum(-1, keepdim=True)], -1))


def _shifted_distances(qry_aug: torch.Tensor, ref_aug: torch.Tensor, self_offset: int | None,
                       out: torch.Tensor) -> torch.Tensor:
    """(B, M, H+1), (B, N, H+1) -> (B, M, N): squared distances minus |q|^2.

    Written into ``out``, a buffer reused across blocks: a fresh block-sized
    allocation costs page faults comparable to the product itself. In
    resubstitution (``self_offset``: the reference index of the block's first
    query row) each sample is its own first neighbour (-inf), even when
    duplicates of it lie at distance 0 too.
    """
    dist = torch.bmm(qry_aug, ref_aug.transpose(1, 2), out=out)
    if self_offset is not None:
        dist.diagonal(offset=self_offset, dim1=1, dim2=2).fill_(float("-inf"))
    return dist


def _smallest(dist: torch.Tensor, take: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``take`` smallest values of every row (ascending) and their indices.

    For long rows, topk's per-row partial sort dominates; instead each row is
    cut into ``cols`` strided columns (elements j, j + cols, ...), whose minima
    come from one vectorised elementwise pass, and only the ``take`` columns
    with the smallest minima are searched. They hold the ``take`` smallest
    values: any column left out has a minimum no smaller than ``take`` values
    already found. Equal values may come back with other indices than topk's;
    the caller treats every near-tie by exact distances anyway.
    """
    n = dist.shape[-1]
    if n < 2048:
        return dist.topk(take, dim=-1, largest=False, sorted=True)
    width = 8
    cols = n // width
    lead = dist.shape[:-1]
    column_min = dist[..., :cols * width].unflatten(-1, (width, cols)).amin(-2)
    _, column = column_min.topk(take, dim=-1, largest=False)
    steps = torch.arange(width, device=dist.device) * cols
    candidates = (column.unsqueeze(-2) + steps.view(width, 1)).flatten(-2)
    if n > cols * width:  # the ragged end of the row is always searched
        tail = torch.arange(cols * width, n, device=dist.device).expand(*lead, -1)
        candidates = torch.cat([candidates, tail], -1)
    values, which = dist.gather(-1, candidates).topk(take, dim=-1, largest=False, sorted=True)
    return values, candidates.gather(-1, which)


def _exact_distances(qry: torch.Tensor, ref: torch.Tensor, dist: torch.Tensor, b: torch.Tensor, m: torch.Tensor,
                     limit: torch.Tensor, self_offset: int | None) -> torch.Tensor:
    """Exact distances of query rows (b, m) to every reference point that can be among their k nearest.

    A point can be among the exact k nearest only if its Gram value is within
    the rounding bound of the k-th Gram value (``limit``: that value plus twice
    the bound); those candidates get their distance from explicit differences in
    float64 (identical states at exactly 0), every other point +inf. Only the
    candidates (tens per row at an LSTM fixed point) get explicit differences.
    """
    candidate = dist[b, m] <= limit.unsqueeze(-1)
    r, n = candidate.nonzero(as_tuple=True)
    out = torch.full(candidate.shape, float("inf"), dtype=torch.float64, device=dist.device)
    out[r, n] = torch.linalg.vector_norm(qry[b[r], m[r]].double() - ref[b[r], n].double(), dim=-1)
    if self_offset is not None:
        out[torch.arange(len(b), device=out.device), m + self_offset] = -1.0
    return out


def _votes(qry: torch.Tensor, ref: torch.Tensor, qry_aug: torch.Tensor, ref_aug: torch.Tensor,
           labels: torch.Tensor, n_classes: int, k: int, self_offset: int | None, out: torch.Tensor) -> torch.Tensor:
    """(B, M, C) class votes of the k nearest reference points of every query point.

    ``qry`` and ``ref`` are in the precision of the Gram matrix (the states' own:
    float32 states need no rounding to float32); the exact path works in float64.
    """
    dist = _shifted_distances(qry_aug, ref_aug, self_offset, out)
    n_ref = dist.shape[-1]
    take = min(k + 1, n_ref)
    values, index = _smallest(dist, take)
    votes = torch.zeros((*dist.shape[:2], n_classes), dtype=torch.float64, device=dist.device)
    votes.scatter_add_(-1, labels[index[..., :k]], torch.ones_like(index[..., :k], dtype=torch.float64))
    if take == k:
        return votes
    # The Gram identity in floating point is off by at most about (3H + 3) eps
    # (|q|^2 + |r|^2) (worst-case dot-product error bound for the H + 1 terms of
    # the augmented product, plus that of |r|^2); 4 (H + 2) eps covers it. Where the gap between the k-th and (k+1)-th distance is within twice
    # that (exact ties included), the k nearest are recomputed in float64 from
    # differences and the tie rule applied; elsewhere the Gram result is exact.
    eps = torch.finfo(dist.dtype).eps
    norms = qry.square().sum(-1) + ref_aug[..., -1].amax(-1, keepdim=True)
    bound = 4 * (qry.shape[-1] + 2) * eps * norms
    b, m = ((values[..., k] - values[..., k - 1]) <= 2 * bound).nonzero(as_tuple=True)
    if len(b):
        rows = _exact_distances(qry, ref, dist, b, m, values[b, m, k - 1] + 2 * bound[b, m], self_offset)
        kth = rows.kthvalue(k, dim=-1, keepdim=True).values
        closer = rows < kth
        tied = rows == kth
        room = k - closer.sum(-1, keepdim=True)
        # every point closer than the k-th distance, then tied ones by ascending index
        chosen = closer | (tied & (tied.cumsum(-1) <= room))
        onehot = torch.nn.functional.one_hot(labels, n_classes).to(torch.float64)
        votes[b, m] = chosen.to(torch.float64) @ onehot
    return votes


def knn_accuracy(reference: torch.Tensor, reference_labels: torch.Tensor,
                 query: torch.Tensor | None = None, query_labels: torch.Tensor | None = None,
                 k: int = 3, max_elements: int | None = None, gram_dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Per-time-slice k-NN accuracy.

    reference: N x T x H states with labels (N,); query (M x T x H) defaults to
    the reference itself (resubstitution). Returns a float64 array of length T.
    ``gram_dtype=torch.float32`` halves the matrix-product cost for float32
    states; the result is the same (the error bound grows, so more rows take the
    exact path: a loss where states sit at LSTM fixed points, a gain on large N).
    """
    same = query is None
    if same:
        query, query_labels = reference, reference_labels
    device = reference.device
    labels = reference_labels.long().to(device)
    truth = query_labels.long().to(device)
    n_classes = int(max(labels.max(), truth.max())) + 1
    # float32 products are only exact-checkable for states that are float32 already
    dtype = gram_dtype
    if dtype == torch.float32 and (reference.dtype != torch.float32 or
                                   (not same and query.dtype != torch.float32)):
        dtype = torch.float64
    ref = reference.detach().to(dtype).transpose(0, 1)  # T x N x H
    qry = ref if same else query.detach().to(device, dtype).transpose(0, 1)
    slices, n_query, n_ref = ref.shape[0], qry.shape[1], ref.shape[1]
    # Work in blocks of about max_elements distances: several time slices at
    # once for small N, blocks of query rows for large N. Small N: 2 MB blocks,
    # so that every temporary of a block stays small and is served again from
    # the process's heap (larger ones are fresh mappings: millions of page
    # faults per run, measured, doubling the probe's cost). Large N: 4 M
    # distances per block, since fewer, larger products and selections win
    # there and the one buffer is allocated once per call.
    if max_elements is None:
        max_elements = 2**18 if n_query * n_ref <= 2**18 else 2**22
    per_chunk = max(1, max_elements // (n_query * n_ref))
    rows_per_block = n_query if per_chunk > 1 else max(1, min(n_query, max_elements // n_ref))
    buffer = torch.empty(min(slices, per_chunk) * rows_per_block * n_ref, dtype=dtype, device=device)
    hits = torch.zeros(slices, dtype=torch.float64, device=device)
    for start in range(0, slices, per_chunk):
        stop = min(slices, start + per_chunk)
        qry_aug, ref_aug = _augment(ref[start:stop])
        if not same:
            qry_aug = _augment(qry[start:stop])[0]
        for row in range(0, n_query, rows_per_block):
            end = min(n_query, row + rows_per_block)
            out = buffer[:(stop - start) * (end - row) * n_ref].view(stop - start, end - row, n_ref)
            votes = _votes(qry[start:stop, row:end], ref[start:stop], qry_aug[:, row:end], ref_aug,
                           labels, n_classes, k, row if same else None, out)
            # argmax returns the first maximum: vote ties go to the lower class index
            hits[start:stop] += (votes.argmax(-1) == truth[row:end]).sum(-1)
    # divided on the host: CUDA's division by a scalar is not always correctly rounded
    return hits.cpu().numpy() / n_query


class KnnProbe(Probe):
    name = "knn"

    def __init__(self, k: int = 3, states: str = "training_pass", splits=("train",),
                 gram_precision: str = "float64"):
        if gram_precision not in ("float32", "float64"):
            raise ValueError(f"probe.knn.gram_precision={gram_precision!r}; allowed: float32, float64")
        self.gram_dtype = getattr(torch, gram_precision)
        if states not in ("training_pass", "clean_pass"):
            raise ValueError(f"probe.knn.states={states!r}; allowed: training_pass, clean_pass")
        bad = set(splits) - {"train", "test"}
        if bad:
            raise ValueError(f"probe.knn.splits has {sorted(bad)}; allowed: train, test")
        self.k, self.states, self.splits = int(k), states, tuple(splits)

    @property
    def needs_training_pass_states(self) -> bool:  # type: ignore[override]
        return self.states == "training_pass"

    def measure(self, ctx: ProbeContext) -> pd.DataFrame:
        if self.states == "training_pass":
            train_states = ctx.training_pass_states
        else:
            train_states = ctx.clean_pass_states(ctx.x_train)
        frames = []
        for split in self.splits:
            if split == "train":
                acc = knn_accuracy(train_states, ctx.y_train, k=self.k, gram_dtype=self.gram_dtype)
            else:
                acc = knn_accuracy(train_states, ctx.y_train, ctx.clean_pass_states(ctx.x_test),
                                   ctx.y_test, k=self.k, gram_dtype=self.gram_dtype)
            frames.append(pd.DataFrame({
                "probe": self.name, "split": split, "epoch": np.int32(ctx.epoch),
                "time_slice": np.arange(1, len(acc) + 1, dtype=np.int32), "value": acc,
            }))
        return pd.concat(frames, ignore_index=True)
