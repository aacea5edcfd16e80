"""Convert the study authors' iMiGUE layout to the .npz that `dataset=imigue` reads.

The authors (Jiang & Dale 2025, Preprocessing/gesture_preprocessing.ipynb of their Learning-Curves
repository) kept iMiGUE's OpenPose keypoints as one spreadsheet per video and cut clips out of it with
iMiGUE's label table:

    <excel>/<video:04d>/<video:04d>_2.xlsx   one row per frame (no header), 137 keypoints x (x, y, confidence)
    labels_20200831.csv                      one row per clip: video_id, start_frame, end_frame, class, ...

A clip is rows ``start_frame:end_frame`` of its video's sheet (pandas' ``iloc``: 0-based, end excluded),
and the confidence columns (every third, from the third) are dropped -> 274 features per frame. Clips
with no frame (a range past the end of the sheet, or an empty one) are dropped, as the authors' padding
step did (``valid == 0``). What is written:

    keypoints  float32 (N, T, 274)  each clip cut after T frames (the end dropped) or zero-padded at the end
    label      int64 (N,)           the iMiGUE class id (``class``: 1..32, 99); dataset=imigue regroups them
    length     int64 (N,)           real frames kept (at most T)
    video_id, start_frame, end_frame, row   int64 (N,): where each clip came from (row = its line in the CSV)

Usage (openpyxl reads the sheets: ``pip install -e '.[authors]'``)::

    python tools/imigue_from_authors.py --labels imigue_data/labels_20200831.csv \\
        --excel imigue_data/excel --out data/imigue/imigue_authors.npz
    python -m pipeline dataset=imigue dataset.root=data/imigue/imigue_authors.npz

N clips x 150 x 274 float32 is about 3 GB for the 18,498 clips of the label table; the file is written
to a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

log = logging.getLogger("imigue_from_authors")

N_KEYPOINTS = 137
COLUMNS_PER_KEYPOINT = 3  # x, y, confidence
REQUIRED = ("video_id", "start_frame", "end_frame", "class")


def read_clip_table(path: Path) -> list[dict[str, int]]:
    """The label table's clips in file order: video_id, start_frame, end_frame, class and the CSV row."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: no column(s) {missing} (it has {reader.fieldnames}); expected iMiGUE's labels")
        clips = []
        for row_number, row in enumerate(reader):
            try:
                clips.append({**{c: int(float(row[c])) for c in REQUIRED}, "row": row_number})
            except (TypeError, ValueError):
                raise ValueError(f"{path}: line {row_number + 2} has a non-numeric {REQUIRED} value") from None
    if not clips:
        raise ValueError(f"{path} lists no clips")
    return clips


def sheet_path(excel_root: Path, video_id: int) -> Path:
    """``<excel>/<video:04d>/<video:04d>_2.xlsx``, the authors' file of a video's keypoints."""
    name = f"{video_id:04d}"
    return excel_root / name / f"{name}_2.xlsx"


def read_sheet(path: Path, n_rows: int) -> np.ndarray:
    """The first ``n_rows`` frames of a video's sheet as float32 (frames, 274): (x, y) of each keypoint."""
    from openpyxl import load_workbook

    workbook = load_workbook(path, read_only=True, data_only=True)
    try:
        rows = []
        for values in workbook.worksheets[0].iter_rows(max_row=max(n_rows, 1), values_only=True):
            rows.append([np.nan if v is None else v for v in values])  # an empty cell -> 0 below
    finally:
        workbook.close()
    if not rows:
        return np.zeros((0, 2 * N_KEYPOINTS), dtype=np.float32)
    width = N_KEYPOINTS * COLUMNS_PER_KEYPOINT
    found = max(len(r) for r in rows)
    if found != width:
        raise ValueError(f"{path}: {found} columns, expected {width} ({N_KEYPOINTS} keypoints x (x, y, confidence))")
    table = np.array([r + [np.nan] * (width - len(r)) for r in rows], dtype=np.float64)  # a short row: empty cells
    keep = [c for c in range(width) if c % COLUMNS_PER_KEYPOINT != 2]  # the authors' drop_idx: 2, 5, 8, ...
    return np.nan_to_num(table[:, keep]).astype(np.float32)


def videos_in_order(clips: list[dict[str, int]]) -> Iterator[tuple[int, list[dict[str, int]]]]:
    """(video_id, its clips) for each video, in order of first appearance."""
    by_video: dict[int, list[dict[str, int]]] = {}
    for clip in clips:
        by_video.setdefault(clip["video_id"], []).append(clip)
    yield from by_video.items()


def convert(labels: Path, excel_root: Path, time_slices: int = 150) -> dict[str, np.ndarray]:
    """The arrays of the .npz (see the module docstring); zero-frame clips are left out."""
    clips = read_clip_table(labels)
    missing = sorted(
        {sheet_path(excel_root, c["video_id"]) for c in clips if not sheet_path(excel_root, c["video_id"]).is_file()}
    )
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        raise FileNotFoundError(
            f"{len(missing)} video sheet(s) listed in {labels} are not under {excel_root} (e.g. {shown}); "
            f"expected <excel>/<video:04d>/<video:04d>_2.xlsx as in the authors' preprocessing"
        )
    kept: list[tuple[dict[str, int], np.ndarray]] = []
    dropped = 0
    started = time.monotonic()
    videos = list(videos_in_order(clips))
    for done, (video_id, video_clips) in enumerate(videos, 1):
        frames = read_sheet(sheet_path(excel_root, video_id), max(c["end_frame"] for c in video_clips))
        for clip in video_clips:
            keypoints = frames[max(clip["start_frame"], 0) : max(clip["end_frame"], 0)]
            if len(keypoints) == 0:
                dropped += 1
                continue
            kept.append((clip, keypoints[:time_slices]))
        log.info("video %d (%d/%d), %.0f s", video_id, done, len(videos), time.monotonic() - started)
    if dropped:
        log.warning(
            "%d of %d clips have no frame in their video's sheet: dropped, as the authors did", dropped, len(clips)
        )
    if not kept:
        raise ValueError(f"no clip of {labels} has a frame in its sheet")
    x = np.zeros((len(kept), time_slices, 2 * N_KEYPOINTS), dtype=np.float32)
    for i, (_, keypoints) in enumerate(kept):
        x[i, : len(keypoints)] = keypoints
    column = lambda key: np.array([clip[key] for clip, _ in kept], dtype=np.int64)
    return {
        "keypoints": x,
        "label": column("class"),
        "length": np.array([len(k) for _, k in kept], dtype=np.int64),
        "video_id": column("video_id"),
        "start_frame": column("start_frame"),
        "end_frame": column("end_frame"),
        "row": column("row"),
    }


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez to a temporary file beside ``path``, renamed into place when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See docs/data.md (iMiGUE).")
    parser.add_argument("--labels", type=Path, required=True, help="iMiGUE's label table (labels_20200831.csv)")
    parser.add_argument("--excel", type=Path, required=True, help="folder of <video:04d>/<video:04d>_2.xlsx sheets")
    parser.add_argument("--out", type=Path, required=True, help="the .npz to write (dataset.root=<it>)")
    parser.add_argument("--time-slices", type=int, default=150, help="frames per clip, cut or padded (150)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.time_slices < 1:
        parser.error("--time-slices must be >= 1")
    for path, what in ((args.labels, "label table"), (args.excel, "sheet folder")):
        if not path.exists():
            parser.error(f"the {what} {path} does not exist")
    arrays = convert(args.labels, args.excel, args.time_slices)
    write_npz(args.out, arrays)
    print(
        f"{args.out}: {len(arrays['label'])} clips x {args.time_slices} frames x {arrays['keypoints'].shape[2]} features"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
