"""The information-processing probe of Jiang & Dale (2025).

For every time slice t, a k-nearest-neighbour classifier (Euclidean, uniform
votes) is fit on the hidden states h_t of the training sequences and scored on
the same states (resubstitution, the study's readout): over the slices the
information-processing curve, over the epochs the learning-curve map.

Ties (``probe.knn.ties``; identical states are common: inputs that start alike,
padded tails at a fixed point). For query i, d_k is its k-th smallest
distance, S the points closer (s of them), E those at exactly d_k (e); the k
nearest are S plus r = k - s points of E.
- ``expected_random_order`` (default): the r points are a uniformly random
  subset of E, the sample itself one point at distance 0 like any other (what
  scikit-learn's order-dependent choice is under a random sample order); the
  slice's value is the exact expectation (multivariate hypergeometric over
  E's class counts, enumerated).
- ``self_first_by_index`` (the earlier rule): the sample first, other tied
  points by ascending index.
Vote ties go to the lower class, as scikit-learn's ``predict`` does.
``probe.knn.mode=leave_one_out`` leaves the sample out of its own neighbours.

Numerics: distances come from the Gram identity (one matrix product per block,
float64 or float32); where the gaps around the k-th value are within its
rounding bound, the candidates' distances are recomputed from explicit float64
differences (identical states at exactly 0). Resubstitution under the default
rule searches each slice's groups of identical states once, counted with their
sizes; on CPU with a compiled search (knn_compiled.py: the upper triangle of
the products, each pair with its own rounding bound after moving the slice to
its median state). bench/bench_knn.py and docs/performance.md have the measurements.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config import ConfigError
from ..schema import KNN, KNN_MODES, KNN_TIE_RULES, KNN_TIE_SHARE
from .base import Probe, ProbeContext

COMPILED_SOURCE = Path(__file__).with_name("knn_compiled.py")
# elements of the largest temporary of the exact path (pairs x H, rows x compositions x C)
_EXACT_ELEMENTS = 2**22
# The compiled CPU search (knn_compiled) is 2-3x faster than the torch search but its kernels cost a one-off
# compilation per machine (~40 s at load 1, far more under load) and a load from the signed cache per process
# (compile_cache.py). The search is chosen by predicted cost: the time it saves on the work to come (a call's
# N^2 T H, times the calls the caller expects: a run's remaining epochs) against that one-off cost, so a short
# run (the tests', `lcm debug=quick`) never compiles and a long one pays it at its first map. Both searches give
# the same values, bit for bit, so the choice changes no record. Measured on a 2-core Xeon VM, quiet
# (docs/performance.md): the torch search ~1.5e-10 s and the compiled one ~0.5e-10 s per unit of N^2 T H; the
# compilation of the whole map's kernel (search_map) 40 s at load 1 (the per-slice kernels before it: 19 s).
COMPILED_MIN_STATES = 1000
SAVED_SECONDS_PER_UNIT = 1.0e-10
COMPILE_SECONDS = 40.0
LOAD_SECONDS = 1.0
# work (N^2 T H units) the torch search did in this process, and whether the compiled search has run in it
_process = {"torch_work": 0.0, "compiled": False}


def one_off_seconds() -> float:
    """What the compiled search would cost before its first slice in this process: nothing once it has run,
    a load where the signed cache holds this source's kernels, else their compilation."""
    if _process["compiled"]:
        return 0.0
    from . import compile_cache

    return LOAD_SECONDS if compile_cache.holds_kernels(COMPILED_SOURCE) else COMPILE_SECONDS


def use_compiled_search(device: torch.device, n: int, slices: int, hidden: int, expected_calls: int = 1) -> bool:
    """Whether resubstitution of N states over T slices should take the compiled search: on CPU, from
    COMPILED_MIN_STATES states, when the time it saves on the work to come (``expected_calls`` calls of this
    size; with the torch search's work in this process so far, so that many small calls add up) outweighs
    ``one_off_seconds``."""
    if device.type != "cpu" or n < COMPILED_MIN_STATES:
        return False
    work = float(n) ** 2 * slices * hidden
    return (work * max(1, expected_calls) + _process["torch_work"]) * SAVED_SECONDS_PER_UNIT > one_off_seconds()


def _augment(states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, H) states -> query side [-2 q, 1] and reference side [r, |r|^2], both (B, N, H + 1).

    Their product is |r|^2 - 2 q.r, the squared distance minus |q|^2 (constant
    along a row, so every row's order is unchanged): one plain matrix product
    per block with nothing to add afterwards. Scaling by -2 is exact.
    """
    ones = torch.ones((*states.shape[:-1], 1), dtype=states.dtype, device=states.device)
    return (torch.cat([states * -2, ones], -1), torch.cat([states, states.square().sum(-1, keepdim=True)], -1))


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
    if n < 1024:
        return dist.topk(take, dim=-1, largest=False, sorted=True)
    width = 4 if n < 2500 else 8  # measured (bench/bench_knn.py sizes): fewer, longer columns win below
    cols = n // width
    lead = dist.shape[:-1]
    column_min = dist[..., : cols * width].unflatten(-1, (width, cols)).amin(-2)
    _, column = column_min.topk(take, dim=-1, largest=False)
    steps = torch.arange(width, device=dist.device) * cols
    candidates = (column.unsqueeze(-2) + steps.view(width, 1)).flatten(-2)
    if n > cols * width:  # the ragged end of the row is always searched
        tail = torch.arange(cols * width, n, device=dist.device).expand(*lead, -1)
        candidates = torch.cat([candidates, tail], -1)
    values, which = dist.gather(-1, candidates).topk(take, dim=-1, largest=False, sorted=True)
    return values, candidates.gather(-1, which)


def _exact_distances(
    qry: torch.Tensor,
    ref: torch.Tensor,
    dist: torch.Tensor,
    b: torch.Tensor,
    m: torch.Tensor,
    limit: torch.Tensor,
    self_offset: int | None,
    self_value: float | None,
) -> torch.Tensor:
    """Exact distances of query rows (b, m) to every reference point that can be among their k nearest.

    A point can be among the exact k nearest only if its Gram value is within
    the rounding bound of the k-th Gram value (``limit``: that value plus twice
    the bound); those candidates get their distance from explicit differences in
    float64 (identical states at exactly 0), every other point +inf. Only the
    candidates (tens to hundreds per row at an LSTM fixed point) get explicit
    differences, a bounded number of pairs at a time. ``self_value`` replaces
    the sample's own distance (-1: first, +inf: left out; None: its own 0).
    """
    candidate = dist[b, m] <= limit.unsqueeze(-1)
    r, n = candidate.nonzero(as_tuple=True)
    out = torch.full(candidate.shape, float("inf"), dtype=torch.float64, device=dist.device)
    step = max(1, _EXACT_ELEMENTS // qry.shape[-1])
    for lo in range(0, len(r), step):
        rr, nn = r[lo : lo + step], n[lo : lo + step]
        out[rr, nn] = torch.linalg.vector_norm(qry[b[rr], m[rr]].double() - ref[b[rr], nn].double(), dim=-1)
    if self_offset is not None and self_value is not None:
        out[torch.arange(len(b), device=out.device), m + self_offset] = self_value
    return out


@functools.cache
def _compositions(r: int, n_classes: int) -> np.ndarray:
    """Every way to split r votes over n_classes classes: (P, n_classes) counts, P = C(r + C - 1, C - 1)."""
    rows = []
    for cut in itertools.combinations(range(r + n_classes - 1), n_classes - 1):  # stars and bars
        edges = (-1, *cut, r + n_classes - 1)
        rows.append([edges[j + 1] - edges[j] - 1 for j in range(n_classes)])
    return np.array(rows, dtype=np.int64)


def _binomials(n: torch.Tensor, top: int) -> torch.Tensor:
    """C(n, j) for j = 0..top, as float64 integers (exact below 2**53): shape (*n.shape, top + 1)."""
    out = [torch.ones_like(n)]
    for j in range(1, top + 1):
        # C(n, j-1) (n - j + 1) is a multiple of j, so every step is an exact integer
        out.append((out[-1] * (n - j + 1) / j).clamp_min(0))
    return torch.stack(out, -1)


def _expected_votes(closer_votes: torch.Tensor, tied_votes: torch.Tensor, room: torch.Tensor) -> torch.Tensor:
    """P(majority vote == c) for every class c when ``room`` points are drawn uniformly without replacement
    from the tied set: (R, C).

    closer_votes, tied_votes: (R, C) class counts of S and E (float64); room:
    (R,) r = k - s >= 1. Enumerates every composition x of r over the classes
    (x_c <= |E_c|), weighted by prod_c C(|E_c|, x_c) / C(e, r); the vote is
    S's counts plus x, lower class on vote ties. Numerators are summed as
    exact integers (below 2**53, so in any order) and divided once.
    """
    n_rows, n_classes = closer_votes.shape
    out = torch.zeros((n_rows, n_classes), dtype=torch.float64, device=closer_votes.device)
    for r in torch.unique(room).tolist():
        comps = torch.from_numpy(_compositions(int(r), n_classes)).to(closer_votes.device)
        (rows,) = (room == r).nonzero(as_tuple=True)
        step = max(1, _EXACT_ELEMENTS // (len(comps) * n_classes))
        for lo in range(0, len(rows), step):
            sel = rows[lo : lo + step]
            table = _binomials(tied_votes[sel], int(r))  # (R, C, r + 1)
            weight = table.gather(-1, comps.T.unsqueeze(0).expand(len(sel), -1, -1)).prod(1)  # (R, P)
            votes = closer_votes[sel].unsqueeze(1) + comps.to(torch.float64)  # (R, P, C)
            winner = torch.nn.functional.one_hot(votes.argmax(-1), n_classes)  # first maximum: the lower class
            total = _binomials(tied_votes[sel].sum(-1), int(r))[:, -1]
            out[sel] = (weight.unsqueeze(-1) * winner).sum(1) / total.unsqueeze(-1)
    return out


def _expected_correct(
    closer_votes: torch.Tensor, tied_votes: torch.Tensor, room: torch.Tensor, truth: torch.Tensor
) -> torch.Tensor:
    """P(majority vote == truth) per row (``_expected_votes`` at the true class)."""
    return _expected_votes(closer_votes, tied_votes, room).gather(1, truth.unsqueeze(-1)).squeeze(-1)


def _block(
    qry: torch.Tensor,
    ref: torch.Tensor,
    qry_aug: torch.Tensor,
    ref_aug: torch.Tensor,
    labels: torch.Tensor,
    onehot: torch.Tensor,
    truth: torch.Tensor,
    k: int,
    self_offset: int | None,
    leave_one_out: bool,
    random_order: bool,
    out: torch.Tensor,
    right: torch.Tensor,
    tied: torch.Tensor,
):
    """Fill ``right`` (B, M), whether each query point is classified right, and ``tied`` (B, M), whether ties
    decided its neighbours. Under the random-order rule, returns the rows the ties leave open, to be scored
    together after the last block: (b, m) and their S and E class counts, room r and true class; else None.

    ``qry`` and ``ref`` are in the precision of the Gram matrix (the states' own:
    float32 states need no rounding to float32); the exact path works in float64.
    ``out`` is a buffer reused across blocks: a fresh block-sized allocation
    costs page faults comparable to the product itself.
    """
    dist = torch.bmm(qry_aug, ref_aug.transpose(1, 2), out=out)
    self_value = None
    if self_offset is not None and (leave_one_out or not random_order):
        self_value = float("inf") if leave_one_out else -1.0
        dist.diagonal(offset=self_offset, dim1=1, dim2=2).fill_(float("inf") if leave_one_out else float("-inf"))
    n_ref = dist.shape[-1] - (1 if self_offset is not None and leave_one_out else 0)
    take = min(k + 1, n_ref)
    values, index = _smallest(dist, take)
    votes = torch.zeros((*dist.shape[:2], onehot.shape[1]), dtype=torch.float64, device=dist.device)
    votes.scatter_add_(-1, labels[index[..., :k]], torch.ones_like(index[..., :k], dtype=torch.float64))
    torch.eq(votes.argmax(-1), truth, out=right)  # vote ties: the first maximum, the lower class
    tied.zero_()
    if take == k:
        return None
    # The Gram identity in floating point is off by at most about (3H + 3) eps
    # (|q|^2 + |r|^2) (worst-case dot-product error bound for the H + 1 terms of
    # the augmented product, plus that of |r|^2); 4 (H + 2) eps covers it. Where
    # the gap between the k-th and (k+1)-th value is within twice that (exact
    # ties included), the candidates' distances are recomputed in float64 from
    # differences and the tie rule applied; elsewhere the Gram result is exact.
    eps = torch.finfo(dist.dtype).eps
    norms = qry.square().sum(-1) + ref_aug[..., -1].amax(-1, keepdim=True)
    bound = 4 * (qry.shape[-1] + 2) * eps * norms
    b, m = ((values[..., k] - values[..., k - 1]) <= 2 * bound).nonzero(as_tuple=True)
    if not len(b):
        return None
    rows = _exact_distances(qry, ref, dist, b, m, values[b, m, k - 1] + 2 * bound[b, m], self_offset, self_value)
    kth = rows.kthvalue(k, dim=-1, keepdim=True).values
    closer = rows < kth
    at_kth = rows == kth
    room = k - closer.sum(-1)
    tied[b, m] = at_kth.sum(-1) > room
    if random_order:
        return b, m, closer.to(torch.float64) @ onehot, at_kth.to(torch.float64) @ onehot, room, truth[m]
    # every point closer than the k-th distance, then tied ones by ascending index
    chosen = closer | (at_kth & (at_kth.cumsum(-1) <= room.unsqueeze(-1)))
    right[b, m] = ((chosen.to(torch.float64) @ onehot).argmax(-1) == truth[m]).to(torch.float64)
    return None


def _groups_of_identical_states(states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Identical states of every time slice, grouped: group ids (T, N) int64 and the number of groups (T,).

    Rows are sorted by a fixed random projection and runs of equal projections
    are checked row by row against the run's first row (equal as numbers: +0
    and -0 alike, their distances to every point are the same). A row unequal
    to its run's first row, a collision of projections, gets a group of its
    own: a missed duplicate costs time, never changes a result, because the
    distance search treats distinct points at distance zero as tied.
    """
    slices, n, hidden = states.shape
    direction = torch.randn(hidden, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # elementwise and summed per row (not a matrix product, whose kernels may treat rows differently), so
    # that equal rows get equal keys; in float64, so that states a few float32 units apart (a padded
    # tail short of its fixed point) rarely share a key
    key, order = (states.to(torch.float64) * direction.to(states.device)).sum(-1).sort(-1)
    run_start = torch.ones((slices, n), dtype=torch.bool, device=states.device)
    run_start[:, 1:] = key[:, 1:] != key[:, :-1]
    first = (torch.arange(n, device=states.device) * run_start).cummax(-1).values
    same = torch.ones((slices, n), dtype=torch.bool, device=states.device)
    t, j = (~run_start).nonzero(as_tuple=True)  # only rows in a run of equal keys are compared
    same[t, j] = (states[t, order[t, j]] == states[t, order[t, first[t, j]]]).all(-1)
    ids = (run_start | ~same).cumsum(-1) - 1
    group = torch.empty_like(ids).scatter_(1, order, torch.where(same, ids.gather(1, first), ids))
    return group, ids[:, -1] + 1


def _near_ties(
    points: torch.Tensor,
    queries: torch.Tensor,
    ref_aug: torch.Tensor,
    rows: torch.Tensor,
    limit: torch.Tensor,
    weight: torch.Tensor,
    counts: torch.Tensor,
    k: int,
    max_elements: int,
    shift: bool = True,
) -> tuple[torch.Tensor, ...]:
    """The tie rule for groups ``rows`` whose k nearest the Gram values cannot decide, from exact distances.

    ``queries``: their augmented states (``_augment``), ``ref_aug`` every group's.
    Candidates of a row: every group whose Gram value is within ``limit`` (R,
    1), the k-th value plus twice the rounding bound; all others are farther
    than its k-th distance. Their distances come from explicit float64
    differences (identical states at exactly 0), for a chunk of rows against
    the union of the chunk's candidates at once (near-identical states, as
    padded tails approach a fixed point, share their candidates). With the
    groups' sizes ``weight`` and class counts ``counts`` (G, C): d_k is the
    distance at which the sizes, in order of distance, reach k. Returns per row
    the class counts of S (closer than d_k) and E (at d_k), room r = k - |S| and
    e = |E|.

    With ``shift``, a chunk's candidates are first searched again among
    themselves, moved to their first member's position (exactly, checked): a
    cluster of near-identical states then has norms near 0, so its Gram
    values' rounding bound shrinks with them and a matrix product decides most
    rows; only the rest get explicit differences.
    """
    n_classes = counts.shape[1]
    closer = torch.empty((len(rows), n_classes), dtype=torch.float64, device=points.device)
    at, room, size = torch.empty_like(closer), torch.empty_like(closer[:, 0]), torch.empty_like(closer[:, 0])
    # chunks larger than the search blocks: each chunk pays for its union and its move once
    step = max(1, 8 * max_elements // len(points))
    for lo in range(0, len(rows), step):
        chunk = rows[lo : lo + step]
        near = (queries[lo : lo + step] @ ref_aug.T) <= limit[lo : lo + step]
        (union,) = near.any(0).nonzero(as_tuple=True)
        if shift:
            local = points[union].double()
            moved = local - local[:1]
            # TwoSum: the rounding error of each difference, zero everywhere when the move is exact
            back = moved - local
            error = (local - (moved - back)) + (-local[:1] - back)
            if not error.any():
                size_u = len(union)
                buffer = torch.empty(
                    max(size_u, min(max_elements, size_u**2)), dtype=torch.float64, device=points.device
                )
                found = _nearest_groups(
                    moved,
                    torch.searchsorted(union, chunk),
                    weight[union],
                    counts[union],
                    k,
                    max_elements,
                    buffer,
                    final=True,
                    shift=False,
                )
                closer[lo : lo + step], at[lo : lo + step], room[lo : lo + step], size[lo : lo + step] = found[:4]
                continue
        exact = torch.cdist(
            points[chunk].double(), points[union].double(), compute_mode="donot_use_mm_for_euclid_dist"
        ).masked_fill_(~near[:, union], float("inf"))
        nearest, which = exact.topk(min(k, len(union)), dim=-1, largest=False)
        reach = weight[union[which]].cumsum(-1)
        kth = nearest.gather(1, (reach < k).sum(-1, keepdim=True))
        inside, on = (exact < kth).double(), (exact == kth).double()
        closer[lo : lo + step], at[lo : lo + step] = inside @ counts[union], on @ counts[union]
        room[lo : lo + step], size[lo : lo + step] = k - inside @ weight[union], on @ weight[union]
    return closer, at, room, size


def _nearest_groups(
    points: torch.Tensor,
    rows: torch.Tensor | None,
    weight: torch.Tensor,
    counts: torch.Tensor,
    k: int,
    max_elements: int,
    buffer: torch.Tensor,
    final: bool,
    shift: bool = True,
) -> tuple[torch.Tensor, ...]:
    """S and E of groups ``rows`` (None: all) from Gram values in the precision of ``points`` (G, H).

    Returns the class counts of S and E, room and e per row, and the rows the
    Gram values left undecided (indices into ``rows``). Where the gaps around
    the group at which the sizes reach k exceed twice the rounding bound (as in
    _block), the Gram order is exact. With ``final`` the undecided rows are
    decided by exact distances (``_near_ties``) and none is returned.
    """
    size, hidden = points.shape
    qry_aug, ref_aug = _augment(points)
    queries = qry_aug if rows is None else qry_aug[rows]
    eps = torch.finfo(points.dtype).eps
    norms = points.square().sum(-1) if rows is None else points[rows].square().sum(-1)
    margin = (8 * (hidden + 2) * eps * (norms + ref_aug[:, -1].max())).unsqueeze(-1)
    n_rows, take = len(queries), min(size, k + 1)
    values = torch.empty((n_rows, take), dtype=points.dtype, device=points.device)
    index = torch.empty((n_rows, take), dtype=torch.int64, device=points.device)
    step = max(1, min(n_rows, max_elements // size))
    for lo in range(0, n_rows, step):
        hi = min(n_rows, lo + step)
        dist = torch.mm(queries[lo:hi], ref_aug.T, out=buffer[: (hi - lo) * size].view(hi - lo, size))
        values[lo:hi], index[lo:hi] = _smallest(dist, take)
    reach = weight[index].cumsum(-1)
    j = (reach < k).sum(-1, keepdim=True)  # the group at which the sizes reach k
    at_j = values.gather(1, j)
    upper = (j + 1 >= take) | (values.gather(1, (j + 1).clamp(max=take - 1)) - at_j > margin)
    split = reach.gather(1, j) > k
    lower = ~split | (j == 0) | (at_j - values.gather(1, (j - 1).clamp(min=0)) > margin)
    before = torch.arange(take, device=points.device) < j
    closer = (before.unsqueeze(-1) * counts[index]).sum(1)
    at = counts[index.gather(1, j).squeeze(-1)]
    room = k - (before * weight[index]).sum(-1)
    e = weight[index.gather(1, j).squeeze(-1)]
    (unclear,) = (~(upper & lower)).squeeze(-1).nonzero(as_tuple=True)
    if final and len(unclear):
        # rows of near-identical states next to each other: they share their candidates
        unclear = unclear[index[unclear, 0].argsort()]
        closer[unclear], at[unclear], room[unclear], e[unclear] = _near_ties(
            points,
            queries[unclear],
            ref_aug,
            unclear if rows is None else rows[unclear],
            at_j[unclear] + margin[unclear],
            weight,
            counts,
            k,
            max_elements,
            shift,
        )
        unclear = unclear[:0]
    return closer, at, room, e, unclear


def _resubstitution_by_groups(
    ref: torch.Tensor,
    labels: torch.Tensor,
    onehot: torch.Tensor,
    k: int,
    max_elements: int,
    compiled: bool | None = None,
    gram_dtype: torch.dtype | None = None,
    expected_calls: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resubstitution under the random-order rule, once per group of identical states.

    ref: (T, N, H) states; ``gram_dtype``: the products' precision (default:
    the states'; float32 only for float32 states). Within a time slice every
    sample of a group has the same distances, so the same S and E and, per
    true class, the same expected vote; identical states cost one row and one
    column of the distance matrix, and a group larger than the room is a tie
    counted from its class counts, with no distances among its members. Rows
    too close to call within the products' rounding are searched again in
    float64, then by exact distances. Returns per (slice, sample) the expected
    right vote and whether ties decided it: the same values, bit for bit, as a
    search over all samples (finite states). ``compiled`` searches each slice
    with ``knn_compiled`` (numba), else with torch (the GPU path); by default
    as ``use_compiled_search`` predicts for ``expected_calls`` calls.
    """
    gram_dtype = gram_dtype or ref.dtype
    if compiled is None:
        compiled = use_compiled_search(ref.device, ref.shape[1], ref.shape[0], ref.shape[2], expected_calls)
    if not compiled:
        _process["torch_work"] += float(ref.shape[1]) ** 2 * ref.shape[0] * ref.shape[2]
        return _search_groups(ref.to(gram_dtype), labels, onehot, k, max_elements)
    from . import knn_compiled

    with knn_compiled.blas_threads():
        group, n_groups = knn_compiled.identical_groups(ref.numpy())
        product_dtype = np.float32 if gram_dtype == torch.float32 else np.float64
        found = knn_compiled.search_map(
            ref.numpy(), group.numpy(), n_groups.numpy(), labels.numpy(), onehot.shape[1], k, product_dtype
        )
    _process["compiled"] = True
    closer, at, room, e = (torch.from_numpy(part) for part in found)
    return _scored(closer, at, room, e, group, labels)


def _scored(closer, at, room, e, group, labels):
    """Per (slice, sample) the expected right vote and whether ties decided it, from every slice's S and E per
    group (closer, at: (T, G, C) class counts; room, e: (T, G); slices with fewer groups padded with e 0)."""
    decided_by_ties = e > room
    votes = torch.nn.functional.one_hot((closer + at).argmax(-1), closer.shape[-1]).to(torch.float64)
    t, rows = decided_by_ties.nonzero(as_tuple=True)  # slice by slice, as the per-slice searches append them
    if len(t):
        votes[t, rows] = _expected_votes(closer[t, rows], at[t, rows], room[t, rows])
    slices = torch.arange(len(group)).unsqueeze(-1)
    return votes[slices, group, labels], decided_by_ties.gather(1, group)


def _search_groups(ref, labels, onehot, k, max_elements):
    """``_resubstitution_by_groups``' torch search, slice by slice (the GPU path)."""
    slices, n, _ = ref.shape
    n_classes = onehot.shape[1]
    device = ref.device
    group, n_groups = _groups_of_identical_states(ref)
    most = int(n_groups.max())
    buffer = torch.empty(max(most, min(max_elements, most**2)), dtype=ref.dtype, device=device)
    wide = buffer if ref.dtype == torch.float64 else None
    votes_by_slice, open_rows = [], []
    tied = torch.empty((slices, n), dtype=torch.bool, device=device)
    for t in range(slices):
        g, size = group[t], int(n_groups[t])
        first = torch.full((size,), n, dtype=torch.int64, device=device).scatter_reduce_(
            0, g, torch.arange(n, device=device), "amin"
        )
        points = ref[t, first]
        weight = torch.bincount(g, minlength=size).to(torch.float64)
        counts = torch.zeros((size, n_classes), dtype=torch.float64, device=device).index_add_(0, g, onehot)
        final = ref.dtype == torch.float64
        closer, at, room, e, unclear = _nearest_groups(points, None, weight, counts, k, max_elements, buffer, final)
        if len(unclear):
            if wide is None:
                wide = torch.empty(max(most, min(max_elements // 2, most**2)), dtype=torch.float64, device=device)
            closer[unclear], at[unclear], room[unclear], e[unclear], _ = _nearest_groups(
                points.double(), unclear, weight, counts, k, max_elements // 2, wide, True
            )
        decided_by_ties = e > room
        votes = torch.nn.functional.one_hot((closer + at).argmax(-1), n_classes).to(torch.float64)
        (open_groups,) = decided_by_ties.nonzero(as_tuple=True)
        if len(open_groups):
            open_rows.append((t, open_groups, closer[open_groups], at[open_groups], room[open_groups]))
        votes_by_slice.append(votes)
        tied[t] = decided_by_ties[g]
    if open_rows:
        _, rows, closers, ats, rooms = zip(*open_rows)
        expected = _expected_votes(torch.cat(closers), torch.cat(ats), torch.cat(rooms)).split([len(r) for r in rows])
        for (t, rows_t, *_), value in zip(open_rows, expected):
            votes_by_slice[t][rows_t] = value
    right = torch.stack([votes_by_slice[t][group[t], labels] for t in range(slices)])
    return right, tied


def _check_inputs(reference: torch.Tensor, query: torch.Tensor | None, k: int, ties: str, leave_one_out: bool) -> None:
    """``knn_curve``'s arguments checked, with errors that name the key and what is allowed (query: None for
    resubstitution)."""
    if ties not in KNN_TIE_RULES:
        raise ValueError(f"ties={ties!r}; allowed: {', '.join(KNN_TIE_RULES)}")
    if leave_one_out and query is not None:
        raise ValueError("leave_one_out applies to resubstitution (no query states)")
    n_usable = reference.shape[0] - (1 if leave_one_out else 0)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_usable:
        raise ValueError(
            f"probe.knn.k={k!r}: must be an integer in 1..{n_usable} "
            f"({reference.shape[0]} reference states{', one left out' if leave_one_out else ''})"
        )
    for name, states in (("reference", reference), ("query", query)):
        if states is not None and not bool(states.isfinite().all()):
            bad = (~states.isfinite()).flatten(2).any(-1).any(0).nonzero().flatten() + 1
            raise ValueError(
                f"probe.knn: the {name} hidden states are not finite at time slices {bad.tolist()[:10]}: "
                "the network diverged (a NaN or infinite loss); lower trainer.lr or check the inputs"
            )


@dataclass(frozen=True)
class KnnCurve:
    """Per time slice: the k-NN accuracy and the share of query samples whose neighbour set ties decided."""

    accuracy: np.ndarray
    tie_share: np.ndarray


def knn_curve(
    reference: torch.Tensor,
    reference_labels: torch.Tensor,
    query: torch.Tensor | None = None,
    query_labels: torch.Tensor | None = None,
    k: int = 3,
    ties: str = "expected_random_order",
    leave_one_out: bool = False,
    max_elements: int | None = None,
    gram_dtype: torch.dtype = torch.float32,
    expected_calls: int = 1,
) -> KnnCurve:
    """Per-time-slice k-NN accuracy and tie share (float64 arrays of length T).

    reference: N x T x H states with labels (N,); query (M x T x H) defaults to
    the reference itself (resubstitution; ``leave_one_out`` leaves each sample
    out of its own neighbours). ``ties``: see the module docstring. A query
    sample counts as decided by ties when more points sit at its k-th distance
    than there is room for (e > r). ``gram_dtype``: the matrix products'
    precision, float32 (a run's default) or float64; the result is the same
    (the error bound grows, so more rows take the exact path); float64 states
    always use float64. ``expected_calls``: how many calls of this size the
    caller will make (a run: its remaining epochs), which decides whether the
    compiled search's one-off cost pays (``use_compiled_search``).
    """
    same = query is None
    if same:
        query, query_labels = reference, reference_labels
    assert query is not None and query_labels is not None
    _check_inputs(reference, None if same else query, k, ties, leave_one_out)
    device = reference.device
    labels = reference_labels.long().to(device)
    truth = query_labels.long().to(device)
    n_classes = max(2, int(max(labels.max(), truth.max())) + 1)
    onehot = torch.nn.functional.one_hot(labels, n_classes).to(torch.float64)
    # float32 products are only exact-checkable for states that are float32 already
    dtype = gram_dtype
    if dtype == torch.float32 and (reference.dtype != torch.float32 or (not same and query.dtype != torch.float32)):
        dtype = torch.float64
    if same and not leave_one_out and ties == "expected_random_order":
        # blocks of 2 MiB of distances: a block stays in a core's cache between the product and the search
        right, tied = _resubstitution_by_groups(
            reference.detach().transpose(0, 1),
            labels,
            onehot,
            k,
            max_elements or 2**21 // torch.finfo(dtype).bits * 8,
            gram_dtype=dtype,
            expected_calls=expected_calls,
        )
        return KnnCurve(right.sum(-1).cpu().numpy() / len(labels), tied.sum(-1).cpu().numpy() / len(labels))
    ref = reference.detach().to(dtype).transpose(0, 1)  # T x N x H
    qry = ref if same else query.detach().to(device, dtype).transpose(0, 1)
    return _curve_by_blocks(ref, qry, same, labels, onehot, truth, k, ties, leave_one_out, max_elements)


def _curve_by_blocks(ref, qry, same, labels, onehot, truth, k, ties, leave_one_out, max_elements) -> KnnCurve:
    """``knn_curve`` for queries other than the states themselves, leave-one-out or the majority tie rule:
    ref (T, N, H) and qry (T, M, H) in the products' precision, searched a block at a time."""
    device = ref.device
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
    buffer = torch.empty(min(slices, per_chunk) * rows_per_block * n_ref, dtype=ref.dtype, device=device)
    # per (slice, query sample), summed at the end in one fixed order, so that
    # the blocking does not change the rounding of the expected counts
    right = torch.empty((slices, n_query), dtype=torch.float64, device=device)
    tied = torch.empty((slices, n_query), dtype=torch.bool, device=device)
    open_rows = []  # rows whose expectation over ties is computed once, after the last block
    for start in range(0, slices, per_chunk):
        stop = min(slices, start + per_chunk)
        qry_aug, ref_aug = _augment(ref[start:stop])
        if not same:
            qry_aug = _augment(qry[start:stop])[0]
        for row in range(0, n_query, rows_per_block):
            end = min(n_query, row + rows_per_block)
            out = buffer[: (stop - start) * (end - row) * n_ref].view(stop - start, end - row, n_ref)
            found = _block(
                qry[start:stop, row:end],
                ref[start:stop],
                qry_aug[:, row:end],
                ref_aug,
                labels,
                onehot,
                truth[row:end],
                k,
                row if same else None,
                leave_one_out,
                ties == "expected_random_order",
                out,
                right[start:stop, row:end],
                tied[start:stop, row:end],
            )
            if found is not None:
                b, m, *rest = found
                open_rows.append((b + start, m + row, *rest))
    if open_rows:
        b, m, closer_votes, tied_votes, room, truth_open = (torch.cat(parts) for parts in zip(*open_rows))
        right[b, m] = _expected_correct(closer_votes, tied_votes, room, truth_open)
    # divided on the host: CUDA's division by a scalar is not always correctly rounded
    return KnnCurve(right.sum(-1).cpu().numpy() / n_query, tied.sum(-1).cpu().numpy() / n_query)


def knn_accuracy(
    reference: torch.Tensor,
    reference_labels: torch.Tensor,
    query: torch.Tensor | None = None,
    query_labels: torch.Tensor | None = None,
    k: int = 3,
    ties: str = "expected_random_order",
    leave_one_out: bool = False,
    max_elements: int | None = None,
    gram_dtype: torch.dtype = torch.float32,
    expected_calls: int = 1,
) -> np.ndarray:
    """Per-time-slice k-NN accuracy (``knn_curve``'s accuracy)."""
    return knn_curve(
        reference,
        reference_labels,
        query,
        query_labels,
        k=k,
        ties=ties,
        leave_one_out=leave_one_out,
        max_elements=max_elements,
        gram_dtype=gram_dtype,
        expected_calls=expected_calls,
    ).accuracy


class KnnProbe(Probe):
    name = KNN

    def __init__(
        self,
        k: int = 3,
        states: str = "training_pass",
        splits=("train",),
        gram_precision: str = "float32",
        ties: str = "expected_random_order",
        mode: str = "resubstitution",
    ):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"probe.knn.k={k!r}: must be an integer >= 1")
        if gram_precision not in ("float32", "float64"):
            raise ConfigError(f"probe.knn.gram_precision={gram_precision!r}; allowed: float32, float64")
        if states not in ("training_pass", "clean_pass"):
            raise ConfigError(f"probe.knn.states={states!r}; allowed: training_pass, clean_pass")
        if ties not in KNN_TIE_RULES:
            raise ConfigError(f"probe.knn.ties={ties!r}; allowed: {', '.join(KNN_TIE_RULES)}")
        if mode not in KNN_MODES:
            raise ConfigError(f"probe.knn.mode={mode!r}; allowed: {', '.join(KNN_MODES)}")
        bad = set(splits) - {"train", "test"}
        if bad:
            raise ConfigError(f"probe.knn.splits has {sorted(bad)}; allowed: train, test")
        self.gram_dtype = getattr(torch, gram_precision)
        self.k, self.states, self.splits = int(k), states, tuple(splits)
        self.ties, self.mode = ties, mode

    @property
    def needs_training_pass_states(self) -> bool:  # type: ignore[override]
        return self.states == "training_pass"

    def measure(self, ctx: ProbeContext) -> pd.DataFrame:
        if self.states == "training_pass":
            train_states = ctx.training_pass_states
        else:
            train_states = ctx.clean_pass_states(ctx.x_train)
        assert train_states is not None, "the training loop keeps its passes' states for a probe that asks"
        frames = []
        # this epoch and those left: the work the compiled search's one-off cost is weighed against
        calls = ctx.epochs - ctx.epoch + 1 if ctx.epochs else 1

        def rows(probe: str, split: str, values: np.ndarray) -> pd.DataFrame:
            return pd.DataFrame(
                {
                    "probe": probe,
                    "split": split,
                    "epoch": np.int32(ctx.epoch),
                    "time_slice": np.arange(1, len(values) + 1, dtype=np.int32),
                    "value": values,
                }
            )

        for split in self.splits:
            if split == "train":
                curve = knn_curve(
                    train_states,
                    ctx.y_train,
                    k=self.k,
                    ties=self.ties,
                    leave_one_out=self.mode == "leave_one_out",
                    gram_dtype=self.gram_dtype,
                    expected_calls=calls,
                )
                frames += [rows(self.name, split, curve.accuracy), rows(KNN_TIE_SHARE, split, curve.tie_share)]
            else:
                acc = knn_accuracy(
                    train_states,
                    ctx.y_train,
                    ctx.clean_pass_states(ctx.x_test),
                    ctx.y_test,
                    k=self.k,
                    ties=self.ties,
                    gram_dtype=self.gram_dtype,
                )
                frames.append(rows(self.name, split, acc))
        return pd.concat(frames, ignore_index=True)
