"""Your own data set, no code: one ``.npz`` file in the arrays format (docs/bring_your_own.md, "The arrays format").

The file holds plain numeric arrays (never pickled objects; they are refused):

- ``x``: (N, T, F) numbers, the sequences: T time slices of F features, zero-padded at the end;
- ``y``: (N,) integers 0..C-1, the class of each sequence;
- ``class_names`` (optional): (C,) strings, the name of each class in index order (default ``"0".."C-1"``);
- ``lengths`` (optional): (N,) integers 1..T, the real (unpadded) length of each sequence (default T);
- ``groups`` (optional): (N,) integers, the recording each sequence comes from, where several come from
  one recording; a run's splits keep a recording on one side, and a recording holds one class.

``dataset=arrays dataset.path=my.npz`` reads it for the run's data source (``data_source``). The class names
and class count come from the file when the config is composed (the ``lcm_arrays`` resolver), so class
pairs, the design and config.yaml name the file's classes, and ``dataset.sha256`` (the file's SHA-256) is
part of the run id: a changed file makes new runs, never passes for the old ones. ``check_arrays`` checks
a file's arrays at planning (shapes, types, labels, groups) without reading the sequences; the load checks
that every value is finite. numpy only, like the rest of the data layer.
"""

from __future__ import annotations

import functools
import hashlib
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from .base import DataNotFoundError, SequenceData, opt, require_path

REQUIRED = ("x", "y")
OPTIONAL = ("class_names", "lengths", "groups")
HOW = (
    "The arrays format (docs/bring_your_own.md, 'The arrays format'): np.savez(path, x=(N,T,F) numbers, y=(N,) class "
    "indices 0..C-1, and optionally class_names=(C,) strings, lengths=(N,) real lengths 1..T, groups=(N,) "
    "recording ids)."
)


class ArraysFormatError(ValueError):
    """A data file that exists but is not in the arrays format (the message says which array and why)."""


def arrays_path(cfg: Mapping[str, Any]) -> Path:
    return require_path(opt(cfg, "path"), "arrays data file", HOW, "dataset.path")


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of every array in the .npz, from the headers alone."""
    if not zipfile.is_zipfile(path):
        raise ArraysFormatError(f"dataset.path: {path} is not a .npz file (not a zip archive). {HOW}")
    out = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            name = member[:-4] if member.endswith(".npy") else member
            with archive.open(member) as fh:
                try:
                    version = npy_format.read_magic(fh)
                    read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
                    shape, _, dtype = read(fh)
                except ValueError as exc:
                    raise ArraysFormatError(
                        f"dataset.path: {member} in {path} is not a .npy array ({exc}). {HOW}"
                    ) from None
            out[name] = (tuple(shape), dtype)
    return out


def _check_headers(path: Path, headers: dict) -> None:
    unknown = sorted(set(headers) - set(REQUIRED) - set(OPTIONAL))
    missing = [name for name in REQUIRED if name not in headers]
    if missing or unknown:
        what = (f"no array {', '.join(map(repr, missing))}" if missing else "") + (
            ("; " if missing else "") + f"unknown arrays {', '.join(map(repr, unknown))}" if unknown else ""
        )
        raise ArraysFormatError(f"dataset.path: {path} has {what} (arrays: {', '.join(sorted(headers))}). {HOW}")
    for name, (_, dtype) in headers.items():
        if dtype.hasobject:
            raise ArraysFormatError(
                f"dataset.path: array {name!r} in {path} holds pickled Python objects, which are never loaded; "
                f"save plain arrays (strings as a numpy string array). {HOW}"
            )
    shape, dtype = headers["x"]
    if len(shape) != 3 or min(shape) < 1 or dtype.kind not in "fiub":
        raise ArraysFormatError(f"dataset.path: x in {path} is {dtype} {shape}; it must be (N, T, F) numbers. {HOW}")
    n = shape[0]
    for name in ("y", "lengths", "groups"):
        if name in headers:
            got, kind = headers[name]
            if got != (n,) or kind.kind not in "iu":
                raise ArraysFormatError(
                    f"dataset.path: {name} in {path} is {kind} {got}; it must be (N,) = ({n},) integers. {HOW}"
                )
    if "class_names" in headers:
        got, kind = headers["class_names"]
        if len(got) != 1 or kind.kind not in "US":
            raise ArraysFormatError(
                f"dataset.path: class_names in {path} is {kind} {got}; it must be (C,) strings. {HOW}"
            )


def _small_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array but the sequences (labels, names, lengths, groups)."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in ("y", *OPTIONAL) if name in archive.files}


def _check_labels(path: Path, small: dict, time_slices: int) -> tuple[str, ...]:
    """The class names; raises where labels, lengths or groups are out of range."""
    y = small["y"].astype(np.int64)
    names = small.get("class_names")
    n_classes = len(names) if names is not None else int(y.max()) + 1 if len(y) else 0
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ArraysFormatError(
            f"dataset.path: y in {path} holds {int(y.min())}..{int(y.max())}; class indices must be 0..{n_classes - 1} "
            f"({n_classes} class names). {HOW}"
        )
    counts = np.bincount(y, minlength=n_classes)
    class_names = tuple(str(c) for c in names) if names is not None else tuple(str(c) for c in range(n_classes))
    if n_classes < 2 or (counts == 0).any():
        empty = [class_names[c] for c in np.flatnonzero(counts == 0)]
        raise ArraysFormatError(
            f"dataset.path: {path} needs sequences of at least two classes, each class with one or more "
            f"(classes without sequences: {empty or 'none'}; classes: {n_classes}). {HOW}"
        )
    if len(set(class_names)) != len(class_names):
        raise ArraysFormatError(f"dataset.path: class_names in {path} repeats a name: {list(class_names)}. {HOW}")
    lengths = small.get("lengths")
    if lengths is not None and len(lengths) and (lengths.min() < 1 or lengths.max() > time_slices):
        raise ArraysFormatError(
            f"dataset.path: lengths in {path} hold {int(lengths.min())}..{int(lengths.max())}; they must be 1..T "
            f"= 1..{time_slices}. {HOW}"
        )
    groups = small.get("groups")
    if groups is not None:
        codes, first = np.unique(groups, return_inverse=True)
        per_group = np.full(len(codes), -1)
        per_group[first] = y
        mixed = np.flatnonzero(per_group[first] != y)
        if len(mixed):
            raise ArraysFormatError(
                f"dataset.path: groups in {path}: recording {groups[mixed[0]]} holds sequences of two classes; "
                f"a recording (group) must hold one class. {HOW}"
            )
    return class_names


@functools.lru_cache(maxsize=16)
def _described(path: str, version: tuple[int, ...]) -> dict[str, Any]:
    """The file's header facts, class names and digest (cached per file version: inode, size, times)."""
    file = Path(path)
    headers = _headers(file)
    _check_headers(file, headers)
    class_names = _check_labels(file, _small_arrays(file), headers["x"][0][1])
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    n, t, f = headers["x"][0]
    return {
        "class_names": list(class_names),
        "n_classes": len(class_names),
        "sha256": digest.hexdigest(),
        "shape": [n, t, f],
    }


def describe(path_value: Any) -> dict[str, Any]:
    """Class names, class count, SHA-256 and shape of an arrays file (``ArraysFormatError`` /
    ``DataNotFoundError`` where it is missing or not in the format)."""
    path = arrays_path({"path": path_value})
    if not path.is_file():
        raise DataNotFoundError(f"dataset.path: {path} is a folder; give the .npz file itself. {HOW}")
    stat = os.stat(path)
    return _described(str(path), (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))


def resolve_field(path_value: Any, field: str) -> Any:
    """The ``lcm_arrays`` resolver: ``${lcm_arrays:${.path},class_names}`` in conf/dataset/arrays.yaml. A file
    that is missing or not in the format is a configuration error (pipeline.config.ConfigError, which
    OmegaConf passes on wrapped in its own error), raised when the config is composed, before any run."""
    from ..errors import ConfigError

    if field not in ("class_names", "n_classes", "sha256"):
        raise ConfigError(f"lcm_arrays: unknown field {field!r}; allowed: class_names, n_classes, sha256")
    try:
        return describe(path_value)[field]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"dataset=arrays: {exc}") from None


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("lcm_arrays"):
        OmegaConf.register_new_resolver("lcm_arrays", resolve_field)


def check_arrays(cfg: Mapping[str, Any]) -> None:
    """Planning-time check of an arrays data set's file (headers, labels, groups; the sequences are read by
    the run's load)."""
    facts = describe(opt(cfg, "path"))
    sha = opt(cfg, "sha256")
    if sha is not None and sha != facts["sha256"]:
        raise ArraysFormatError(f"dataset.sha256={sha}: the file {opt(cfg, 'path')} has SHA-256 {facts['sha256']}")


def load_arrays(cfg: Mapping[str, Any]) -> SequenceData:
    """The data set of an arrays file (``dataset.time_slices``, if set, keeps the first T slices)."""
    path = arrays_path(cfg)
    facts = describe(opt(cfg, "path"))
    with np.load(path, allow_pickle=False) as archive:
        x = np.asarray(archive["x"], dtype=np.float32)
        y = archive["y"].astype(np.int64)
        lengths = archive["lengths"].astype(np.int64) if "lengths" in archive.files else None
        groups = archive["groups"].astype(np.int64) if "groups" in archive.files else None
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ArraysFormatError(
            f"dataset.path: x in {path} holds a NaN or infinite value (first at sequence {bad[0]}, slice {bad[1]}, "
            f"feature {bad[2]}); pad with zeros, not NaN. {HOW}"
        )
    if lengths is None:
        lengths = np.full(len(x), x.shape[1], dtype=np.int64)
    cut = opt(cfg, "time_slices")
    if cut is not None and int(cut) < x.shape[1]:
        x = np.ascontiguousarray(x[:, : int(cut)])
        lengths = np.minimum(lengths, int(cut))
    return SequenceData(
        x=x,
        y=y,
        class_names=tuple(facts["class_names"]),
        lengths=lengths,
        source=str(opt(cfg, "source")),
        name=str(opt(cfg, "name", "arrays")),
        groups=groups,
    )
