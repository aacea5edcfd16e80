"""The 6-label emotion corpus of the study (dair-ai "emotion", Saravia et al.
2018), from local files a user supplies.

Class order is the data set's label coding: 0 sadness, 1 joy, 2 love, 3 anger,
4 fear, 5 surprise. For each name in ``splits`` the loader reads the first of
``<root>/<split>.txt`` (lines ``text;label``, label = emotion word),
``<split>.csv`` / ``<split>.tsv`` (header with ``text`` and ``label``, label =
0..5 or the word), ``<split>.parquet`` (columns ``text``, ``label``) or
``<split>.jsonl[.gz]`` (objects with ``text``, ``label``). ``root`` may also be
one such file, or a folder that Hugging Face ``datasets`` wrote: a ``save_to_disk``
folder, its cache, or the Hub's download cache of the corpus (``hf_files``; the
split ``val`` is found as ``validation`` there). Sentences are tokenised with ``basic_english``, embedded with
GloVe (default: the 300-d text file of the study), unknown tokens -> zero, and
zero-padded to the longest sentence (``time_slices: null``, 66 tokens for the
16,000 training sentences) or cut / padded to ``time_slices``.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import glove
from .base import DataNotFoundError, SequenceData, as_list, opt, require_path, seeded_subsample
from .hf_files import hf_rows, hf_split_files
from .text import basic_english, embed_token_lists

EMOTION_CLASSES = ("sadness", "joy", "love", "anger", "fear", "surprise")
EXTENSIONS = (".txt", ".csv", ".tsv", ".parquet", ".jsonl", ".jsonl.gz")
EMOTION_HOW = (
    "Obtain the emotion corpus (dair-ai/emotion, https://huggingface.co/datasets/dair-ai/emotion, "
    "or the text files train.txt / val.txt / test.txt with lines `text;label`, e.g. "
    "https://www.kaggle.com/datasets/praveengovi/emotions-dataset-for-nlp) and put the files in "
    "data/emotion/ (relative to where you run); or set dataset.root to a folder that Hugging Face "
    "datasets wrote (save_to_disk, or its cache, e.g. ~/.cache/huggingface/datasets/dair-ai___emotion)."
)


def _label(value: Any, where: str) -> int:
    if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        k = int(value)
        if 0 <= k < len(EMOTION_CLASSES):
            return k
    elif isinstance(value, str) and value.strip().lower() in EMOTION_CLASSES:
        return EMOTION_CLASSES.index(value.strip().lower())
    raise ValueError(f"{where}: label {value!r} is neither 0..5 nor one of {EMOTION_CLASSES}")


def _rows(path: Path) -> Iterator[tuple[str, Any, str]]:
    name = path.name.lower()
    if name.endswith((".arrow", ".parquet")):
        yield from hf_rows(path)
    elif name.endswith(".txt"):
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\n").rstrip("\r")
                if not line.strip():
                    continue
                if ";" not in line:
                    raise ValueError(f"{path}:{lineno}: expected `text;label`")
                text, label = line.rsplit(";", 1)
                yield text, label, f"{path}:{lineno}"
    elif name.endswith((".csv", ".tsv")):
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if name.endswith(".tsv") else ",")
            if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
                raise ValueError(f"{path}: needs a header with the columns text,label")
            for lineno, row in enumerate(reader, 2):
                yield row["text"], row["label"], f"{path}:{lineno}"
    elif name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    obj = json.loads(line)
                    yield obj["text"], obj["label"], f"{path}:{lineno}"
    else:
        raise ValueError(f"{path}: unknown emotion file type (use one of {EXTENSIONS})")


def emotion_files(root_value: Any, splits: list[str]) -> list[Path]:
    root = require_path(root_value or "data/emotion", "Emotion corpus", EMOTION_HOW, "dataset.root")
    if root.is_file():
        return [root]
    files = []
    for split in splits:
        found = next((root / f"{split}{ext}" for ext in EXTENSIONS if (root / f"{split}{ext}").is_file()), None)
        shards = [found] if found is not None else hf_split_files(root, split)
        if not shards:
            raise DataNotFoundError(
                f"Emotion corpus split {split!r} not found in {root} (looked for {split}{{{','.join(EXTENSIONS)}}} "
                f"and for a Hugging Face datasets folder holding it). {EMOTION_HOW} Or set "
                f"dataset.root=<folder> / dataset.splits=[...]."
            )
        files.extend(shards)
    return files


def load_emotion(cfg: Mapping[str, Any]) -> SequenceData:
    splits = [str(s) for s in as_list(opt(cfg, "splits", ["train"]))]
    files = emotion_files(opt(cfg, "root"), splits)
    spec = str(opt(cfg, "embeddings", "data/glove/glove.6B.300d.txt"))
    if spec != glove.PACKAGE_SPEC:  # fail before the corpus is read
        require_path(spec, "GloVe vectors", glove.GLOVE_HOW, "dataset.embeddings")
    min_tokens = int(opt(cfg, "min_tokens", 1))
    token_lists, ys = [], []
    for path in files:
        for text, label, where in _rows(path):
            tokens = basic_english(text)
            if len(tokens) >= min_tokens:
                token_lists.append(tokens)
                ys.append(_label(label, where))
    if not token_lists:
        raise ValueError(f"Emotion corpus: no sentences in {[str(f) for f in files]}")
    y = np.asarray(ys, dtype=np.int64)

    per_class = opt(cfg, "per_class")
    if per_class is not None:
        chosen = seeded_subsample(
            [np.flatnonzero(y == k) for k in range(len(EMOTION_CLASSES))],
            int(per_class),
            int(opt(cfg, "sample_seed", 0)),
        )
        keep = np.sort(np.concatenate(chosen))
        token_lists, y = [token_lists[i] for i in keep], y[keep]

    time_slices = opt(cfg, "time_slices")
    time_slices = max(len(t) for t in token_lists) if time_slices is None else int(time_slices)
    index, matrix = glove.embeddings(spec, vocab={t for s in token_lists for t in s})
    x, lengths = embed_token_lists(token_lists, index, matrix, time_slices)
    return SequenceData(
        x=x,
        y=y,
        class_names=EMOTION_CLASSES,
        lengths=lengths,
        source=str(opt(cfg, "source", "sentence")),
        name=str(opt(cfg, "name", "emotion")),
    )
