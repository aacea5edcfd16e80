"""The planning-time checks of data files (pipeline/data/checks.py) accept every file the loaders read
(each loaded for real here) and refuse a damaged one naming the key; the bad-input table in
test_reliability.py checks that a run plan refuses them before any folder exists."""

import gzip
import json

import numpy as np
import pandas as pd
import pytest

from pipeline.data import DataNotFoundError, load_dataset
from pipeline.data.checks import DataFileError, check_dataset_files
from tests.fixtures_data import EMOTION_ROWS, write_emotion_csv, write_emotion_txt, write_glove_text, write_imigue

CLIPS = [("c1", 99, 5), ("c2", 20, 4), ("c3", 1, 6), ("c4", 23, 3), ("c5", 12, 5), ("c6", 3, 4)]
IMIGUE = {"name": "imigue", "source": "gesture", "loader": "imigue", "time_slices": 6, "n_classes": 6}
EMOTION = {"name": "emotion", "source": "sentence", "loader": "emotion", "splits": ["train"], "n_classes": 6}


def _glove(tmp_path, *, header=False):
    words = sorted({w for text, _ in EMOTION_ROWS for w in text.split()})
    path = tmp_path / "glove.txt"
    write_glove_text(path, words, 4, header=header)
    return str(path)


@pytest.mark.parametrize("header", [True, False])
def test_openpose_folders_with_a_labels_csv_pass_and_load(tmp_path, header):
    write_imigue(tmp_path / "imigue", CLIPS, header=header)
    cfg = {**IMIGUE, "root": str(tmp_path / "imigue")}
    check_dataset_files(cfg)
    assert load_dataset(cfg, cache=False).n_classes == 6


def test_an_npz_passes_and_loads_and_an_object_array_is_refused(tmp_path):
    labels = np.array([label for _, label, _ in CLIPS])
    np.savez(tmp_path / "pre.npz", keypoints=np.ones((6, 8, 274), np.float32), label=labels)
    cfg = {**IMIGUE, "root": str(tmp_path / "pre.npz")}
    check_dataset_files(cfg)
    assert len(load_dataset(cfg, cache=False).y) == 6
    np.savez(tmp_path / "bad.npz", keypoints=np.ones((6, 8, 274), np.float32), label=labels.astype(object))
    with pytest.raises(DataFileError, match="dataset.root.*pickled"):
        check_dataset_files({**IMIGUE, "root": str(tmp_path / "bad.npz")})
    # the loader refuses it too (allow_pickle=False): the check only says so earlier
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_dataset({**IMIGUE, "root": str(tmp_path / "bad.npz")}, cache=False)
    np.savez(tmp_path / "wide.npz", keypoints=np.ones((6, 8, 10), np.float32), label=labels)
    with pytest.raises(DataFileError, match="274"):
        check_dataset_files({**IMIGUE, "root": str(tmp_path / "wide.npz")})


def _emotion_files():
    """Each emotion file type the loader reads: (file name, writer)."""

    def parquet(path):
        pd.DataFrame({"text": [t for t, _ in EMOTION_ROWS], "label": [label for _, label in EMOTION_ROWS]}).to_parquet(
            path
        )

    def jsonl(path, opener=open):
        with opener(path, "wt", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"text": t, "label": label}) + "\n" for t, label in EMOTION_ROWS)

    def tsv(path):
        path.write_text("text\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in EMOTION_ROWS))

    return {
        "train.txt": write_emotion_txt,
        "train.csv": write_emotion_csv,
        "train.tsv": tsv,
        "train.parquet": parquet,
        "train.jsonl": jsonl,
        "train.jsonl.gz": lambda path: jsonl(path, gzip.open),
    }


@pytest.mark.parametrize(
    "name", ["train.txt", "train.csv", "train.tsv", "train.parquet", "train.jsonl", "train.jsonl.gz"]
)
@pytest.mark.parametrize("glove_header", [False, True])
def test_every_emotion_file_type_passes_and_loads(tmp_path, name, glove_header):
    _emotion_files()[name](_mk(tmp_path / "emotion") / name)
    cfg = {**EMOTION, "root": str(tmp_path / "emotion"), "embeddings": _glove(tmp_path, header=glove_header)}
    check_dataset_files(cfg)
    assert load_dataset(cfg, cache=False).n_classes == 6


def _mk(folder):
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("train.txt", b"no label here\n", "text;label"),
        ("train.csv", b"sentence,emotion\nhi,joy\n", "text,label"),
        ("train.parquet", b"text,label\n", "parquet"),
        ("train.jsonl", b"[1, 2]\n", "JSON objects"),
        ("train.txt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "not UTF-8"),
        ("train.txt", b"\n\n", "empty"),
    ],
)
def test_a_damaged_emotion_file_is_refused_naming_the_key(tmp_path, name, content, match):
    (_mk(tmp_path / "emotion") / name).write_bytes(content)
    with pytest.raises(DataFileError, match=match) as err:
        check_dataset_files({**EMOTION, "root": str(tmp_path / "emotion"), "embeddings": _glove(tmp_path)})
    assert "dataset.root" in str(err.value)


def test_missing_files_name_the_key_and_where_to_get_them(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        check_dataset_files({**IMIGUE, "root": str(tmp_path / "none")})
    assert "iMiGUE" in str(err.value) and "dataset.root" in str(err.value)
    write_emotion_txt(tmp_path / "emotion" / "train.txt")
    with pytest.raises(DataNotFoundError) as err:
        check_dataset_files({**EMOTION, "root": str(tmp_path / "emotion"), "embeddings": str(tmp_path / "g.txt")})
    assert "dataset.embeddings" in str(err.value) and "glove.6B.zip" in str(err.value)


def test_the_installed_data_sets_pass():
    for cfg in (
        {"loader": "watch"},
        {"loader": "ucr", "ucr_name": "CricketX"},
        {"loader": "ucr", "ucr_name": "AllGestureWiimoteX"},
        {"loader": "bbc_news", "embeddings": "glove6b50d_package"},
    ):
        check_dataset_files(cfg)


def test_a_ucr_file_damaged_past_its_first_line_passes_the_check_and_fails_at_load(tmp_path):
    # the check reads the first line only (planning stays cheap); the run's load finds the rest
    for split in ("TRAIN", "TEST"):
        (tmp_path / f"CricketX_{split}.tsv").write_text("1\t0.5\t0.25\nnot\ta\tnumber\n")
    cfg = {"loader": "ucr", "ucr_name": "CricketX", "root": str(tmp_path), "classes": [1], "class_names": ["a"]}
    check_dataset_files(cfg)
    with pytest.raises(ValueError):
        load_dataset(cfg, cache=False)
