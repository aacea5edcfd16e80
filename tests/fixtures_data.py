"""Makers of tiny data files in the real formats of the study's user-supplied
data (OpenPose JSON + labels CSV for iMiGUE, the emotion corpus, GloVe text),
for tests. Each returns what a correct loader must produce from it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

# OpenPose parts in the loader's feature order
PARTS = (
    ("pose_keypoints_2d", 25),
    ("face_keypoints_2d", 70),
    ("hand_left_keypoints_2d", 21),
    ("hand_right_keypoints_2d", 21),
)


def openpose_frame(
    rng: np.random.Generator, *, person: bool = True, missing_parts: Iterable[str] = (), extra_person: bool = False
) -> tuple[dict, np.ndarray]:
    """One OpenPose frame dict and its expected 274 features."""
    if not person:
        return {"version": 1.3, "people": []}, np.zeros(274, dtype=np.float32)
    missing = set(missing_parts)
    p: dict = {"person_id": [-1]}
    expected = []
    for key, n in PARTS:
        xyc = np.round(rng.uniform(1, 1000, size=(n, 3)), 3).astype(np.float32)
        xyc[:, 2] = np.round(rng.uniform(0, 1, size=n), 3)
        if key in missing:
            p[key] = []
            expected.append(np.zeros(2 * n, dtype=np.float32))
        else:
            p[key] = [float(v) for v in xyc.reshape(-1)]
            expected.append(xyc[:, :2].reshape(-1))
    for key, _n in PARTS:
        p[key.replace("_2d", "_3d")] = []
    people = [p]
    if extra_person:  # a second person must be ignored (people[0] is used)
        people.append({key: [5.0] * (3 * n) for key, n in PARTS})
    return {"version": 1.3, "people": people}, np.concatenate(expected)


def write_openpose_clip(
    folder: Path,
    n_frames: int,
    *,
    seed: int,
    prefix: str = "clip",
    empty_frames: Sequence[int] = (),
    missing_parts: Iterable[str] = (),
) -> np.ndarray:
    """Write ``<prefix>_<frame:012d>_keypoints.json`` for frames 0..n-1 (in
    reverse order, so a loader must sort); return the expected (n, 274)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_frames):
        frame, expected = openpose_frame(
            rng, person=i not in empty_frames, missing_parts=missing_parts, extra_person=(i == 1)
        )
        frames.append((i, frame, expected))
    for i, frame, _ in reversed(frames):
        (folder / f"{prefix}_{i:012d}_keypoints.json").write_text(json.dumps(frame))
    (folder / "notes.txt").write_text("not a keypoints file")
    return np.stack([e for _, _, e in frames])


def write_imigue(root: Path, clips: Sequence[tuple[str, int, int]], *, header: bool = True) -> dict[str, np.ndarray]:
    """Clip folders under ``root`` and ``root/labels.csv``; ``clips`` = (name, iMiGUE id, frames)."""
    expected = {}
    for k, (name, _, n_frames) in enumerate(clips):
        expected[name] = write_openpose_clip(
            root / name, n_frames, seed=100 + k, prefix=f"{name}_video", empty_frames=(2,) if n_frames > 3 else ()
        )
    lines = (["clip,label"] if header else []) + [f"{name},{label}" for name, label, _ in clips]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return expected


def write_glove_text(
    path: Path, words: Sequence[str], dim: int, *, seed: int = 0, header: bool = False
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = {w: np.round(rng.normal(size=dim), 5).astype(np.float32) for w in words}
    lines = [f"{len(words)} {dim}"] if header else []
    lines += [w + " " + " ".join(f"{v:.5f}" for v in vec) for w, vec in vectors.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return vectors


EMOTION_ROWS = [
    ("i feel so sad and lonely today", "sadness"),
    ("i am feeling joyful", "joy"),
    ("i feel loved by my friends and family", "love"),
    ("i feel angry", "anger"),
    ("i am scared of the dark", "fear"),
    ("i feel amazed", "surprise"),
    ("i feel really sad", "sadness"),
    ("i feel happy", "joy"),
]


def write_emotion_txt(path: Path, rows: Sequence[tuple[str, str]] = EMOTION_ROWS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{text};{label}\n" for text, label in rows), encoding="utf-8")


def write_emotion_csv(path: Path, rows: Sequence[tuple[str, str]] = EMOTION_ROWS) -> None:
    codes = ["sadness", "joy", "love", "anger", "fear", "surprise"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "text,label\n" + "".join(f"{text},{codes.index(label)}\n" for text, label in rows), encoding="utf-8"
    )
