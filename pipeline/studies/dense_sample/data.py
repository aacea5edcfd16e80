"""The dense-sample data set: 5 glyph tokens (plus, cross, square, circle, triangle) drawn as many
distorted, noisy exemplars, deterministically from a seed with numpy only (the paper's data are not
public; the generator is described in docs/companion_spectra_dense.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES = ("plus", "cross", "square", "circle", "triangle")


def _polygon(points: np.ndarray, closed: bool = True) -> np.ndarray:
    nxt = np.roll(points, -1, axis=0) if closed else points[1:]
    start = points if closed else points[:-1]
    return np.stack([start, nxt], axis=1)


def glyph_strokes() -> list[np.ndarray]:
    """Canonical strokes of the 5 tokens: one (S, 2, 2) array of segment endpoints each."""
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    return [
        np.array([[[-0.7, 0.0], [0.7, 0.0]], [[0.0, -0.7], [0.0, 0.7]]]),
        np.array([[[-0.55, -0.55], [0.55, 0.55]], [[-0.55, 0.55], [0.55, -0.55]]]),
        _polygon(np.array([[-0.6, -0.6], [0.6, -0.6], [0.6, 0.6], [-0.6, 0.6]])),
        _polygon(0.65 * np.stack([np.cos(angles), np.sin(angles)], axis=1)),
        _polygon(np.array([[0.0, 0.7], [-0.65, -0.5], [0.65, -0.5]])),
    ]


@dataclass(frozen=True)
class DenseSample:
    x: np.ndarray  # (N, 1, size, size) float32
    y: np.ndarray  # (N,) int64
    distortion: np.ndarray  # (N,) float64, 0 = undistorted
    class_names: tuple[str, ...]


def _segment_distance(pixels: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """(P, 2) pixel centres, (N, S, 2, 2) segments -> (N, P) distance to the nearest segment."""
    a, b = seg[:, :, 0, :], seg[:, :, 1, :]  # (N, S, 2)
    ab = b - a
    ap = pixels[None, :, None, :] - a[:, None, :, :]  # (N, P, S, 2)
    denom = np.maximum((ab * ab).sum(-1), 1e-12)[:, None, :]  # (N, 1, S)
    t = np.clip((ap * ab[:, None]).sum(-1) / denom, 0.0, 1.0)  # (N, P, S)
    diff = ap - t[..., None] * ab[:, None]
    return np.sqrt((diff * diff).sum(-1)).min(-1)


def generate(
    seed: int = 0,
    per_class: int = 600,
    size: int = 16,
    rotation_deg: float = 25.0,
    scale=(0.75, 1.15),
    shear: float = 0.25,
    translate: float = 0.15,
    stroke=(0.07, 0.13),
    clutter: int = 2,
    noise: float = 0.35,
    chunk: int = 256,
) -> DenseSample:
    """The data set, classes in order (class 0's exemplars first); see the module docstring."""
    if per_class < 1 or size < 4:
        raise ValueError("per_class must be >= 1 and size >= 4")
    rng = np.random.default_rng(seed)
    coords = (np.arange(size) + 0.5) / size * 2 - 1
    gx, gy = np.meshgrid(coords, -coords)  # row 0 at the top
    pixels = np.stack([gx.ravel(), gy.ravel()], axis=1)
    pixel = 2.0 / size
    lo, hi = float(scale[0]), float(scale[1])
    log_span = max(np.log(hi / lo), 1e-12)
    xs, ys, dist = [], [], []
    for label, strokes in enumerate(glyph_strokes()):
        n = per_class
        theta = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg, n))
        common = rng.uniform(lo, hi, n)
        aspect = rng.uniform(lo, hi, (n, 2)) / np.sqrt(lo * hi)
        sx, sy = common * aspect[:, 0], common * aspect[:, 1]
        sh = rng.uniform(-shear, shear, n)
        shift = rng.uniform(-translate, translate, (n, 2))
        width = rng.uniform(stroke[0], stroke[1], n)
        contrast = rng.uniform(0.6, 1.0, n)
        c_on = rng.random((n, clutter)) < 0.5
        c_mid = rng.uniform(-0.8, 0.8, (n, clutter, 2))
        c_ang = rng.uniform(0, np.pi, (n, clutter))
        c_len = rng.uniform(0.3, 0.7, (n, clutter))
        pix_noise = rng.normal(0.0, 1.0, (n, size * size))
        # affine: rotation @ shear @ diag(scale)
        cos, sin = np.cos(theta), np.sin(theta)
        rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (n, 2, 2)
        shr = np.zeros((n, 2, 2))
        shr[:, 0, 0] = shr[:, 1, 1] = 1.0
        shr[:, 0, 1] = sh
        scl = np.zeros((n, 2, 2))
        scl[:, 0, 0], scl[:, 1, 1] = sx, sy
        affine = rot @ shr @ scl
        segs = np.einsum("nij,sej->nsei", affine, strokes) + shift[:, None, None, :]  # (n, S, 2, 2)
        half = 0.5 * c_len[..., None] * np.stack([np.cos(c_ang), np.sin(c_ang)], -1)
        clut = np.stack([c_mid - half, c_mid + half], axis=2)  # (n, K, 2, 2)
        # absent distractors are moved far away (they then never are the nearest segment)
        clut = np.where(c_on[..., None, None], clut, 100.0)
        allsegs = np.concatenate([segs, clut], axis=1) if clutter else segs
        img = np.empty((n, size * size))
        for s in range(0, n, chunk):
            d = _segment_distance(pixels, allsegs[s : s + chunk])
            img[s : s + chunk] = np.clip((width[s : s + chunk, None] - d) / pixel + 0.5, 0.0, 1.0)
        img = img * contrast[:, None] + noise * pix_noise
        xs.append(img.reshape(n, 1, size, size).astype(np.float32))
        ys.append(np.full(n, label, dtype=np.int64))
        parts = [
            np.abs(theta) / max(np.deg2rad(rotation_deg), 1e-12),
            (np.abs(np.log(sx / np.sqrt(lo * hi))) + np.abs(np.log(sy / np.sqrt(lo * hi)))) / (2 * log_span),
            np.abs(sh) / max(shear, 1e-12),
            np.abs(shift).mean(1) / max(translate, 1e-12),
        ]
        dist.append(np.mean(parts, axis=0))
    return DenseSample(np.concatenate(xs), np.concatenate(ys), np.concatenate(dist), CLASS_NAMES)


def split_per_class(y: np.ndarray, train_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Train = the first ``train_per_class`` exemplars of each class, test = the rest (generation order)."""
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        train.append(idx[:train_per_class])
        test.append(idx[train_per_class:])
    return np.concatenate(train), np.concatenate(test)


def distortion_groups(distortion: np.ndarray) -> np.ndarray:
    """``low`` / ``high`` at the median distortion."""
    return np.where(distortion > np.median(distortion), "high", "low")
