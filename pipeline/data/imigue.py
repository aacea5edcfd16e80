"""iMiGUE micro-gesture clips as OpenPose keypoint sequences (the study's
gesture data), from local files a user supplies.

Two inputs are accepted (see docs/data.md for the layout):

1. OpenPose's per-frame JSON output: ``<root>/<clip>/`` holds
   ``<anything>_<frame:012d>_keypoints.json`` files; a labels CSV
   (``clip,label``, iMiGUE class ids 1..32 and 99) names the clips. Each frame
   gives the first detected person's BODY_25 pose (25), face (70), left hand
   (21) and right hand (21) keypoints = 137 keypoints; (x, y) are kept,
   confidences dropped -> 274 features per frame, ordered pose, face, left
   hand, right hand, and x, y interleaved per keypoint. A frame with no person,
   or a part OpenPose did not write, gives zeros.
2. A pre-extracted ``.npz`` with ``keypoints`` (N, T, 274), ``label`` (N,)
   iMiGUE ids and optionally ``length`` (N,) real frame counts.

The iMiGUE ids are regrouped into the 6 classes of the study (``groups``);
clips whose id is in no group (id 32) are dropped. Clips are cut or
zero-padded at the end to ``time_slices`` frames (150). Coordinates stay raw
pixels, as in the study.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..runfolder import atomic_write_bytes
from .base import DataNotFoundError, SequenceData, as_list, opt, pad_sequences, require_path, resolve_path

log = logging.getLogger(__name__)

# (OpenPose JSON key, number of keypoints), in feature order
PARTS = (
    ("pose_keypoints_2d", 25),
    ("face_keypoints_2d", 70),
    ("hand_left_keypoints_2d", 21),
    ("hand_right_keypoints_2d", 21),
)
N_KEYPOINTS = sum(n for _, n in PARTS)  # 137
N_FEATURES = 2 * N_KEYPOINTS  # 274

# docs/science.md section 1: the study's 6 classes as groups of iMiGUE class ids
GROUPS = (
    (99,),
    (20, 21, 31),
    (1, 2, 28, 29),
    (23, 24, 25, 26, 27),
    (12, 13, 14, 15, 16, 17, 18, 19, 22, 30),
    (3, 4, 5, 6, 7, 8, 9, 10, 11),
)
CLASS_NAMES = ("no gesture", "body", "head", "hand", "body-head", "head-hand")

FRAME_FILE = re.compile(r"(\d+)_keypoints\.json$")
IMIGUE_HOW = (
    "Obtain the iMiGUE data set (https://github.com/linuxsino/iMiGUE, request access from its authors), "
    "run OpenPose (https://github.com/CMU-Perceptual-Computing-Lab/openpose) on every clip with "
    "`--write_json <root>/<clip>/ --face --hand` (BODY_25 model), write a labels CSV `clip,label` "
    "(iMiGUE class ids 1..32, 99 = no gesture) and put it all under data/imigue/ (relative to where you "
    "run); or give a pre-extracted .npz (keypoints (N,T,274), label (N,))."
)


def frame_features(frame: Mapping[str, Any]) -> np.ndarray:
    """274 float32 features of one OpenPose frame (zeros when nobody is detected)."""
    out = np.zeros(N_FEATURES, dtype=np.float32)
    people = frame.get("people") or []
    if not people:
        return out
    person = people[0]
    start = 0
    for key, n in PARTS:
        values = person.get(key) or []
        if len(values):
            if len(values) != 3 * n:
                raise ValueError(
                    f"OpenPose {key} has {len(values)} numbers, expected {3 * n} "
                    f"({n} keypoints x (x, y, confidence)); use the BODY_25 model"
                )
            xy = np.asarray(values, dtype=np.float32).reshape(n, 3)[:, :2]
            out[start : start + 2 * n] = xy.reshape(-1)
        start += 2 * n
    return out


def read_openpose_clip(folder: Path) -> np.ndarray:
    """(frames, 274) float32 of one clip folder, frames ordered by frame number."""
    frames = []
    for path in folder.iterdir():
        m = FRAME_FILE.search(path.name)
        if m:
            frames.append((int(m.group(1)), path))
    if not frames:
        raise ValueError(f"iMiGUE clip folder {folder} has no OpenPose *_<frame>_keypoints.json files")
    frames.sort()
    rows = []
    for _, path in frames:
        with open(path, encoding="utf-8") as f:
            rows.append(frame_features(json.load(f)))
    return np.stack(rows)


def read_labels(path: Path) -> list[tuple[str, int]]:
    """``clip,label`` rows (a header line ``clip,label`` is optional)."""
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            if lineno == 1 and [c.strip().lower() for c in row[:2]] == ["clip", "label"]:
                continue
            if len(row) < 2:
                raise ValueError(f"{path}:{lineno}: expected `clip,label`")
            try:
                rows.append((row[0].strip(), int(float(row[1]))))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: label {row[1]!r} is not an iMiGUE class id") from None
    return rows


def group_index(groups: Sequence[Sequence[int]]) -> dict[int, int]:
    index: dict[int, int] = {}
    for k, ids in enumerate(groups):
        for i in ids:
            if int(i) in index:
                raise ValueError(f"dataset.groups: iMiGUE id {i} is in two groups")
            index[int(i)] = k
    return index


def _regroup(labels: np.ndarray, groups) -> tuple[np.ndarray, np.ndarray]:
    """(keep mask, group index of kept) for iMiGUE ids."""
    index = group_index(groups)
    y = np.array([index.get(int(v), -1) for v in labels], dtype=np.int64)
    keep = y >= 0
    if (~keep).any():
        dropped = sorted({int(v) for v in labels[~keep]})
        log.warning("iMiGUE: %d clips with ids %s are in no group; dropped", int((~keep).sum()), dropped)
    return keep, y[keep]


def _from_npz(path: Path, time_slices: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        for key in ("keypoints", "label"):
            if key not in z:
                raise ValueError(f"{path}: the .npz needs arrays `keypoints` (N,T,274) and `label` (N,)")
        kp = np.asarray(z["keypoints"], dtype=np.float32)
        labels = np.asarray(z["label"]).astype(np.int64)
        if kp.ndim != 3 or kp.shape[2] != N_FEATURES or kp.shape[0] != labels.shape[0]:
            raise ValueError(f"{path}: keypoints must be (N, T, {N_FEATURES}) with N = len(label), got {kp.shape}")
        if "length" in z:
            lengths = np.minimum(np.asarray(z["length"]).astype(np.int64), kp.shape[1])
        else:  # last frame with any non-zero value
            nonzero = np.abs(kp).sum(2) > 0
            lengths = np.where(nonzero.any(1), kp.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)
    seqs = [kp[i, : lengths[i]] for i in range(len(kp))]
    x, lengths = pad_sequences(seqs, time_slices, N_FEATURES)
    return x, lengths, labels


def _from_openpose(root: Path, labels_path: Path, time_slices: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = read_labels(labels_path)
    if not rows:
        raise ValueError(f"iMiGUE labels {labels_path} lists no clips")
    seqs = []
    for clip, _ in rows:
        folder = root / clip
        if not folder.is_dir():
            raise DataNotFoundError(f"iMiGUE clip folder {folder} (listed in {labels_path}) not found. {IMIGUE_HOW}")
        seqs.append(read_openpose_clip(folder))
    x, lengths = pad_sequences(seqs, time_slices, N_FEATURES)
    return x, lengths, np.array([label for _, label in rows], dtype=np.int64)


def load_imigue(cfg: Mapping[str, Any]) -> SequenceData:
    time_slices = int(opt(cfg, "time_slices", 150))
    groups = [tuple(int(i) for i in as_list(g)) for g in as_list(opt(cfg, "groups", GROUPS))]
    class_names = tuple(str(c) for c in as_list(opt(cfg, "class_names", CLASS_NAMES)))
    if len(groups) != len(class_names):
        raise ValueError(f"iMiGUE: {len(groups)} groups but {len(class_names)} class_names")
    root = require_path(opt(cfg, "root", "data/imigue"), "iMiGUE keypoints", IMIGUE_HOW, "dataset.root")
    cache_value = opt(cfg, "npz_cache")
    cache = resolve_path(cache_value) if cache_value else None

    if root.is_file():
        x, lengths, labels = _from_npz(root, time_slices)
    elif cache is not None and cache.exists():
        x, lengths, labels = _from_npz(cache, time_slices)
    else:
        labels_path = require_path(
            opt(cfg, "labels", str(root / "labels.csv")), "iMiGUE labels CSV", IMIGUE_HOW, "dataset.labels"
        )
        x, lengths, labels = _from_openpose(root, labels_path, time_slices)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            # runs of a sweep may parse the clips at once: each writes its own temporary file
            buffer = io.BytesIO()
            np.savez(buffer, keypoints=x, label=labels, length=lengths)
            atomic_write_bytes(cache, buffer.getvalue())
    empty = lengths == 0
    if empty.any():  # the study's padding step dropped clips without frames (its `valid == 0`)
        log.warning("iMiGUE: %d clips have no frame; dropped, as the study did", int(empty.sum()))
        x, lengths, labels = x[~empty], lengths[~empty], labels[~empty]
    keep, y = _regroup(labels, groups)
    return SequenceData(
        x=np.ascontiguousarray(x[keep]),
        y=y,
        class_names=class_names,
        lengths=lengths[keep],
        source=str(opt(cfg, "source", "gesture")),
        name=str(opt(cfg, "name", "imigue")),
    )
