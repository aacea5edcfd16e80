"""dataset=emotion from the folders Hugging Face `datasets` writes, built here by `datasets` itself:
a save_to_disk folder (all splits, or one), its cache (`load_dataset(..., cache_dir=...)`), and the Hub's
parquet snapshot layout. Each must give exactly what the same sentences give from a text file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.data import EMOTION_CLASSES, load_dataset
from pipeline.data.checks import DataFileError, check_dataset_files
from pipeline.data.text import basic_english
from tests.fixtures_data import EMOTION_ROWS, write_emotion_txt, write_glove_text

datasets = pytest.importorskip("datasets", reason="Hugging Face datasets (a test extra) builds the layouts")

VALIDATION_ROWS = [("i feel calm now", "joy"), ("i feel afraid", "fear")]


def _features(names=EMOTION_CLASSES):
    return datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(names))})


def _dataset(rows, names=EMOTION_CLASSES):
    return datasets.Dataset.from_dict(
        {"text": [t for t, _ in rows], "label": [list(names).index(lab) for _, lab in rows]}, features=_features(names)
    )


def _cfg(root: Path, glove: Path, **extra):
    return {
        "name": "emotion",
        "source": "sentence",
        "loader": "emotion",
        "root": str(root),
        "splits": ["train"],
        "n_classes": 6,
        "class_names": list(EMOTION_CLASSES),
        "embeddings": str(glove),
        "time_slices": None,
        **extra,
    }


@pytest.fixture
def glove(tmp_path):
    words = sorted({t for text, _ in EMOTION_ROWS + VALIDATION_ROWS for t in basic_english(text)})
    path = tmp_path / "glove.tiny.4d.txt"
    write_glove_text(path, words, dim=4)
    return path


@pytest.fixture
def from_text(tmp_path, glove):
    """The reference: the same rows from text files (train.txt, val.txt)."""
    write_emotion_txt(tmp_path / "txt" / "train.txt")
    write_emotion_txt(tmp_path / "txt" / "val.txt", VALIDATION_ROWS)
    return lambda **extra: load_dataset(_cfg(tmp_path / "txt", glove, **extra), cache=False)


def _assert_same(a, b):
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) and np.array_equal(a.lengths, b.lengths)


def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


def test_save_to_disk_folder_of_all_splits(tmp_path, glove, from_text):
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": _dataset(EMOTION_ROWS), "validation": _dataset(VALIDATION_ROWS)}).save_to_disk(
        str(saved)
    )
    _assert_same(load_dataset(_cfg(saved, glove), cache=False), from_text())
    # the text files' `val` is the Hub's `validation`
    both = load_dataset(_cfg(saved, glove, splits=["train", "val"]), cache=False)
    _assert_same(both, from_text(splits=["train", "val"]))
    with pytest.raises(ValueError, match="no split 'test'"):
        load_dataset(_cfg(saved, glove, splits=["test"]), cache=False)


def test_save_to_disk_folder_of_one_split(tmp_path, glove, from_text):
    _dataset(EMOTION_ROWS).save_to_disk(str(tmp_path / "one"))
    _assert_same(load_dataset(_cfg(tmp_path / "one", glove), cache=False), from_text())


def test_datasets_cache_with_class_names_in_another_order(tmp_path, glove, from_text, monkeypatch):
    """The cache `load_dataset` writes (`<name>/<config>/0.0.0/<hash>/<name>-train.arrow`); integer labels are
    read through the class names the files carry, so another name order gives the same classes."""
    _offline(monkeypatch, tmp_path)
    source = tmp_path / "src" / "emotion" / "split"
    source.mkdir(parents=True)
    alphabetical = sorted(EMOTION_CLASSES)
    _dataset(EMOTION_ROWS, alphabetical).to_parquet(str(source / "train-00000-of-00001.parquet"))
    cache = tmp_path / "cache"
    datasets.load_dataset(str(source.parent), data_dir="split", cache_dir=str(cache))
    arrows = list(cache.rglob("emotion-train.arrow"))
    assert len(arrows) == 1 and (arrows[0].parent / "dataset_info.json").is_file()
    _assert_same(load_dataset(_cfg(cache, glove), cache=False), from_text())
    check_dataset_files(_cfg(cache, glove))
    # the Hub's download cache holds the parquet files themselves (<config>/<split>-NNNNN-of-NNNNN.parquet)
    snapshot = tmp_path / "hub" / "datasets--dair-ai--emotion" / "snapshots" / "0123abc"
    (snapshot / "split").mkdir(parents=True)
    (source / "train-00000-of-00001.parquet").rename(snapshot / "split" / "train-00000-of-00001.parquet")
    _assert_same(load_dataset(_cfg(tmp_path / "hub", glove), cache=False), from_text())
    check_dataset_files(_cfg(tmp_path / "hub", glove))


def test_two_cached_copies_are_named_not_guessed(tmp_path, glove):
    for config in ("split", "unsplit"):
        folder = tmp_path / "hub" / "snapshots" / "r1" / config
        folder.mkdir(parents=True)
        _dataset(EMOTION_ROWS).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    with pytest.raises(ValueError, match="in 2 folders.*split.*unsplit"):
        load_dataset(_cfg(tmp_path / "hub", glove), cache=False)


def test_a_damaged_arrow_file_is_refused_at_planning(tmp_path, glove):
    saved = tmp_path / "saved"
    _dataset(EMOTION_ROWS).save_to_disk(str(saved))
    data_file = next(saved.glob("*.arrow"))
    data_file.write_bytes(b"not arrow at all")
    with pytest.raises(DataFileError, match="not an Arrow stream"):
        check_dataset_files(_cfg(saved, glove))
