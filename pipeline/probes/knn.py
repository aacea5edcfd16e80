"""The information-processing probe of Jiang & Dale (2025).

For every time slice t, a k-nearest-neighbour classifier (Euclidean, uniform
votes) is fit on the hidden states h_t of the training sequences and scored on
the same states (resubstitution: each sample counts as one of its own
neighbours). Over the time slices this is the information-processing curve;
over the epochs, the learning-curve map.

Numerics and ties: squared distances are computed from the Gram matrix
(|a|^2 + |b|^2 - 2 a.b, as scikit-learn does), one batched matrix product per
chunk of time slices, in float64 (float32 on request); rows whose k-th and (k+1)-th distances are closer than that formula's
worst-case rounding error are recomputed in float64 from explicit differences,
so the neighbour sets are those of exact distances. In resubstitution a sample is always its own
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


def _shifted_distances(qry: torch.Tensor, ref: torch.Tensor, self_offset: int | None) -> torch.Tensor:
    """(B, M, H), (B, N, H) -> (B, M, N): squared distances minus |q|^2, i.e. |r|^2 - 2 q.r.

    Dropping |q|^2 (constant along a row) leaves every row's order unchanged and
    makes the whole matrix one fused batched product. In resubstitution
    (``self_offset``: the reference index of the block's first query row) each
    sample is its own first neighbour (-inf), even when duplicates of it lie at
    distance 0 too.
    """
    dist = torch.baddbmm(ref.square().sum(-1).unsqueeze(-2), qry, ref.transpose(1, 2), alpha=-2)
    if self_offset is not None:
        dist.diagonal(offset=self_offset, dim1=1, dim2=2).fill_(float("-inf"))
    return dist


def _exact_rows(qry: torch.Tensor, ref: torch.Tensor, b: torch.Tensor, m: torch.Tensor,
                self_offset: int | None) -> torch.Tensor:
    """Distances of query rows (b, m) to every reference point, from explicit differences.

    Computed one time slice at a time with cdist's difference kernel (no
    Gram identity), so identical states are at exactly 0 and order is exact.
    """
    out = torch.empty((len(b), ref.shape[1]), dtype=ref.dtype, device=ref.device)
    slices, starts = torch.unique_consecutive(b, return_counts=True)
    offset = 0
    for t, count in zip(slices.tolist(), starts.tolist()):
        rows = m[offset:offset + count]
        out[offset:offset + count] = torch.cdist(qry[t, rows].unsqueeze(0), ref[t].unsqueeze(0),
                                                 compute_mode="donot_use_mm_for_euclid_dist")[0]
        offset += count
    if self_offset is not None:
        out[torch.arange(len(b), device=out.device), m + self_offset] = -1.0
    return out


def _votes(qry: torch.Tensor, ref: torch.Tensor, labels: torch.Tensor, n_classes: int, k: int,
           self_offset: int | None) -> torch.Tensor:
    """(B, M, C) class votes of the k nearest reference points of every query point.

    ``qry`` and ``ref`` are in the precision of the Gram matrix (the states' own:
    float32 states need no rounding to float32); the exact path works in float64.
    """
    dist = _shifted_distances(qry, ref, self_offset)
    n_ref = dist.shape[-1]
    take = min(k + 1, n_ref)
    values, index = dist.topk(take, dim=-1, largest=False, sorted=True)
    votes = torch.zeros((*dist.shape[:2], n_classes), dtype=torch.float64, device=dist.device)
    votes.scatter_add_(-1, labels[index[..., :k]], torch.ones_like(index[..., :k], dtype=torch.float64))
    if take == k:
        return votes
    # The Gram identity in floating point is off by at most (2H + 3) eps
    # (|q|^2 + |r|^2) (worst-case dot-product error bound); 4 (H + 2) eps covers
    # it. Where the gap between the k-th and (k+1)-th distance is within twice
    # that (exact ties included), the k nearest are recomputed in float64 from
    # differences and the tie rule applied; elsewhere the Gram result is exact.
    eps = torch.finfo(dist.dtype).eps
    norms = qry.square().sum(-1) + ref.square().sum(-1).amax(-1, keepdim=True)
    bound = 4 * (qry.shape[-1] + 2) * eps * norms
    b, m = ((values[..., k] - values[..., k - 1]) <= 2 * bound).nonzero(as_tuple=True)
    if len(b):
        rows = _exact_rows(qry.double(), ref.double(), b, m, self_offset)
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
                 k: int = 3, max_elements: int = 2**22, gram_dtype: torch.dtype = torch.float64) -> np.ndarray:
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
    # Work in blocks of about max_elements distances (a few MB), so that each
    # block's distances are still in cache when they are selected from: several
    # time slices at once for small N, blocks of query rows for large N.
    per_chunk = max(1, max_elements // (n_query * n_ref))
    rows_per_block = n_query if per_chunk > 1 else max(1, min(n_query, max_elements // n_ref))
    hits = torch.zeros(slices, dtype=torch.float64, device=device)
    for start in range(0, slices, per_chunk):
        stop = min(slices, start + per_chunk)
        for row in range(0, n_query, rows_per_block):
            end = min(n_query, row + rows_per_block)
            votes = _votes(qry[start:stop, row:end], ref[start:stop], labels, n_classes, k,
                           row if same else None)
            # argmax returns the first maximum: vote ties go to the lower class index
            hits[start:stop] += (votes.argmax(-1) == truth[row:end]).sum(-1)
    return (hits / n_query).cpu().numpy()


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
