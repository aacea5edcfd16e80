"""The information-processing probe of Jiang & Dale (2025).

For every time slice t, a k-nearest-neighbour classifier (Euclidean, uniform
votes) is fit on the hidden states h_t of the training sequences and scored on
the same states (resubstitution: each sample counts as one of its own
neighbours). Over the time slices this is the information-processing curve;
over the epochs, the learning-curve map.

Numerics and ties: squared distances are computed in float64 from the Gram
matrix (|a|^2 + |b|^2 - 2 a.b, as scikit-learn does), one batched matrix
product per chunk of time slices; a sample's distance to itself is exactly 0.
When the k-th and (k+1)-th smallest distances are equal (duplicated states,
e.g. two sentences that start with the same token), the tied points are taken
in order of sample index (a stable sort); ties in the vote go to the lower
class index, as in scikit-learn's ``KNeighborsClassifier``. Only the rows with
such a tie take the slower exact path.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .base import Probe, ProbeContext


def _squared_distances(qry: torch.Tensor, ref: torch.Tensor, same: bool) -> torch.Tensor:
    """(B, M, H), (B, N, H) -> (B, M, N) squared Euclidean distances, clamped at 0."""
    dist = torch.bmm(qry, ref.transpose(1, 2)).mul_(-2)
    dist.add_(qry.square().sum(-1).unsqueeze(-1)).add_(ref.square().sum(-1).unsqueeze(-2))
    dist.clamp_(min=0)
    if same:
        dist.diagonal(dim1=1, dim2=2).zero_()
    return dist


def _votes(dist: torch.Tensor, labels: torch.Tensor, n_classes: int, k: int) -> torch.Tensor:
    """(B, M, N) distances -> (B, M, C) class votes of the k nearest reference points."""
    n_ref = dist.shape[-1]
    take = min(k + 1, n_ref)
    values, index = dist.topk(take, dim=-1, largest=False, sorted=True)
    votes = torch.zeros((*dist.shape[:2], n_classes), dtype=torch.float64, device=dist.device)
    votes.scatter_add_(-1, labels[index[..., :k]], torch.ones_like(index[..., :k], dtype=torch.float64))
    if take > k:
        b, m = (values[..., k - 1] == values[..., k]).nonzero(as_tuple=True)
        if len(b):
            # exact rule on the tied rows only: every point closer than the k-th
            # distance, then the tied ones by ascending sample index until k
            rows = dist[b, m]
            kth = values[b, m, k - 1].unsqueeze(-1)
            closer = rows < kth
            tied = rows == kth
            room = k - closer.sum(-1, keepdim=True)
            chosen = closer | (tied & (tied.cumsum(-1) <= room))
            onehot = torch.nn.functional.one_hot(labels, n_classes).to(torch.float64)
            votes[b, m] = chosen.to(torch.float64) @ onehot
    return votes


def knn_accuracy(reference: torch.Tensor, reference_labels: torch.Tensor,
                 query: torch.Tensor | None = None, query_labels: torch.Tensor | None = None,
                 k: int = 3, max_elements: int = 2**24) -> np.ndarray:
    """Per-time-slice k-NN accuracy.

    reference: N x T x H states with labels (N,); query (M x T x H) defaults to
    the reference itself (resubstitution). Returns a float64 array of length T.
    """
    same = query is None
    if same:
        query, query_labels = reference, reference_labels
    device = reference.device
    labels = reference_labels.long().to(device)
    truth = query_labels.long().to(device)
    n_classes = int(max(labels.max(), truth.max())) + 1
    ref = reference.detach().to(torch.float64).transpose(0, 1)  # T x N x H
    qry = ref if same else query.detach().to(device, torch.float64).transpose(0, 1)
    slices = ref.shape[0]
    per_chunk = max(1, max_elements // (qry.shape[1] * ref.shape[1]))
    correct = []
    for start in range(0, slices, per_chunk):
        stop = min(slices, start + per_chunk)
        dist = _squared_distances(qry[start:stop], ref[start:stop], same)
        votes = _votes(dist, labels, n_classes, k)
        # argmax returns the first maximum: vote ties go to the lower class index
        correct.append((votes.argmax(-1) == truth).double().mean(-1))
    return torch.cat(correct).cpu().numpy()


class KnnProbe(Probe):
    name = "knn"

    def __init__(self, k: int = 3, states: str = "training_pass", splits=("train",)):
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
                acc = knn_accuracy(train_states, ctx.y_train, k=self.k)
            else:
                acc = knn_accuracy(train_states, ctx.y_train,
                                   ctx.clean_pass_states(ctx.x_test), ctx.y_test, k=self.k)
            frames.append(pd.DataFrame({
                "probe": self.name, "split": split, "epoch": np.int32(ctx.epoch),
                "time_slice": np.arange(1, len(acc) + 1, dtype=np.int32), "value": acc,
            }))
        return pd.concat(frames, ignore_index=True)
