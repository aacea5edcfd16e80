"""Tukey's 3RS3R smoother (R's smooth()) and the four learning-curve metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.curve_metrics import METRIC_NAMES, curve_metrics, map_metrics, smooth_3rs3r, smooth_3rs3r_rows

DATA = Path(__file__).parent / "data"


def _both(x):
    """The plain and the vectorised smoother must agree; return the plain one."""
    plain = smooth_3rs3r(x)
    rows = smooth_3rs3r_rows(np.asarray(x, dtype=float)[None, :])[0]
    assert np.array_equal(plain, rows), (x, plain, rows)
    return plain


# --- hand-worked cases ------------------------------------------------------------------------


def test_three_values_median_then_end_rule():
    # "3": y2 = median(1, 3, 2) = 2, ends copied -> (1, 2, 2); nothing changes on repeating.
    # Tukey's end rule: y1 = median(3*y2 - 2*y3, x1, y2) = median(2, 1, 2) = 2,
    # then y3 = median(y2, x3, 3*y2 - 2*y1) = median(2, 2, 2) = 2 (uses the new y1).
    assert _both([1.0, 3.0, 2.0]).tolist() == [2.0, 2.0, 2.0]


def test_constant_and_straight_lines_are_fixed_points():
    assert _both([2.0] * 6).tolist() == [2.0] * 6
    # a line: every running median is the middle value, and the end rule's extrapolation is x1 itself
    line = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert _both(line).tolist() == line


def test_single_spike_is_removed():
    # median(0, 5, 0) = 0; then all zeros
    assert _both([0.0, 0.0, 5.0, 0.0, 0.0]).tolist() == [0.0] * 5


def test_split_discarded_when_last_replacement_changes_nothing():
    # 3R leaves (0, 0, 3, 3, 1, 0) unchanged (every value is the median of its neighbours; the end
    # rule gives median(-6, 0, 0) = 0 and median(1, 0, -3) = 0). (3, 3) at positions 3-4 is a 2-flat
    # (a peak). Left half: median(3, 0, 3*0 - 2*0) = 0 -> replaced by 0 (a change). Right half:
    # candidates (3, 1, 3*1 - 2*0 = 3): the median is the extrapolation 3, equal to the old value, and
    # R's "changed" flag keeps only this last outcome: false. So R returns the first 3R, and the split
    # (which would have given (0, 0, 0, 1, 1, 1) after the second 3R) is dropped.
    x = [0.0, 0.0, 3.0, 3.0, 1.0, 0.0]
    assert _both(x).tolist() == x


def test_end_split_triggered_by_rounding():
    # 3R of (0.47, 0.87, 0.14, 0.42, 0.53) is (0.47, 0.47, 0.42, 0.42, e) with the end rule's
    # e = median(0.42, 0.53, 3*0.42 - 2*0.42) and 3*0.42 - 2*0.42 = 0.42000000000000004 in doubles.
    # So 0.42, 0.42 ends in a (rounding-size) valley next to the end, and R splits it by default
    # (do.ends = FALSE still splits ends in R's C code): the half at the end takes the last value,
    # the other half median(0.42, 0.47, 3*0.47 - 2*0.47) = 0.47; the second 3R keeps that.
    e = 3 * 0.42 - 2 * 0.42
    assert e != 0.42
    out = _both([0.47, 0.87, 0.14, 0.42, 0.53])
    assert out.tolist() == [0.47, 0.47, 0.47, e, e]


def test_short_inputs():
    assert _both([0.3]).tolist() == [0.3]
    assert _both([0.3, 0.9]).tolist() == [0.3, 0.9]
    out = _both([3.0, 1.0, 2.0, 0.0])  # n = 4: 3R only (no split below n = 5)
    assert out.shape == (4,)


def test_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        smooth_3rs3r(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        smooth_3rs3r([0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match="2-D"):
        smooth_3rs3r_rows(np.zeros(4))


# --- against R ----------------------------------------------------------------------------------


def _r_cases():
    return json.loads((DATA / "r_smooth_cases.json").read_text())["cases"]


def test_matches_r_smooth_on_stored_cases():
    """tests/data/r_smooth_cases.json: R 4.2.2's smooth() on hand-worked, edge and random vectors."""
    cases = _r_cases()
    assert len(cases) >= 80
    for case in cases:
        got = smooth_3rs3r(case["x"])
        assert np.array_equal(got, np.array(case["smooth"], dtype=float)), case["name"]
    # the vectorised version, all cases of one length at once
    by_length: dict[int, list] = {}
    for case in cases:
        by_length.setdefault(len(case["x"]), []).append(case)
    for n, group in by_length.items():
        got = smooth_3rs3r_rows(np.array([c["x"] for c in group], dtype=float))
        want = np.array([c["smooth"] for c in group], dtype=float)
        assert np.array_equal(got, want), n


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript not on PATH (apt-get install r-base-core)")
def test_matches_live_r_on_random_vectors(tmp_path):
    rng = np.random.default_rng(7)
    vectors = []
    for i in range(400):
        n = int(rng.choice([3, 4, 5, 6, 7, 9, 12, 17, 30, 66, 150]))
        kind = i % 4
        if kind == 0:
            x = np.round(rng.random(n) / 0.05) * 0.05  # ties on a 0.05 grid
        elif kind == 1:
            x = rng.integers(0, 3, n).astype(float)
        elif kind == 2:
            x = np.round(rng.random(n) * 200) / 200  # KNN accuracies on 200 samples
        else:
            x = np.round(np.cumsum(rng.normal(size=n)), 1)
        vectors.append(x)
    (tmp_path / "in.txt").write_text("\n".join(" ".join(repr(float(v)) for v in x) for x in vectors) + "\n")
    script = (
        "l <- readLines('in.txt'); o <- vapply(l, function(s) paste(sprintf('%.17g', "
        "as.numeric(smooth(as.numeric(strsplit(s, ' ')[[1]])))), collapse = ' '), ''); "
        "writeLines(o, 'out.txt')"
    )
    subprocess.run(["Rscript", "-e", script], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert len(lines) == len(vectors)
    for x, line in zip(vectors, lines):
        want = np.array([float(v) for v in line.split()])
        assert np.array_equal(smooth_3rs3r(x), want), x.tolist()
        assert np.array_equal(smooth_3rs3r_rows(x[None, :])[0], want), x.tolist()


# --- vectorised == plain ----------------------------------------------------------------------


@pytest.mark.parametrize("grid", [0.05, 0.25, 1 / 200, None])
def test_vectorised_equals_plain_on_random_curves_with_ties(grid):
    rng = np.random.default_rng(11)
    for n in (3, 4, 5, 6, 7, 8, 10, 13, 21, 66, 150):
        x = rng.random((60, n))
        if grid is not None:
            x = np.round(x / grid) * grid
        got = smooth_3rs3r_rows(x)
        for row_in, row_out in zip(x, got):
            assert np.array_equal(smooth_3rs3r(row_in), row_out), (n, row_in.tolist())


# --- metrics ------------------------------------------------------------------------------------


def test_metric_definitions_on_a_smooth_curve():
    curve = np.array([0.5, 0.6, 0.7, 0.9, 0.9, 0.8, 0.7])  # a fixed point of 3RS3R except the ends
    s = smooth_3rs3r(curve)
    m = curve_metrics(curve)
    assert m.start[0] == s[0] and m.end[0] == s[-1]
    assert m.max[0] == s.max()
    assert m.tmax[0] == (int(np.argmax(s)) + 1) / 7  # first maximum, 1-based, / T
    assert m.end_minus_start[0] == s[-1] - s[0]
    assert set(METRIC_NAMES) == {"start", "end_minus_start", "max", "tmax"}


def test_tmax_takes_the_first_maximum_and_smoothing_is_optional():
    raw = np.array([0.5, 0.9, 0.5, 0.9, 0.5, 0.5])
    m_raw = curve_metrics(raw, smooth=False)
    assert m_raw.tmax[0] == 2 / 6 and m_raw.max[0] == 0.9 and m_raw.start[0] == 0.5
    m = curve_metrics(raw)  # smoothed: the two spikes go
    assert m.max[0] == smooth_3rs3r(raw).max()
    flat = curve_metrics(np.full(5, 0.7))
    assert flat.tmax[0] == 1 / 5  # ties: the first slice


def test_map_metrics_shapes_and_values():
    rng = np.random.default_rng(3)
    maps = np.round(rng.random((4, 5, 12)) * 40) / 40
    m = map_metrics(maps)
    assert m.start.shape == (4, 5)
    for r in range(4):
        for e in range(5):
            s = smooth_3rs3r(maps[r, e])
            assert m.start[r, e] == s[0] and m.end[r, e] == s[-1] and m.max[r, e] == s.max()
            assert m.tmax[r, e] == (np.argmax(s) + 1) / 12
