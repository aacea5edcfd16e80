"""The probe's per-slice neighbour search on CPU, compiled (numba).

``nearest_groups`` returns, for every group of identical states of one time
slice, what the tie rule needs (class counts of S and E, room r, e); see
``knn._resubstitution_by_groups``, whose torch search it replaces on CPU where
``knn.use_compiled_search`` predicts that it pays (the torch search stays the
GPU path; tests/test_knn_compiled.py holds the two equal bit for bit). The
kernels are compiled once per machine: their code is kept in the project's
signed cache (compile_cache.py).

Why it is fast: distances do not change under translation, and the rounding
bound of the Gram identity scales with the norms of the two states compared,
so each block of the products is moved (exactly, checked) to an origin near
its states, and each pair gets its own bound: the slice's median state, inside
the cluster where most states sit (an LSTM's padded tails, a few float32 units
from their fixed point), or a block's own state where the block is a tight
cluster elsewhere; the products then settle almost every row. Each product of
the upper triangle is computed once and read for both of its rows; each row's
list starts from a bar set by its nearest at the previous slice. Rows left
open (equal or nearly equal distances) are searched again in float64, then by
explicit float64 differences against the candidates within their bound. docs/performance.md has the measurements.
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  numba's np.dot calls it: loaded now, so that blas_threads limits it
import torch

from .. import blas as pipeline_blas
from . import compile_cache


def rounding_factor(hidden: int, gram_dtype) -> float:
    """kappa: each lower end is at most the exact value and at least it minus 2 kappa (|p_i|^2 + |p_c|^2).

    For moved states p, the product [-2 p_i, 1] . [p_c, |p_c|^2 (1 - kappa)]
    has rounding error at most gamma_(H+1) (2 |p_i| |p_c| + |p_c|^2) <= (H + 1)
    eps (|p_i|^2 + |p_c|^2) (eps = 2u); rounding the moved states to float32
    adds at most 2.01 eps, the appended column 0.5 eps, the float64 sums a few
    float64 units. (H + 12) eps covers them with room. The triangle's plain
    products p_i.p_c (lower end shifted_c - 2 p_i.p_c in float64) are off by
    at most (H / 2) eps (|p_i|^2 + |p_c|^2), within the same bound.
    """
    return (hidden + 12) * float(np.finfo(gram_dtype).eps)


# Rows per block of the triangle's products (measured: 64 beat 32 and 128), and the fewest rows of a block
# moved to their own origin.
BLOCK_ROWS = 64
MIN_LOCAL_ROWS = 16


@numba.njit(nogil=True, cache=False)
def _median_state(exact):
    """Coordinate by coordinate, the lower median of (up to 127 evenly spread) states: inside the cluster
    where most states sit (padded tails at their fixed point), and a value the states have, so that moving
    float32 states by it is exact."""
    size, hidden = exact.shape
    step = max(1, size // 127)
    sample = np.empty(len(range(0, size, step)))
    origin = np.empty(hidden)
    middle = (len(sample) - 1) // 2
    for h in range(hidden):
        for j, c in enumerate(range(0, size, step)):
            sample[j] = exact[c, h]
        origin[h] = np.sort(sample)[middle]  # (np.partition compiles 4 s longer)
    return origin


@numba.njit(nogil=True, cache=False)
def _moved_states(exact, origin, kappa, query, reference):
    """Move the states by ``origin`` and fill the augmented product's two sides; return |p|^2.

    query[i] = [-2 p_i, 1], reference[c] = [p_c, |p_c|^2 (1 - kappa)] (in the
    product's precision) for the moved states p; |p|^2 in float64 of p as the
    product sees it. Where a difference is not exact in float64 (TwoSum),
    nothing is moved.
    """
    size, hidden = exact.shape
    inexact = 0
    for c in range(size):
        for h in range(hidden):
            moved = exact[c, h] - origin[h]
            back = moved - exact[c, h]
            inexact += 1 if (exact[c, h] - (moved - back)) + (-origin[h] - back) != 0.0 else 0
    shift = origin if inexact == 0 else np.zeros(hidden)
    norms = np.empty(size)
    for c in range(size):
        total = 0.0
        for h in range(hidden):
            value = reference.dtype.type(exact[c, h] - shift[h])
            reference[c, h] = value
            query[c, h] = -2 * value
            total += np.float64(value) * np.float64(value)
        norms[c] = total
        reference[c, hidden] = total * (1.0 - kappa)
        query[c, hidden] = 1.0
    return norms


@numba.njit(nogil=True, cache=False)
def _insert(values, index, take, value, column):
    """Insert (value, column) into the ascending top-``take`` list; return its new largest value."""
    pos = take - 1
    while pos > 0 and values[pos - 1] > value:
        values[pos] = values[pos - 1]
        index[pos] = index[pos - 1]
        pos -= 1
    values[pos] = value
    index[pos] = column
    return values[take - 1]


@numba.njit(nogil=True, cache=False)
def _insert_pair(values, uppers, index, lower, upper, column):
    """Insert a pair's (lower end, upper end, column) into a row's list, ascending by lower end; return the
    list's largest lower end."""
    pos = len(values) - 1
    while pos > 0 and values[pos - 1] > lower:
        values[pos] = values[pos - 1]
        uppers[pos] = uppers[pos - 1]
        index[pos] = index[pos - 1]
        pos -= 1
    values[pos] = lower
    uppers[pos] = upper
    index[pos] = column
    return values[len(values) - 1]


# The elementwise passes are written over whole slices: numba (LLVM) vectorises such loops, not the same
# loops with offsets into a larger array (measured 3.4x).
@numba.njit(nogil=True, cache=False, inline="always")
def _min_into(target, source):
    for c in range(len(target)):
        x = source[c]
        target[c] = x if x < target[c] else target[c]


@numba.njit(nogil=True, cache=False)
def _scan_column(lower, column, cols, width, values, index, largest):
    """Insert the elements of strided column ``column`` (column, column + cols, ...) that beat ``largest``."""
    for lane in range(width):
        value = lower[lane * cols + column]
        if value < largest:
            largest = _insert(values, index, len(values), value, lane * cols + column)
    return largest


@numba.njit(nogil=True, cache=False)
def _part_bar(lower, level1, level2, bound, spare, width, width2):
    """tau: the take-th smallest (take = len(bound)) among the minima of disjoint parts of the row, at least
    the row's take-th smallest value. Fills level1 with the minima of the row's ``width`` strided lanes and
    level2 with those minima's minima over ``width2`` lanes (vectorised elementwise passes)."""
    size = len(lower)
    take = len(bound)
    cols = size // width
    cols2 = cols // width2
    level1[:cols] = lower[:cols]
    for lane in range(1, width):
        _min_into(level1[:cols], lower[lane * cols : (lane + 1) * cols])
    level2[:cols2] = level1[:cols2]
    for lane in range(1, width2):
        _min_into(level2[:cols2], level1[lane * cols2 : (lane + 1) * cols2])
    bound[:] = np.inf
    tau = np.inf
    for c in range(cols2):
        if level2[c] < tau:
            tau = _insert(bound, spare, take, level2[c], c)
    for c in range(width2 * cols2, cols):  # level-1 columns outside the second level
        if level1[c] < tau:
            tau = _insert(bound, spare, take, level1[c], c)
    for c in range(width * cols, size):  # the ragged end of the row
        if lower[c] < tau:
            tau = _insert(bound, spare, take, lower[c], c)
    return tau


@numba.njit(nogil=True, cache=False)
def _scan_row(lower, values, index, level1, level2, bound, spare):
    """Merge the smallest entries of ``lower`` into a row's ascending list of (value, column).

    Two levels of strided-column minima (``_part_bar``): the row's elements in
    ``width`` lanes, those minima in ``width2`` lanes. tau, the take-th
    smallest among the minima of disjoint parts of the row, is at least the
    row's take-th smallest value, so only parts whose minimum is at most tau
    (and below the list's largest) are searched element by element (a few per
    row).
    """
    size = len(lower)
    take = len(values)
    width, width2 = 4, 8
    cols = size // width
    cols2 = cols // width2
    largest = values[take - 1]
    if cols2 < take:  # short rows: every element
        for c in range(size):
            if lower[c] < largest:
                largest = _insert(values, index, take, lower[c], c)
        return
    tau = _part_bar(lower, level1, level2, bound, spare, width, width2)
    for c2 in range(cols2):
        if level2[c2] <= tau and level2[c2] < largest:
            for lane2 in range(width2):
                c = lane2 * cols2 + c2
                if level1[c] <= tau and level1[c] < largest:
                    largest = _scan_column(lower, c, cols, width, values, index, largest)
    for c in range(width2 * cols2, cols):
        if level1[c] <= tau and level1[c] < largest:
            largest = _scan_column(lower, c, cols, width, values, index, largest)
    for c in range(width * cols, size):
        if lower[c] < largest:
            largest = _insert(values, index, take, lower[c], c)


@numba.njit(nogil=True, cache=False)
def _kth_position(values, uppers, index, weight, k):
    """(j, limit, clear) of a row's list: j the position at which the group sizes reach k; limit the largest
    upper end among positions 0..j (every group that can be among the k nearest has its lower end at or below
    it); clear whether the bounds decide the row.

    values / uppers: each listed group's lower and upper end (ascending by lower end; every group not listed
    has its lower end at or above the last).
    """
    take = len(values)
    reach = 0.0
    j = 0
    while True:
        reach += weight[index[j]]
        if reach >= k:
            break
        j += 1
    limit = -np.inf
    for q in range(j + 1):
        limit = max(limit, uppers[q])
    if reach > k:  # group j is split: it holds d_k, every group before it must be strictly closer
        clear = j + 1 >= take or values[j + 1] > uppers[j]
        for q in range(j):
            clear = clear and uppers[q] < values[j]
    else:  # positions 0..j hold exactly k: every other group must be strictly farther than all of them
        clear = j + 1 >= take or values[j + 1] > limit
    return j, limit, clear


@numba.njit(nogil=True, cache=False)
def _settle(g, values, uppers, index, weight, counts, k, closer, at, room, e):
    """Decide row g from its list where the bounds allow (``_kth_position``); return the limit for its exact
    search, or -inf. Settled rows get closer/at/room/e."""
    n_classes = counts.shape[1]
    j, limit, clear = _kth_position(values, uppers, index, weight, k)
    if not clear:
        return limit
    inside = 0.0
    for cc in range(n_classes):
        total = 0.0
        for q in range(j):
            total += counts[index[q], cc]
        closer[g, cc] = total
        at[g, cc] = counts[index[j], cc]
    for q in range(j):
        inside += weight[index[q]]
    room[g] = k - inside
    e[g] = weight[index[j]]
    return -np.inf


@numba.njit(nogil=True, cache=False)
def _exact_row(g, lower, limit, points, weight, counts, k, closer, at, room, e, candidate, distance):
    """Row g from explicit float64 differences to every group whose lower end is within ``limit``."""
    n_classes = counts.shape[1]
    hidden = points.shape[1]
    n_candidates = 0
    for c in range(len(lower)):
        if lower[c] <= limit:
            total = 0.0
            for h in range(hidden):
                d = points[g, h] - points[c, h]
                total += d * d
            candidate[n_candidates] = c
            distance[n_candidates] = np.sqrt(total)
            n_candidates += 1
    order = np.argsort(distance[:n_candidates])
    reach = 0.0
    kth = 0.0
    for q in range(n_candidates):
        reach += weight[candidate[order[q]]]
        if reach >= k:
            kth = distance[order[q]]
            break
    inside = 0.0
    tied = 0.0
    for cc in range(n_classes):
        closer[g, cc] = 0.0
        at[g, cc] = 0.0
    for q in range(n_candidates):
        c = candidate[q]
        if distance[q] < kth:
            inside += weight[c]
            for cc in range(n_classes):
                closer[g, cc] += counts[c, cc]
        elif distance[q] == kth:
            tied += weight[c]
            for cc in range(n_classes):
                at[g, cc] += counts[c, cc]
    room[g] = k - inside
    e[g] = tied


@numba.njit(nogil=True, cache=False, inline="always")
def _entries(products, scaled_rows, scaled_c, threshold, largest, lower):
    """The lower ends of state c's pairs with the block's rows, (1 - kappa)(|p_q|^2 + |p_c|^2) - 2 p_q.p_c, and
    how many beat the rows' thresholds and row c's largest (whole slices: vectorised)."""
    into_rows = 0
    into_column = 0
    for q in range(len(products)):
        a = scaled_rows[q] + scaled_c - 2.0 * np.float64(products[q])
        lower[q] = a
        into_rows += 1 if a < threshold[q] else 0
        into_column += 1 if a < largest else 0
    return into_rows, into_column


@numba.njit(nogil=True, cache=False)
def _moves_exactly(exact):
    """Whether moving the states by any one of their values is exact in float64: float32 values whose nonzero
    magnitudes lie within a factor 2^28 (a difference then needs at most 24 + 28 + 1 of float64's 53 bits)."""
    smallest = np.inf
    largest = 0.0
    for x in exact.ravel():
        if np.float64(np.float32(x)) != x:
            return False
        if x != 0.0:
            smallest = min(smallest, abs(x))
            largest = max(largest, abs(x))
    return largest < smallest * 2.0**28 or largest == 0.0


@numba.njit(nogil=True, cache=False, fastmath={"reassoc", "contract"})
def _move_exactly(exact, lo, origin, kappa, moved, norms, scaled):
    """``_move`` for states that move exactly (``_moves_exactly``): no check, and the norms summed in any
    order (a few float64 units apart, far inside the bound's slack), so that the loop is vectorised."""
    size, hidden = exact.shape
    for c in range(lo, size):
        total = 0.0
        for h in range(hidden):
            value = moved.dtype.type(exact[c, h] - origin[h])
            moved[c, h] = value
            total += np.float64(value) * np.float64(value)
        norms[c] = total
        scaled[c] = total * (1.0 - kappa)


@numba.njit(nogil=True, cache=False)
def _move(exact, lo, origin, kappa, moved, norms, scaled):
    """States lo.. moved by ``origin`` in the products' precision (``moved``), |p|^2 in float64 of p as the
    products see it (``norms``) and (1 - kappa) |p|^2 (``scaled``). Where a difference is not exact in float64
    (TwoSum), nothing is moved."""
    size, hidden = exact.shape
    inexact = 0
    for c in range(lo, size):
        for h in range(hidden):
            d = exact[c, h] - origin[h]
            back = d - exact[c, h]
            inexact += 1 if (exact[c, h] - (d - back)) + (-origin[h] - back) != 0.0 else 0
    _move_exactly(exact, lo, origin if inexact == 0 else np.zeros(hidden), kappa, moved, norms, scaled)


@numba.njit(nogil=True, cache=False)
def _spread(rows, point):
    """The rows' summed squared distance to ``point``."""
    spread = 0.0
    for q in range(len(rows)):
        for h in range(rows.shape[1]):
            d = rows[q, h] - point[h]
            spread += d * d
    return spread


@numba.njit(nogil=True, cache=False)
def _local_origin(rows, moved_norms, current, has_current):
    """An origin for a block's rows where they are a tight cluster away from the slice's centre (their summed
    squared distance to it 16x below that to the slice's median state): the block's middle row, or the origin
    the moved states already have (``current``, where ``has_current``) when the rows sit about as close to it
    (within 4x), so that nothing is moved again; else None (the slice's median). The middle row is a state of
    the slice, so that moving float32 states by it is exact; any member of a tight cluster serves as its
    origin. Returns (origin, whether it is ``current``)."""
    middle = rows[len(rows) // 2]
    around_middle = _spread(rows, middle)
    if 16.0 * around_middle >= moved_norms.sum():
        return None, False
    if has_current and _spread(rows, current) <= 4.0 * around_middle:
        return current, True
    return middle.copy(), False


@numba.njit(nogil=True, cache=False)
def _next_block(exact, lo, m, moved_norms, current, has_current):
    """The rows of the next block from ``lo`` (at most m) and its origin (``_local_origin``; None: the
    slice's median). A block that is not one tight cluster may hold the end of one, or pieces of several (the
    rows are in a compact order, clusters contiguous): it is cut at its largest step between neighbouring rows,
    and again within the rows before the cut (up to 4 times, down to MIN_LOCAL_ROWS), until those rows are a
    tight cluster; or, where none is found, cut once when the rows after the first cut are one (they start the
    next block). Returns (rows, origin, whether it is ``current``)."""
    origin, same = _local_origin(exact[lo : lo + m], moved_norms[lo : lo + m], current, has_current)
    if origin is not None or m < 2:
        return m, origin, same
    steps = np.zeros(m)  # steps[q]: squared distance between rows q - 1 and q
    for q in range(1, m):
        total = 0.0
        for h in range(exact.shape[1]):
            d = exact[lo + q, h] - exact[lo + q - 1, h]
            total += d * d
        steps[q] = total
    first_cut = np.argmax(steps)
    end = m
    for _ in range(4):
        cut = np.argmax(steps[:end])
        if cut < MIN_LOCAL_ROWS and not has_current:  # a new origin moves every later state: not for a few rows
            break
        if cut == 0:
            break
        origin, same = _local_origin(exact[lo : lo + cut], moved_norms[lo : lo + cut], current, has_current)
        if origin is not None and (same or cut >= MIN_LOCAL_ROWS):
            return cut, origin, same
        end = cut
    tail = _local_origin(exact[lo + first_cut : lo + m], moved_norms[lo + first_cut : lo + m], current, has_current)
    if tail[0] is not None:
        return first_cut, None, False
    return m, None, False


@numba.njit(nogil=True, cache=False)
def _symmetric_lists(exact, kappa, moved, all_norms, all_scaled, bar, values, uppers, index):
    """Every row's ascending list of its ``take`` smallest lower ends (with their upper ends), from the upper
    triangle of the products.

    exact (G, H): the states in float64; ``moved`` (2, G, H): in the products' precision, the states moved
    to the slice's median state (``_move``; its ``all_norms[0]``, ``all_scaled[0]``) and a buffer; bar (G,):
    per row a value that at least ``take`` of its lower ends lie below (+inf: none known), lowered to the
    list's largest as it fills. The products come a block of rows i at a time, against every state from the
    block's first on (one tall product, as BLAS does it fastest), moved to the slice's median state, or, where
    the block's rows sit much closer to their own median state than to the slice's (``_local_origin``), to
    theirs: the rows are in the order of a projection (the groups' order), so a block sits in one cluster of
    near-identical states more often than not, and the pairs' rounding bounds, which grow with the moved
    norms, shrink with it (moving costs about as much as the block's products, so only there). Each product p_i.p_c (c >= i) is computed once; its lower end (1 - kappa)(|p_i|^2 + |p_c|^2) - 2 p_i.p_c
    and upper end (1 + kappa)(...) - 2 p_i.p_c bound the pair's squared distance whatever the origin, and serve
    both rows: the block's row takes it, and row c, only where it is below their bar (counted first over the
    block, a vectorised pass, so that most states cost no branch).
    """
    size, hidden = exact.shape
    block = BLOCK_ROWS
    buffer = np.empty(block * size, dtype=moved.dtype)
    rows_t = np.empty((hidden, block), dtype=moved.dtype)
    lower = np.empty(block)
    exactly = -1  # whether the slice moves exactly (_moves_exactly), once a block needs to know
    current = np.zeros(hidden)  # the origin of moved[1] (states from an earlier block's first on)
    has_current = False
    lo = 0
    while lo < size:
        m, origin, same = _next_block(exact, lo, min(block, size - lo), all_norms[0], current, has_current)
        width = size - lo
        near = 0 if origin is None else 1
        states, norms, scaled = moved[near], all_norms[near], all_scaled[near]
        if origin is not None and not same:
            current[:] = origin
            has_current = True
            exactly = (1 if _moves_exactly(exact) else 0) if exactly < 0 else exactly
            if exactly:
                _move_exactly(exact, lo, origin, kappa, states, norms, scaled)
            else:
                _move(exact, lo, origin, kappa, states, norms, scaled)
        for h in range(hidden):
            for q in range(m):
                rows_t[h, q] = states[lo + q, h]
        products = buffer[: width * m].reshape(width, m)  # products[r, q] = p_(lo + r) . p_(lo + q)
        np.dot(states[lo:], np.ascontiguousarray(rows_t[:, :m]), products)
        threshold = bar[lo : lo + m]
        for r in range(width):
            c = lo + r
            n = min(m, r + 1)  # rows lo + q with q <= r: pairs (lo + q, c) of the upper triangle
            into_rows, into_column = _entries(
                products[r, :n], scaled[lo : lo + n], scaled[c], threshold[:n], bar[c], lower[:n]
            )
            if into_rows:
                for q in range(n):
                    if lower[q] < threshold[q]:
                        upper = lower[q] + 2.0 * kappa * (norms[lo + q] + norms[c])
                        row = lo + q
                        largest = _insert_pair(values[row], uppers[row], index[row], lower[q], upper, c)
                        threshold[q] = min(threshold[q], largest)
            if into_column:
                largest = bar[c]  # the diagonal pair (q = r) may have lowered row c's bar above
                for q in range(min(n, r)):  # q < r: the diagonal pair is row c's own entry, taken above
                    if lower[q] < largest:
                        upper = lower[q] + 2.0 * kappa * (norms[lo + q] + norms[c])
                        largest = min(largest, _insert_pair(values[c], uppers[c], index[c], lower[q], upper, lo + q))
                bar[c] = largest
        lo += m


@numba.njit(nogil=True, cache=False)
def _bars(states, norms, kappa, take, candidates, bar):
    """Per row, from candidate columns (say its nearest at the previous time slice; -1: none), a bar: just
    above the take-th smallest upper end among ``take`` distinct candidates, +inf with fewer.

    An upper end ((1 + kappa)(|p_i|^2 + |p_c|^2) - 2 p_i.p_c, states moved to
    any origin) is at least the pair's squared distance, which is at least its
    lower end as any other origin and computation of the product give it, so
    at least ``take`` lower ends of the full pass lie below the bar.
    """
    size, hidden = states.shape
    best = np.empty(take)
    spare = np.empty(take, dtype=np.int64)
    for i in range(size):
        n = 0
        best[:] = np.inf
        for j in range(candidates.shape[1]):
            c = candidates[i, j]
            fresh = c >= 0
            for earlier in range(j):
                fresh = fresh and candidates[i, earlier] != c
            if fresh:
                product = 0.0
                for h in range(hidden):
                    product += np.float64(states[i, h]) * np.float64(states[c, h])
                upper = (1.0 + kappa) * (norms[i] + norms[c]) - 2.0 * product
                if upper < best[take - 1]:
                    _insert(best, spare, take, upper, c)
                n += 1
        bar[i] = np.nextafter(best[take - 1], np.inf) if n >= take else np.inf


@numba.njit(nogil=True, cache=False)
def _settle_lists(values, uppers, index, weight, counts, k, closer, at, room, e):
    """Settle every row from its list where the bounds allow; return the rows left open."""
    size = values.shape[0]
    open_rows = np.empty(size, dtype=np.int64)
    n_open = 0
    for g in range(size):
        if _settle(g, values[g], uppers[g], index[g], weight, counts, k, closer, at, room, e) > -np.inf:
            open_rows[n_open] = g
            n_open += 1
    return open_rows[:n_open]


@numba.njit(nogil=True, cache=False)
def _search_rows(rows, query, reference_t, norms, kappa, points, weight, counts, k, closer, at, room, e):
    """Rows ``rows`` of one slice: products a few rows at a time, each scanned while it is in cache.

    query (G, H + 1) and reference_t (H + 1, G): the augmented moved states
    (``_moved_states``), float32 or float64; for row i, product entry c is the
    lower end of pair (i, c)'s squared distance minus the row constant
    (1 - kappa) |p_i|^2 (the scan's order); the upper end is 2 kappa (|p_i|^2 +
    |p_c|^2) above it. points: (G, H) the states in float64. Rows the bounds
    leave open are settled by explicit differences; returns how many.
    """
    size = reference_t.shape[1]
    take = min(size, k + 1)
    block = 16  # 16 rows of products stay in the core's cache between the product and the scan
    rows_block = np.empty((block, query.shape[1]), dtype=query.dtype)
    products = np.empty((block, size), dtype=query.dtype)
    values = np.empty(take)
    uppers = np.empty(take)
    index = np.empty(take, dtype=np.int64)
    level1 = np.empty(size, dtype=query.dtype)
    level2 = np.empty(size, dtype=query.dtype)
    bound = np.empty(take)
    spare = np.empty(take, dtype=np.int64)
    candidate = np.empty(size, dtype=np.int64)
    distance = np.empty(size)
    exact_rows = 0
    for start in range(0, len(rows), block):
        m = min(block, len(rows) - start)
        for q in range(m):
            rows_block[q] = query[rows[start + q]]
        np.dot(rows_block[:m], reference_t, products[:m])
        for q in range(m):
            g = rows[start + q]
            values[:] = np.inf
            index[:] = -1
            _scan_row(products[q], values, index, level1, level2, bound, spare)
            for p in range(take):  # the lower ends here leave out the row's own (1 - kappa) |p_g|^2
                uppers[p] = values[p] + 2.0 * kappa * (norms[index[p]] + norms[g])
            limit = _settle(g, values, uppers, index, weight, counts, k, closer, at, room, e)
            if limit > -np.inf:
                _exact_row(g, products[q], limit, points, weight, counts, k, closer, at, room, e, candidate, distance)
                exact_rows += 1
    return exact_rows


@numba.njit(nogil=True, cache=False)
def _select(order, keys, lo, hi, nth):
    """Reorder order[lo:hi] so that position ``nth`` holds the row whose key a sort would put there, with keys
    at most its key before it and at least after (Wirth's selection; deterministic)."""
    left, right = lo, hi - 1
    while left < right:
        pivot = keys[order[nth]]
        i, j = left, right
        while i <= j:
            while keys[order[i]] < pivot:
                i += 1
            while pivot < keys[order[j]]:
                j -= 1
            if i <= j:
                order[i], order[j] = order[j], order[i]
                i += 1
                j -= 1
        if j < nth:
            left = i
        if nth < i:
            right = j


@numba.njit(nogil=True, cache=False)
def _compact_order(exact, leaf):
    """An order of the rows in which every run of ``leaf`` rows from 0 on is a compact region of the slice:
    the leaves of a k-d split (each part cut at its widest coordinate, into whole leaves). A block of the
    triangle then holds near states, so that its own origin shrinks the rounding bounds of its pairs and its
    rows' lists fill with near states first; the projection order of the groups mixes clusters whose
    projections overlap (measured: half the rows of 8 tight clusters left open at N 2,500, 2% in this order)."""
    size, hidden = exact.shape
    order = np.arange(size)
    low = np.empty(hidden)
    high = np.empty(hidden)
    stack = np.empty((64, 2), dtype=np.int64)  # depth <= log2(size / leaf) + 1
    stack[0, 0], stack[0, 1] = 0, size
    top = 1
    while top > 0:
        top -= 1
        lo, hi = stack[top, 0], stack[top, 1]
        low[:] = np.inf
        high[:] = -np.inf
        for q in range(lo, hi):
            row = exact[order[q]]
            for h in range(hidden):
                low[h] = min(low[h], row[h])
                high[h] = max(high[h], row[h])
        widest = np.argmax(high - low)
        if hi - lo <= leaf:  # a leaf in order along its widest coordinate: where it holds two clusters, the
            keys = np.empty(hi - lo)  # block's cut at its largest step (_next_block) separates them
            for q in range(lo, hi):
                keys[q - lo] = exact[order[q], widest]
            order[lo:hi] = order[lo:hi][np.argsort(keys, kind="mergesort")]
            continue
        leaves = (hi - lo + leaf - 1) // leaf
        middle = lo + leaf * ((leaves + 1) // 2)
        _select(order, exact[:, widest], lo, hi, middle)
        stack[top, 0], stack[top, 1] = lo, middle
        stack[top + 1, 0], stack[top + 1, 1] = middle, hi
        top += 2
    return order


@numba.njit(nogil=True, cache=False)
def _lists(exact, kappa, moved, has_candidates, candidates, values, uppers, index):
    """Every row's list of its smallest lower ends (``_symmetric_lists``), in the precision of ``moved`` (2, G,
    H: float32 or float64) with rounding factor ``kappa``, started from the bars of ``candidates`` where there
    are any. Returns the slice's origin (its median state)."""
    size, hidden = exact.shape
    origin = _median_state(exact)
    norms = np.empty((2, size))
    scaled = np.empty((2, size))
    bar = np.full(size, np.inf)
    _move(exact, 0, origin, kappa, moved[0], norms[0], scaled[0])
    if has_candidates:
        _bars(moved[0], norms[0], kappa, values.shape[1], candidates, bar)
    values[:] = np.inf
    uppers[:] = np.inf
    index[:] = -1
    _symmetric_lists(exact, kappa, moved, norms, scaled, bar, values, uppers, index)
    return origin


@numba.njit(nogil=True, cache=False)
def _open_if_narrow(values, uppers, index, weight, k, widen):
    """How many rows lists from float64 products would leave open with the float32 bounds: each entry's
    interval (its width 2 kappa (|p_i|^2 + |p_c|^2)) widened by ``widen`` = kappa_32 / kappa_64 (an estimate:
    the float32 lists would hold about the same groups)."""
    take = values.shape[1]
    lower = np.empty(take)
    upper = np.empty(take)
    n_open = 0
    for g in range(values.shape[0]):
        for q in range(take):
            half = 0.5 * (widen - 1.0) * (uppers[g, q] - values[g, q])
            lower[q] = values[g, q] - half
            upper[q] = uppers[g, q] + half
        n_open += 0 if _kth_position(lower, upper, index[g], weight, k)[2] else 1
    return n_open


# A slice's products go to float64 (twice the products' cost, bounds 2^29 times tighter) where float32 would
# leave more than this share of its rows open (saturated tanh walks: distances 4m plus small parts, ~40% open at
# late slices), judged from the slice before it (states move little from one slice to the next).
WIDE_SHARE = 0.08


@numba.njit(nogil=True, cache=False)
def _slice_groups(states_t, group_t, n_groups, labels, n_classes):
    """One slice's groups of identical states: their first samples, sizes, class counts and states (float64)."""
    first, weight, counts = group_tables(group_t, n_groups, labels, n_classes)
    points = np.empty((n_groups, states_t.shape[1]))
    for g in range(n_groups):
        for h in range(states_t.shape[1]):
            points[g, h] = states_t[first[g], h]
    return first, weight, counts, points


@numba.njit(nogil=True, cache=False)
def _candidates(neighbours, first, order, position, group_t):
    """Per row j of a slice's compact order: j itself, then the rows of its first sample's nearest at the
    previous slice (``neighbours``: samples per sample, -1: none), in this slice's order."""
    size_t = len(order)
    k_take = neighbours.shape[1]
    candidates = np.full((size_t, 1 + k_take), -1, dtype=np.int64)
    for j in range(size_t):
        candidates[j, 0] = j
        for q in range(k_take):
            sample = neighbours[first[order[j]], q]
            candidates[j, 1 + q] = position[group_t[sample]] if sample >= 0 else -1
    return candidates


@numba.njit(nogil=True, cache=False)
def _search_open_rows(open_rows, exact, origin, kappa, weight, counts, k, closer, at, room, e):
    """The rows the products left open, searched again with float64 products (rounding factor ``kappa``) of
    the states moved by ``origin``, then by explicit differences; returns how many needed those."""
    size_t, hidden = exact.shape
    query = np.empty((size_t, hidden + 1))
    reference = np.empty((size_t, hidden + 1))
    norms64 = _moved_states(exact, origin, kappa, query, reference)
    reference_t = np.ascontiguousarray(reference.T)
    return _search_rows(open_rows, query, reference_t, norms64, kappa, exact, weight, counts, k, closer, at, room, e)


@numba.njit(nogil=True, cache=False)
def _search_map(states, group, n_groups, labels, n_classes, k, narrow, kappas, closer, at, room, e, tally):
    """Every slice's S and E per group (closer, at: (T, G_max, C); room, e: (T, G_max)), in the groups' order.

    states (T, N, H) float32 or float64; group (T, N) ids with n_groups (T,); ``narrow``: a buffer of 2 N H
    elements in the products' usual precision, kappas: (narrow, float64) rounding factors. Per slice: the
    groups in a compact order (``_compact_order``), each group's list started from the bars of its nearest at
    the previous slice, the float32 products or, where the slice before left many rows open, float64 ones
    (``WIDE_SHARE``); rows left open searched again in float64, then by explicit differences. tally: rows
    searched, rows the products left open, slices in float64.
    """
    slices, size, hidden = states.shape
    k_take = min(size, k + 1)
    wide_buffer = np.empty(2 * size * hidden)
    neighbours = np.full((size, k_take), -1, dtype=np.int64)  # per sample: its group's nearest at t - 1
    narrow_is_wide = kappas[0] == kappas[1]  # float64 products throughout
    wide = narrow_is_wide
    for t in range(slices):
        size_t = n_groups[t]
        take = min(size_t, k + 1)
        first, weight, counts, points = _slice_groups(states[t], group[t], size_t, labels, n_classes)
        order = _compact_order(points, BLOCK_ROWS)
        position = np.empty(size_t, dtype=np.int64)
        position[order] = np.arange(size_t)
        exact, weight, counts = points[order], weight[order], counts[order]
        candidates = _candidates(neighbours, first, order, position, group[t])
        values = np.empty((size_t, take))
        uppers = np.empty((size_t, take))
        index = np.empty((size_t, take), dtype=np.int64)
        if wide:
            moved = wide_buffer[: 2 * size_t * hidden].reshape(2, size_t, hidden)
            origin = _lists(exact, kappas[1], moved, t > 0, candidates, values, uppers, index)
        else:
            moved_narrow = narrow[: 2 * size_t * hidden].reshape(2, size_t, hidden)
            origin = _lists(exact, kappas[0], moved_narrow, t > 0, candidates, values, uppers, index)
        c_t, a_t, r_t, e_t = closer[t], at[t], room[t], e[t]
        found_closer = np.empty((size_t, n_classes))
        found_at = np.empty((size_t, n_classes))
        found_room = np.empty(size_t)
        found_e = np.empty(size_t)
        open_rows = _settle_lists(values, uppers, index, weight, counts, k, found_closer, found_at, found_room, found_e)
        exact_rows = 0
        if len(open_rows):
            found = (found_closer, found_at, found_room, found_e)
            exact_rows = _search_open_rows(open_rows, exact, origin, kappas[1], weight, counts, k, *found)
        if not narrow_is_wide:  # the rows float64 products settle and float32 ones would not
            if wide:
                extra = _open_if_narrow(values, uppers, index, weight, k, kappas[0] / kappas[1]) - len(open_rows)
            else:
                extra = len(open_rows) - exact_rows
            tally[2] += 1 if wide else 0
            wide = extra > WIDE_SHARE * size_t
        tally[0] += size_t
        tally[1] += len(open_rows)
        for j in range(size_t):
            g = order[j]
            c_t[g] = found_closer[j]
            a_t[g] = found_at[j]
            r_t[g] = found_room[j]
            e_t[g] = found_e[j]
        for sample in range(size):
            j = position[group[t, sample]]
            for q in range(k_take):
                neighbours[sample, q] = first[order[index[j, q]]] if q < take else -1


# Rows (groups) searched, rows the products left open (searched again in float64) and slices whose products
# were float64: the benchmarks report them, what bounds the search on a family of states.
SEARCH_COUNTS = {"rows": 0, "open": 0, "wide": 0}


def search_map(
    states: np.ndarray,
    group: np.ndarray,
    n_groups: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    k: int,
    dtype: type = np.float64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """S and E of every group of every time slice: class counts of S and E (T, G_max, C), room and e (T,
    G_max), float64; entries past a slice's groups are room k, e 0.

    states: (T, N, H), finite, with group ids (T, N) and group counts (T,) of identical states
    (``identical_groups``) and labels (N,) int64; ``dtype``: the products' usual precision (np.float32 only
    for float32 states). Call within ``blas_threads``: the products come from scipy's BLAS through numba,
    which torch's thread setting does not reach.

    The upper triangle of the products, each block moved to the slice's median state or its own, gives
    every row its list; the bounds settle all but a few rows, which are searched again in float64 and get
    explicit differences where that is not enough either. One compiled call per map: the per-slice work in
    Python cost a quarter of a map at N 1,000.
    """
    slices, size, hidden = states.shape
    if not 1 <= k <= size:  # the compiled loops do not check bounds
        raise ValueError(f"k={k}: must be in 1..{size}, the number of states")
    most = int(n_groups.max())
    closer = np.zeros((slices, most, n_classes))
    at = np.zeros((slices, most, n_classes))
    room = np.full((slices, most), float(k))
    e = np.zeros((slices, most))
    kappas = np.array([rounding_factor(hidden, dtype), rounding_factor(hidden, np.float64)])
    tally = np.zeros(3, dtype=np.int64)
    narrow = np.empty(2 * size * hidden, dtype=dtype)
    _search_map(states, group, n_groups, labels, n_classes, k, narrow, kappas, closer, at, room, e, tally)
    for key, count in zip(("rows", "open", "wide"), tally):
        SEARCH_COUNTS[key] += int(count)
    return closer, at, room, e


@numba.njit(nogil=True, cache=False)
def _identical_groups(states, direction, group, n_groups):
    """As ``knn._groups_of_identical_states``, compiled: for every slice, rows sorted by a fixed projection
    (summed in float64 in one order, so that equal rows get equal keys), runs of equal keys checked row by row
    against the run's first row (equal as numbers: +0 and -0 alike); a row that differs gets its own group."""
    slices, size, hidden = states.shape
    key = np.empty(size)
    for t in range(slices):
        for s in range(size):
            total = 0.0
            for h in range(hidden):
                total += np.float64(states[t, s, h]) * direction[h]
            key[s] = total
        order = np.argsort(key)
        current = -1
        head = -1
        for j in range(size):
            s = order[j]
            if j == 0 or key[s] != key[order[j - 1]]:  # a new run of equal keys
                head = s
                current += 1
                group[t, s] = current
                continue
            same = True
            for h in range(hidden):
                same = same and states[t, s, h] == states[t, head, h]
            if same:
                group[t, s] = group[t, head]
            else:  # a collision of keys: a group of its own
                current += 1
                group[t, s] = current
        n_groups[t] = current + 1


def identical_groups(states: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Group ids (T, N) and group counts (T,) of identical states per slice; states (T, N, H)."""
    slices, size, hidden = states.shape
    direction = np.random.default_rng(0).standard_normal(hidden)
    group = np.empty((slices, size), dtype=np.int64)
    n_groups = np.empty(slices, dtype=np.int64)
    _identical_groups(states, direction, group, n_groups)
    return torch.from_numpy(group), torch.from_numpy(n_groups)


@numba.njit(nogil=True, cache=False)
def group_tables(group, size, labels, n_classes):
    """Per group of one slice: its first sample, its size and its class counts (float64)."""
    first = np.full(size, len(group), dtype=np.int64)
    weight = np.zeros(size)
    counts = np.zeros((size, n_classes))
    for sample in range(len(group)):
        g = group[sample]
        first[g] = min(first[g], sample)
        weight[g] += 1.0
        counts[g, labels[sample]] += 1.0
    return first, weight, counts


def blas_threads():
    """The BLAS behind the products (numpy's and scipy's) limited to torch's thread count, as a context."""
    return pipeline_blas.blas_threads(torch.get_num_threads())


# The kernels' compiled code comes from, and goes to, the project's signed cache (compile_cache.py): a machine
# compiles them once. None, or why the cache is not used.
CACHE_PROBLEM = compile_cache.attach(
    [kernel for kernel in list(globals().values()) if isinstance(kernel, numba.core.dispatcher.Dispatcher)],
    Path(__file__),
)
