"""seglearn's smartwatch shoulder-exercise recordings as gesture clips.

The ``seglearn`` package ships ``data/watch_dataset.npy``: 140 recordings (10
subjects x 2 arms x 7 exercises, 20 repetitions each) of a wrist-worn 6-axis
IMU (accelerometer ax, ay, az; gyroscope wx, wy, wz) at 50 Hz, 947-2618
samples long. Each chosen class is one exercise. Each channel is standardised
over the chosen recordings; with ``downsample`` k, each recording becomes the
means of consecutive blocks of k samples; each recording is then cut into
windows of ``window`` samples every ``stride`` samples; each window is then cut to a clip whose
length is drawn uniformly from ``min_length..window`` (``default_rng(sample_seed)``)
and zero-padded at the end, as the study's clips are padded to 150 frames.
Every window carries its recording's id in ``groups``, so a run's splits keep
the windows of one recording on one side (``pipeline.splits``).
"""

from __future__ import annotations

import codecs
import functools
import importlib
import io
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from .base import SequenceData, as_list, opt, package_dir, pad_sequences, require_path

EXERCISES = ("PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW")
CHANNELS = ("ax", "ay", "az", "wx", "wy", "wz")


def _reconstruct():
    # numpy 2 moved numpy.core to numpy._core; the file names the old path
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise ImportError("numpy's multiarray._reconstruct is not available")


class _PlainArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dtypes and builtin containers, nothing else.

    The package's file is a pickle (np.save of a dict in a 0-d object array),
    and unpickling calls whatever the file names. This unpickler resolves only
    the four names that rebuild plain numpy arrays (``_reconstruct``,
    ``ndarray``, ``dtype`` and ``_codecs.encode`` for their byte buffers), so a
    damaged or altered file fails instead of running code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"watch data file names {module}.{name}; only numpy arrays are allowed")
        if name == "_reconstruct":
            return _reconstruct()
        if module == "_codecs":
            return codecs.encode
        return getattr(np, name)


def read_watch_file(path: str | Path) -> dict[str, Any]:
    """The watch data file as {"X": [(n_i, 6) float64], "y", "subject", "side", "y_labels", "X_labels"}."""
    with open(path, "rb") as fh:
        version = npy_format.read_magic(fh)
        if version != (1, 0):
            raise ValueError(f"{path}: unexpected .npy version {version}")
        shape, _, dtype = npy_format.read_array_header_1_0(fh)
        if shape != () or dtype != np.dtype(object):
            raise ValueError(f"{path}: expected a 0-d object array (a pickled dict), got {dtype} {shape}")
        try:
            obj = _PlainArrayUnpickler(io.BytesIO(fh.read()), encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a readable watch data file ({exc})") from exc
    data = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
    if not isinstance(data, dict) or not {"X", "y", "subject", "side", "y_labels"} <= set(data):
        raise ValueError(f"{path}: expected a dict with X, y, subject, side, y_labels")
    x = [np.asarray(a, dtype=np.float64) for a in data["X"]]
    if any(a.ndim != 2 or a.shape[1] != len(CHANNELS) for a in x):
        raise ValueError(f"{path}: every recording must be (n, {len(CHANNELS)})")
    out: dict[str, Any] = {
        "X": x,
        "y": np.asarray(data["y"], dtype=np.int64),
        "subject": np.asarray(data["subject"]),
        "side": np.asarray(data["side"]),
        "y_labels": tuple(str(s) for s in data["y_labels"]),
    }
    if not len(out["y"]) == len(x) == len(out["subject"]) == len(out["side"]):
        raise ValueError(f"{path}: X, y, subject and side differ in length")
    return out


@functools.lru_cache(maxsize=2)
def _read_cached(path: str) -> dict[str, Any]:
    return read_watch_file(path)


def watch_file(root_value: Any) -> Path:
    if root_value:
        how = "Point dataset.root at seglearn's data/watch_dataset.npy (pip install seglearn==1.2.5)."
        return require_path(root_value, "seglearn watch data file", how, "dataset.root")
    return package_dir("seglearn", "data", "watch_dataset.npy")


STANDARDIZE = ("dataset", "recording", "none")

# Recordings of the second arm (side 1) and of the first are mirror images: the watch's x axis points the
# other way along the forearm (mean ax +0.59 vs -0.65 in the file's units) while y and z agree. Reflecting
# x negates ax and, the angular velocity being an axial vector, wy and wz (measured: the correlations of
# wx with wy and with wz change sign between the arms, that of wy with wz does not).
MIRROR_SIGNS = {"ax": -1.0, "ay": 1.0, "az": 1.0, "wx": 1.0, "wy": -1.0, "wz": -1.0}


def channel_columns(channels: Any) -> list[int]:
    """Column indices of the chosen channels (null = all six, in the file's order)."""
    names = [str(c) for c in as_list(channels)] if channels is not None else list(CHANNELS)
    unknown = [c for c in names if c not in CHANNELS]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"dataset.channels={names}: pick distinct channels among {list(CHANNELS)}")
    return [CHANNELS.index(c) for c in names]


def standardize_modes(how: Any, names: list[str]) -> list[str]:
    """One mode per chosen channel: ``how`` names one mode for all channels or maps each channel to one."""
    if isinstance(how, Mapping):
        missing = [c for c in names if c not in how]
        extra = [str(c) for c in how if c not in names]
        if missing or extra:
            raise ValueError(
                f"dataset.standardize names channels {sorted(str(c) for c in how)}; it must name each chosen "
                f"channel once ({names})"
            )
        modes = [how[c] for c in names]
    else:
        modes = [how] * len(names)
    modes = [{True: "dataset", False: "none"}.get(m, m) for m in modes]
    bad = [m for m in modes if m not in STANDARDIZE]
    if bad:
        raise ValueError(f"dataset.standardize={bad[0]!r}; allowed: {', '.join(STANDARDIZE)} (or true / false)")
    return modes


def standardize(recordings: list[np.ndarray], how: Any, names: list[str] | None = None) -> list[np.ndarray]:
    """Each channel to mean 0, std 1: over all chosen recordings (``dataset``; also ``true``), over each
    recording on its own (``recording``), or not at all (``none``; also ``false``). ``how`` is one mode for
    every channel or a mapping from each channel name (``names``, in column order) to its mode."""
    names = names if names is not None else [str(i) for i in range(recordings[0].shape[1])]
    modes = np.asarray(standardize_modes(how, names))
    stacked = np.concatenate(recordings)
    pooled_mean, pooled_std = stacked.mean(0), stacked.std(0)
    out = []
    for rec in recordings:
        mean = np.where(modes == "recording", rec.mean(0), np.where(modes == "dataset", pooled_mean, 0.0))
        std = np.where(modes == "recording", rec.std(0), np.where(modes == "dataset", pooled_std, 1.0))
        out.append((rec - mean) / np.where(std > 0, std, 1.0))
    return out


def mirror_second_arm(recordings: list[np.ndarray], sides: np.ndarray, names: list[str]) -> list[np.ndarray]:
    """The second arm's recordings (side 1) reflected into the first arm's frame (``MIRROR_SIGNS``)."""
    signs = np.array([MIRROR_SIGNS[c] for c in names])
    return [rec * signs if side == 1 else rec for rec, side in zip(recordings, sides)]


def from_clip_start(clip: np.ndarray, columns: list[int]) -> np.ndarray:
    """The clip with the given columns expressed as their change since its first slice."""
    out = clip.copy()
    out[:, columns] -= clip[0, columns]
    return out


def relative_columns(value: Any, names: list[str]) -> list[int]:
    """Column indices of ``dataset.from_clip_start``'s channels among the chosen ones."""
    chosen = [str(c) for c in as_list(value)]
    unknown = [c for c in chosen if c not in names]
    if unknown or len(set(chosen)) != len(chosen):
        raise ValueError(f"dataset.from_clip_start={chosen}: pick distinct channels among the chosen ones ({names})")
    return [names.index(c) for c in chosen]


def load_watch(cfg: Mapping[str, Any]) -> SequenceData:
    classes = [str(c) for c in as_list(opt(cfg, "classes", list(EXERCISES)))]
    class_names = tuple(str(c) for c in as_list(opt(cfg, "class_names", classes)))
    if len(class_names) != len(classes):
        raise ValueError(
            f"dataset {opt(cfg, 'name', 'watch')!r}: {len(classes)} classes but {len(class_names)} class_names"
        )
    window = int(opt(cfg, "window", 150))
    downsample = int(opt(cfg, "downsample", 1))
    stride = int(opt(cfg, "stride", 25))
    min_length = int(opt(cfg, "min_length", window))
    time_slices = int(opt(cfg, "time_slices", window))
    if stride < 1 or window < 1 or downsample < 1:
        raise ValueError("dataset.window, dataset.stride and dataset.downsample must be >= 1")
    if not 1 <= min_length <= window:
        raise ValueError(f"dataset.min_length={min_length} must be in 1..window ({window})")
    raw = _read_cached(str(watch_file(opt(cfg, "root"))))
    unknown = [c for c in classes if c not in raw["y_labels"]]
    if unknown:
        raise ValueError(
            f"dataset.classes: {unknown} are not exercises of the watch data; allowed: {list(raw['y_labels'])}"
        )
    chosen = [
        (r, classes.index(raw["y_labels"][raw["y"][r]]))
        for r in range(len(raw["X"]))
        if raw["y_labels"][raw["y"][r]] in classes
    ]
    chosen.sort(key=lambda rc: (rc[1], rc[0]))  # class order, then file order

    columns = channel_columns(opt(cfg, "channels"))
    names = [CHANNELS[c] for c in columns]
    recordings = [raw["X"][r][:, columns] for r, _ in chosen]
    if opt(cfg, "mirror_second_arm", False):
        recordings = mirror_second_arm(recordings, raw["side"][[r for r, _ in chosen]], names)
    recordings = standardize(recordings, opt(cfg, "standardize", True), names)
    if downsample > 1:  # block means: a low-pass before decimation, no aliasing of the 50 Hz signal
        recordings = [
            rec[: len(rec) // downsample * downsample].reshape(-1, downsample, rec.shape[1]).mean(1)
            for rec in recordings
        ]
    relative = relative_columns(opt(cfg, "from_clip_start"), names)
    rng = np.random.default_rng(int(opt(cfg, "sample_seed", 0)))
    clips, ys, groups = [], [], []
    for (rec_id, k), rec in zip(chosen, recordings):
        for start in range(0, len(rec) - window + 1, stride):
            clips.append(
                from_clip_start(rec[start : start + window], relative) if relative else rec[start : start + window]
            )
            ys.append(k)
            groups.append(rec_id)
    clip_lengths = rng.integers(min_length, window + 1, size=len(clips))
    clips = [c[:n] for c, n in zip(clips, clip_lengths)]
    x, lengths = pad_sequences(clips, time_slices, n_features=len(columns))
    return SequenceData(
        x=x,
        y=np.asarray(ys, dtype=np.int64),
        class_names=class_names,
        lengths=lengths,
        source=str(opt(cfg, "source", "gesture")),
        name=str(opt(cfg, "name", "watch")),
        groups=np.asarray(groups, dtype=np.int64),
    )
