"""The four learning-curve metrics (start, end - start, max, tmax) and Tukey's 3RS3R smoother.

Each per-epoch information-processing curve (KNN accuracy over time slices) is smoothed exactly as
R's ``smooth(x)`` does with its defaults, then summarised: ``start`` and ``end`` (first and last
time slice), ``max``, and ``tmax`` (the first maximum's 1-based index / T). numpy only: the analysis
computes its metrics table with it and the W&B mirror each epoch's metrics, so both give the same
numbers. The smoother's definition and the R quirks it reproduces: docs/analysis.md ("The smoother")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "METRIC_NAMES",
    "CurveMetrics",
    "smooth_3rs3r",
    "smooth_3rs3r_rows",
    "curve_metrics",
    "map_metrics",
    "map_movement",
]

#: The metric names used in every table (``end`` is also kept in the metrics
#: table but is not analysed on its own, as in the study).
METRIC_NAMES: tuple[str, ...] = ("start", "end_minus_start", "max", "tmax")


# ---------------------------------------------------------------------------
# The straightforward smoother, one curve at a time (the reference).
# ---------------------------------------------------------------------------


def _pick_median(u: float, v: float, w: float) -> int:
    """Which of (u, v, w) is their median: 0 for v, 1 for w, -1 for u.

    On ties v is preferred, then w, then u. The value is the median whatever
    the preference; the preference only matters for R's "changed" flag in S.
    """
    if (u <= v and v <= w) or (u >= v and v >= w):
        return 0
    if (u <= w and w <= v) or (u >= w and w >= v):
        return 1
    return -1


def _median3(u: float, v: float, w: float) -> float:
    pick = _pick_median(u, v, w)
    return v if pick == 0 else (w if pick == 1 else u)


def _tukey_end_rule(y: list[float], x: list[float]) -> None:
    """Tukey's end rule on a 3R result ``y`` (in place); ``x`` is 3R's input."""
    n = len(y)
    y[0] = _median3(3.0 * y[1] - 2.0 * y[2], x[0], y[1])
    y[n - 1] = _median3(y[n - 2], x[n - 1], 3.0 * y[n - 2] - 2.0 * y[n - 3])


def _three_r(x: list[float]) -> list[float]:
    """'3R': running medians of three until nothing changes, then the end rule."""
    n = len(x)
    y = list(x)
    while True:
        z = list(y)
        for i in range(1, n - 1):
            z[i] = _median3(y[i - 1], y[i], y[i + 1])
        if z == y:
            break
        y = z
    _tukey_end_rule(y, x)
    return y


def _is_two_flat(x: list[float], i: int) -> bool:
    """Is x[i] == x[i+1] a peak or a valley (x[i-1], x[i+2] on the same side)?"""
    if x[i] != x[i + 1]:
        return False
    if (x[i - 1] <= x[i] and x[i + 1] <= x[i + 2]) or (x[i - 1] >= x[i] and x[i + 1] >= x[i + 2]):
        return False
    return True


def _split(x: list[float]) -> tuple[list[float], bool]:
    """'S' with R's choices (ends split, 'changed' = outcome of the last replacement)."""
    n = len(x)
    y = list(x)
    changed = False
    if n <= 4:
        return y, False
    if _is_two_flat(x, 1):
        changed = True
        y[1] = x[0]
        y[2] = _median3(x[2], x[3], 3.0 * x[3] - 2.0 * x[4])
    for i in range(2, n - 3):
        if not _is_two_flat(x, i):
            continue
        # left half x[i]: candidates itself, outer neighbour, extrapolation
        extrapolated = 3.0 * x[i - 1] - 2.0 * x[i - 2]
        pick = _pick_median(x[i], x[i - 1], extrapolated)
        if pick >= 0:
            y[i] = x[i - 1] if pick == 0 else extrapolated
            changed = y[i] != x[i]
        # right half x[i+1]
        extrapolated = 3.0 * x[i + 2] - 2.0 * x[i + 3]
        pick = _pick_median(x[i + 1], x[i + 2], extrapolated)
        if pick >= 0:
            y[i + 1] = x[i + 2] if pick == 0 else extrapolated
            changed = y[i + 1] != x[i + 1]
    if _is_two_flat(x, n - 3):
        changed = True
        y[n - 2] = x[n - 1]
        y[n - 3] = _median3(x[n - 3], x[n - 4], 3.0 * x[n - 4] - 2.0 * x[n - 5])
    return y, changed


def _as_curve(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"smooth_3rs3r takes a 1-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("smooth_3rs3r: the curve holds NaN or infinite values")
    return a


def smooth_3rs3r(x) -> np.ndarray:
    """Tukey's 3RS3R smoother with Tukey's end rule: what R's ``smooth(x)`` returns.

    ``x`` is a 1-D array of finite numbers. Lengths 1 and 2 come back
    unchanged (as in R). See the module docstring for the exact definition.
    This is the plain, one-curve implementation; ``smooth_3rs3r_rows`` does
    the same on many curves at once.
    """
    a = _as_curve(x)
    if a.size <= 2:
        return a.copy()
    values = [float(v) for v in a]
    y = _three_r(values)
    z, changed = _split(y)
    if changed:
        y = _three_r(z)
    return np.asarray(y, dtype=np.float64)


# ---------------------------------------------------------------------------
# The same smoother on all rows of a matrix at once.
# ---------------------------------------------------------------------------


def _median3_arrays(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.maximum(np.minimum(u, v), np.minimum(np.maximum(u, v), w))


def _pick_median_arrays(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Elementwise ``_pick_median``: 0 (v), 1 (w) or -1 (u), same tie preference."""
    is_v = ((u <= v) & (v <= w)) | ((u >= v) & (v >= w))
    is_w = ((u <= w) & (w <= v)) | ((u >= w) & (w >= v))
    return np.where(is_v, 0, np.where(is_w, 1, -1))


def _three_r_rows(x: np.ndarray) -> np.ndarray:
    """'3R' on every row of ``x`` (n >= 3): iterate only the rows still changing."""
    y = x.copy()
    active = np.arange(y.shape[0])
    while active.size:
        block = y[active]
        new = _median3_arrays(block[:, :-2], block[:, 1:-1], block[:, 2:])
        moved = np.any(new != block[:, 1:-1], axis=1)
        if not moved.any():
            break
        rows = active[moved]
        y[rows, 1:-1] = new[moved]
        active = rows
    n = y.shape[1]
    y[:, 0] = _median3_arrays(3.0 * y[:, 1] - 2.0 * y[:, 2], x[:, 0], y[:, 1])
    y[:, n - 1] = _median3_arrays(y[:, n - 2], x[:, n - 1], 3.0 * y[:, n - 2] - 2.0 * y[:, n - 3])
    return y


def _two_flats_rows(x: np.ndarray) -> np.ndarray:
    """Boolean (m, n) array: entry i is True where x[:, i], x[:, i+1] is a 2-flat.

    Defined for 1 <= i <= n-3; other entries are False.
    """
    m, n = x.shape
    flat = np.zeros((m, n), dtype=bool)
    left, a, b, right = x[:, : n - 3], x[:, 1 : n - 2], x[:, 2 : n - 1], x[:, 3:]
    monotone = ((left <= a) & (b <= right)) | ((left >= a) & (b >= right))
    flat[:, 1 : n - 2] = (a == b) & ~monotone
    return flat


def _split_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """'S' on every row (n >= 5), with R's 'changed' flag per row."""
    m, n = x.shape
    y = x.copy()
    flat = _two_flats_rows(x)
    # Events in R's order: the start split, then for i = 2..n-4 the left and the
    # right half of a flat at i, then the end split. 'changed' is the outcome of
    # the last event that happened.
    happened = np.zeros((m, 2 * (n - 5) + 2), dtype=bool)
    outcome = np.zeros_like(happened)

    start = flat[:, 1]
    y[start, 1] = x[start, 0]
    y[start, 2] = _median3_arrays(x[start, 2], x[start, 3], 3.0 * x[start, 3] - 2.0 * x[start, 4])
    happened[:, 0] = start
    outcome[:, 0] = True

    if n >= 6:
        idx = np.arange(2, n - 3)
        inner = flat[:, idx]
        # left halves x[i], outer neighbour x[i-1], extrapolation from x[i-1], x[i-2]
        u, v = x[:, idx], x[:, idx - 1]
        w = 3.0 * v - 2.0 * x[:, idx - 2]
        pick = _pick_median_arrays(u, v, w)
        replace_left = inner & (pick >= 0)
        new_left = np.where(pick == 0, v, w)
        # right halves x[i+1], outer neighbour x[i+2], extrapolation from x[i+2], x[i+3]
        u_r, v_r = x[:, idx + 1], x[:, idx + 2]
        w_r = 3.0 * v_r - 2.0 * x[:, idx + 3]
        pick_r = _pick_median_arrays(u_r, v_r, w_r)
        replace_right = inner & (pick_r >= 0)
        new_right = np.where(pick_r == 0, v_r, w_r)
        # two flats never overlap (a 2-flat's outer neighbours differ from it)
        y[:, idx] = np.where(replace_left, new_left, y[:, idx])
        y[:, idx + 1] = np.where(replace_right, new_right, y[:, idx + 1])
        happened[:, 1:-1:2] = replace_left
        outcome[:, 1:-1:2] = new_left != u
        happened[:, 2:-1:2] = replace_right
        outcome[:, 2:-1:2] = new_right != u_r

    end = flat[:, n - 3]
    y[end, n - 2] = x[end, n - 1]
    y[end, n - 3] = _median3_arrays(x[end, n - 3], x[end, n - 4], 3.0 * x[end, n - 4] - 2.0 * x[end, n - 5])
    happened[:, -1] = end
    outcome[:, -1] = True

    any_event = happened.any(axis=1)
    last = happened.shape[1] - 1 - np.argmax(happened[:, ::-1], axis=1)
    changed = any_event & outcome[np.arange(m), last]
    return y, changed


def smooth_3rs3r_rows(curves) -> np.ndarray:
    """``smooth_3rs3r`` applied to every row of a 2-D array, vectorised.

    Returns a new float64 array of the same shape. Equal, row by row, to
    ``smooth_3rs3r`` (and so to R's ``smooth()``).
    """
    x = np.asarray(curves, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"smooth_3rs3r_rows takes a 2-D array (curves x time slices), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("smooth_3rs3r_rows: the curves hold NaN or infinite values")
    m, n = x.shape
    if n <= 2 or m == 0:
        return x.copy()
    y = _three_r_rows(x)
    if n <= 4:
        return y
    z, changed = _split_rows(y)
    if changed.any():
        y[changed] = _three_r_rows(z[changed])
    return y


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CurveMetrics:
    """The metrics of many curves (one entry per curve)."""

    start: np.ndarray
    end: np.ndarray
    max: np.ndarray
    tmax: np.ndarray

    @property
    def end_minus_start(self) -> np.ndarray:
        return self.end - self.start

    def as_dict(self) -> dict[str, np.ndarray]:
        return {
            "start": self.start,
            "end": self.end,
            "end_minus_start": self.end_minus_start,
            "max": self.max,
            "tmax": self.tmax,
        }


def curve_metrics(curves, smooth: bool = True) -> CurveMetrics:
    """start, end, max and tmax of each row of ``curves`` (curves x time slices).

    With ``smooth=True`` (the default, as the authors did) each curve is first
    smoothed with ``smooth_3rs3r``; with ``smooth=False`` the raw curve is used.
    ``tmax`` is the 1-based index of the first maximum divided by T.
    """
    x = np.asarray(curves, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"curve_metrics takes curves x time slices, got shape {x.shape}")
    s = smooth_3rs3r_rows(x) if smooth else x
    if not smooth and not np.all(np.isfinite(s)):
        raise ValueError("curve_metrics: the curves hold NaN or infinite values")
    n_slices = s.shape[1]
    return CurveMetrics(
        start=s[:, 0].copy(),
        end=s[:, -1].copy(),
        max=s.max(axis=1),
        tmax=(np.argmax(s, axis=1) + 1) / n_slices,
    )


def map_metrics(maps, smooth: bool = True) -> CurveMetrics:
    """Metrics of learning-curve maps stacked as (runs, epochs, time slices).

    Returns arrays of shape (runs, epochs).
    """
    a = np.asarray(maps, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"map_metrics takes (runs, epochs, time slices), got shape {a.shape}")
    runs, epochs, slices = a.shape
    flat = curve_metrics(a.reshape(runs * epochs, slices), smooth=smooth)
    return CurveMetrics(
        **{
            k: v.reshape(runs, epochs)
            for k, v in (("start", flat.start), ("end", flat.end), ("max", flat.max), ("tmax", flat.tmax))
        }
    )


def map_movement(learning_curve_map) -> float:
    """Mean over time slices of |map[last epoch] - map[epoch 1]| (map: epochs x time slices): how far a
    run's map moved over training (the training-health table's column, the W&B mirror's summary)."""
    m = np.asarray(learning_curve_map, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 1:
        raise ValueError(f"a learning-curve map is epochs x time slices, got shape {m.shape}")
    return float(np.mean(np.abs(m[-1] - m[0])))
