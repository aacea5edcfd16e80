"""The information-processing probe of Jiang & Dale (2025).

For every time slice t, a k-nearest-neighbour classifier (Euclidean, uniform
votes) is fit on the hidden states h_t of the training sequences and scored on
the same states (resubstitution: each sample counts as one of its own
neighbours). Over the time slices this is the information-processing curve;
over the epochs, the learning-curve map.

Exactness: distances are computed in float64 from explicit differences, so
identical states are at distance exactly 0 and the neighbour order does not
depend on rounding in a matrix product. Ties at the k-th distance are broken in
favour of the lower sample index (a stable sort), and ties in the vote go to the
lower class index, as in scikit-learn's ``KNeighborsClassifier``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .base import Probe, ProbeContext


def _neighbour_votes(dist: torch.Tensor, onehot: torch.Tensor, k: int) -> torch.Tensor:
    """Class votes of the k nearest reference points: (B, Q, R) distances -> (B, Q, C)."""
    kth = dist.topk(k, dim=-1, largest=False).values[..., -1:]
    closer = dist < kth
    tied = dist == kth
    room = k - closer.sum(-1, keepdim=True)
    # among the tied points, take the first `room` by reference index
    chosen = closer | (tied & (tied.cumsum(-1) <= room))
    return chosen.to(onehot.dtype) @ onehot


def knn_accuracy(reference: torch.Tensor, reference_labels: torch.Tensor,
                 query: torch.Tensor | None = None, query_labels: torch.Tensor | None = None,
                 k: int = 3, max_elements: int = 2**26) -> np.ndarray:
    """Per-time-slice k-NN accuracy.

    reference: N x T x H states with labels (N,); query (M x T x H) defaults to
    the reference itself (resubstitution). Returns a float64 array of length T.
    """
    if query is None:
        query, query_labels = reference, reference_labels
    n_classes = int(max(reference_labels.max(), query_labels.max())) + 1
    ref = reference.detach().to(torch.float64).transpose(0, 1)  # T x N x H
    qry = query.detach().to(torch.float64).transpose(0, 1)      # T x M x H
    onehot = torch.nn.functional.one_hot(reference_labels.long(), n_classes).to(torch.float64)
    truth = query_labels.long().to(ref.device)
    slices = ref.shape[0]
    per_chunk = max(1, max_elements // (qry.shape[1] * ref.shape[1]))
    correct = []
    for start in range(0, slices, per_chunk):
        stop = min(slices, start + per_chunk)
        dist = torch.cdist(qry[start:stop], ref[start:stop],
                           compute_mode="donot_use_mm_for_euclid_dist")
        votes = _neighbour_votes(dist, onehot.to(ref.device), k)
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
