"""tools/imigue_from_authors.py on small files in the authors' exact layout (one .xlsx per video with
137 x (x, y, confidence) columns and no header, iMiGUE's label table with frame ranges), checked against
the authors' own reading of them (pandas.read_excel, drop every third column, iloc[start:end]), then
loaded by dataset=imigue."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data import load_dataset

openpyxl = pytest.importorskip("openpyxl", reason="openpyxl (the authors-data and test extras) writes the sheets")

T = 20  # frames per clip here (the study: 150), so the sheets stay small
REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "imigue_from_authors.py"
# the study's groups of the classes these files hold (every class of a data set must have clips)
GROUPS = [[99], [20, 21, 31], [1, 2, 28, 29], [12, 13, 14, 15, 16, 17, 18, 19, 22, 30]]
NAMES = ["no gesture", "body", "head", "body-head"]
LABEL_COLUMNS = ["video_id", "label_id", "start_time", "start_frame", "end_time", "end_frame", "class", "subject_id"]


def _write_sheet(path: Path, frames: int, seed: int) -> np.ndarray:
    """A video's sheet: ``frames`` rows of 411 numbers (x, y, confidence per keypoint), no header."""
    values = np.round(np.random.default_rng(seed).uniform(0, 1280, size=(frames, 411)), 3)
    values[:, 2::3] = np.round(values[:, 2::3] / 1280, 3)  # confidences in 0..1
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in values.tolist():
        sheet.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return values


def _authors_layout(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    excel = tmp_path / "imigue_data" / "excel"
    _write_sheet(excel / "0001" / "0001_2.xlsx", frames=40, seed=1)
    _write_sheet(excel / "0012" / "0012_2.xlsx", frames=30, seed=2)
    clips = pd.DataFrame(
        [
            # video, label_id, start_time, start, end_time, end, class (iMiGUE id), subject
            (1, 14, 0.0, 0, 0.4, 10, 99, 3),  # no gesture
            (1, 3, 0.5, 12, 1.0, 25, 20, 3),  # body
            (1, 7, 1.5, 35, 2.0, 60, 1, 3),  # runs past the sheet's 40 frames: 5 frames kept
            (1, 8, 2.5, 45, 3.0, 52, 23, 3),  # starts past the sheet's end: no frame, dropped
            (12, 2, 0.0, 2, 1.1, 28, 12, 8),  # 26 frames: cut to T = 20
            (12, 5, 1.2, 28, 1.3, 30, 32, 8),  # id 32 is in no group: kept here, dropped by the loader
            (12, 6, 0.4, 10, 0.4, 10, 3, 8),  # an empty range: dropped
        ],
        columns=LABEL_COLUMNS,
    )
    labels = tmp_path / "imigue_data" / "labels_20200831.csv"
    clips.to_csv(labels, index=False)
    return labels, excel, clips


def _imigue_cfg(root: Path, groups=GROUPS, class_names=NAMES) -> dict:
    return {
        "name": "imigue",
        "source": "gesture",
        "loader": "imigue",
        "root": str(root),
        "time_slices": T,
        "groups": groups,
        "class_names": class_names,
        "n_classes": len(class_names),
    }


def _authors_reading(labels: Path, excel: Path) -> list[np.ndarray]:
    """The notebook's loop: read each video's sheet, drop the confidences, take iloc[start:end]."""
    df = pd.read_csv(labels)
    out = []
    for i in range(len(df)):
        name = f"{df['video_id'][i]:04d}"
        pt = pd.read_excel(excel / name / f"{name}_2.xlsx", header=None)
        pt = pt.drop(list(range(2, pt.shape[1], 3)), axis=1)
        out.append(pt.iloc[df["start_frame"][i] : df["end_frame"][i]].to_numpy())
    return out


def test_converter_matches_the_authors_reading_and_loads(tmp_path):
    labels, excel, clips = _authors_layout(tmp_path)
    out = tmp_path / "data" / "imigue.npz"
    result = subprocess.run(
        [
            sys.executable,
            str(TOOL),
            "--labels",
            str(labels),
            "--excel",
            str(excel),
            "--out",
            str(out),
            "--time-slices",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "2 of 7 clips have no frame" in result.stderr
    reference = _authors_reading(labels, excel)
    valid = [i for i, k in enumerate(reference) if len(k)]  # the authors' `valid`
    assert valid == [0, 1, 2, 4, 5]
    with np.load(out) as z:
        assert z["row"].tolist() == valid
        assert z["label"].tolist() == clips["class"].iloc[valid].tolist()
        assert z["length"].tolist() == [min(len(reference[i]), T) for i in valid] == [10, 13, 5, 20, 2]
        for k, i in enumerate(valid):
            n = z["length"][k]
            np.testing.assert_allclose(z["keypoints"][k, :n], reference[i][:T].astype(np.float32))
            assert not z["keypoints"][k, n:].any()
        assert z["keypoints"].shape == (5, T, 274)

    data = load_dataset(_imigue_cfg(out), cache=False)
    # 99 -> no gesture, 20 -> body, 1 -> head, 12 -> body-head; id 32 is in no group: dropped
    assert data.y.tolist() == [0, 1, 2, 3]
    assert data.lengths.tolist() == [10, 13, 5, T]
    np.testing.assert_allclose(data.x[1, :13], reference[1].astype(np.float32))


def test_a_missing_sheet_is_named(tmp_path):
    labels, excel, _ = _authors_layout(tmp_path)
    (excel / "0012" / "0012_2.xlsx").unlink()
    result = subprocess.run(
        [sys.executable, str(TOOL), "--labels", str(labels), "--excel", str(excel), "--out", str(tmp_path / "o.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "0012_2.xlsx" in result.stderr and "<video:04d>/<video:04d>_2.xlsx" in result.stderr
    assert not (tmp_path / "o.npz").exists()


def test_the_loader_drops_zero_frame_clips_of_an_npz(tmp_path, caplog):
    keypoints = np.zeros((3, T, 274), dtype=np.float32)
    keypoints[0, :4] = 1.0
    keypoints[2, :7] = 2.0
    path = tmp_path / "k.npz"
    np.savez(path, keypoints=keypoints, label=np.array([99, 20, 1]), length=np.array([4, 0, 7]))
    data = load_dataset(_imigue_cfg(path, groups=[[99], [1]], class_names=["no gesture", "head"]), cache=False)
    assert data.y.tolist() == [0, 1] and data.lengths.tolist() == [4, 7]
    assert "1 clips have no frame" in caplog.text
