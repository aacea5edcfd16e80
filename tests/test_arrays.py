"""Your own data set in the arrays format (pipeline/data/arrays.py): loaded as written, its classes in the
composed config, its file in the run id, and every way a file can be wrong refused at planning, naming the
array and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import ConfigError
from pipeline.data import load_dataset
from pipeline.data.arrays import ArraysFormatError, check_arrays, describe, resolve_field
from pipeline.data.base import DataNotFoundError
from pipeline.identity import run_id
from pipeline.splits import make_splits
from tests.helpers import run_config


def write(path, **arrays):
    np.savez(path, **arrays)
    return path


def toy_arrays(n=60, t=10, f=3, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return {
        "x": rng.normal(size=(n, t, f)).astype(np.float64),  # any numeric dtype; the loader makes float32
        "y": y.astype(np.int32),
        "class_names": np.array(["walk", "run", "jump"][:classes]),
        "lengths": rng.integers(1, t + 1, size=n),
        "groups": np.arange(n) % (10 * classes),  # 30 recordings (2 sequences each), each of one class
    }


def dataset_cfg(path, **extra):
    return {"name": "mine", "source": "gesture", "loader": "arrays", "path": str(path), **extra}


def test_a_file_loads_as_written(tmp_path):
    arrays = toy_arrays()
    path = write(tmp_path / "mine.npz", **arrays)
    data = load_dataset(dataset_cfg(path), cache=False)
    assert data.x.dtype == np.float32 and np.array_equal(data.x, arrays["x"].astype(np.float32))
    assert np.array_equal(data.y, arrays["y"]) and data.y.dtype == np.int64
    assert data.class_names == ("walk", "run", "jump")
    assert np.array_equal(data.lengths, arrays["lengths"]) and np.array_equal(data.groups, arrays["groups"])
    assert data.source == "gesture" and data.name == "mine"


def test_defaults_and_a_cut(tmp_path):
    arrays = toy_arrays()
    path = write(tmp_path / "mine.npz", x=arrays["x"], y=arrays["y"])
    data = load_dataset(dataset_cfg(path, time_slices=4), cache=False)
    assert data.class_names == ("0", "1", "2") and data.groups is None
    assert data.x.shape == (60, 4, 3) and np.array_equal(data.x, arrays["x"][:, :4].astype(np.float32))
    assert (data.lengths == 4).all()  # no lengths given: every sequence is T long, cut to 4


def test_groups_keep_a_recording_on_one_side(tmp_path):
    arrays = toy_arrays(n=120)
    arrays["groups"] = np.arange(120) % 24  # 24 recordings of 5 sequences, each of one class (24 % 3 == 0)
    path = write(tmp_path / "mine.npz", **arrays)
    data = load_dataset(dataset_cfg(path), cache=False)
    picked = np.isin(data.y, (0, 2))
    splits = make_splits(data.x, data.y, (0, 2), np.random.default_rng(1), groups=data.groups)
    assert splits.y_train.size and splits.y_test.size
    # recordings of the test set never appear in training (match sequences by content)
    train_rows = {row.tobytes() for row in splits.x_train}
    test_groups = {int(g) for g, x in zip(data.groups[picked], data.x[picked]) if x.tobytes() not in train_rows}
    train_groups = {int(g) for g, x in zip(data.groups[picked], data.x[picked]) if x.tobytes() in train_rows}
    assert test_groups and not test_groups & train_groups


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: a.pop("y"), "has no array 'y'"),
        (lambda a: a.update(label=a.pop("y")), "no array 'y'; unknown arrays 'label'"),
        (lambda a: a.update(x=a["x"][:, :, 0]), "x in .* is float64 \\(60, 10\\); it must be \\(N, T, F\\) numbers"),
        (
            lambda a: a.update(y=a["y"].astype(float)),
            "y in .* is float64 \\(60,\\); it must be \\(N,\\) = \\(60,\\) integers",
        ),
        (lambda a: a.update(y=a["y"][:-1]), "it must be \\(N,\\) = \\(60,\\) integers"),
        (lambda a: a.update(y=a["y"] + 1), "y in .* holds 1..3; class indices must be 0..2"),
        (lambda a: a.update(y=a["y"] % 2), "classes without sequences: \\['jump'\\]"),
        (lambda a: a.update(y=np.zeros(60, int), class_names=np.array(["walk"])), "at least two classes"),
        (lambda a: a.update(class_names=np.array(["a", "a", "b"])), "repeats a name"),
        (lambda a: a.update(lengths=a["lengths"] * 0), "lengths in .* hold 0..0; they must be 1..T = 1..10"),
        (lambda a: a.update(groups=np.zeros(60, int)), "recording 0 holds sequences of two classes"),
        (lambda a: a.update(class_names=np.array(["a", "b", "c"], dtype=object)), "pickled Python objects"),
    ],
)
def test_a_wrong_file_is_refused_saying_which_array(tmp_path, change, message):
    arrays = toy_arrays()
    change(arrays)
    path = write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ArraysFormatError, match=message):
        check_arrays(dataset_cfg(path))
    with pytest.raises(ConfigError, match="dataset=arrays: dataset.path"):
        resolve_field(str(path), "n_classes")


def test_missing_and_wrong_kinds_of_files(tmp_path):
    with pytest.raises(DataNotFoundError, match="arrays data file not found at .*nope.npz"):
        describe(tmp_path / "nope.npz")
    with pytest.raises(DataNotFoundError, match="is a folder; give the .npz file itself"):
        describe(tmp_path)
    text = tmp_path / "notes.npz"
    text.write_text("x,y\n1,2\n")
    with pytest.raises(ArraysFormatError, match="not a .npz file"):
        describe(text)
    with pytest.raises(DataNotFoundError, match="no path given"):
        describe(None)


def test_non_finite_values_fail_at_load_naming_where(tmp_path):
    arrays = toy_arrays()
    arrays["x"][7, 4, 1] = np.nan
    path = write(tmp_path / "nan.npz", **arrays)
    check_arrays(dataset_cfg(path))  # the headers and labels are fine: the sequences are read by the run
    with pytest.raises(ArraysFormatError, match="NaN or infinite value \\(first at sequence 7, slice 4, feature 1\\)"):
        load_dataset(dataset_cfg(path), cache=False)


def test_the_composed_config_names_the_files_classes_and_the_run_id_its_content(tmp_path):
    path = write(tmp_path / "mine.npz", **toy_arrays())
    overrides = ["dataset=arrays", f"dataset.path={path}", "pair=2", f"paths.root={tmp_path}"]
    cfg = run_config(*overrides)
    assert list(cfg.dataset.class_names) == ["walk", "run", "jump"] and cfg.dataset.n_classes == 3
    assert list(cfg.design.class_names) == ["run", "jump"]  # pair 2 of 3 classes: (1, 2)
    first = run_id(run_config(*overrides))
    assert first == run_id(run_config(*overrides))
    arrays = toy_arrays()
    arrays["x"][0, 0, 0] += 1.0  # one value changed: another data set, another run
    write(path, **arrays)
    assert first != run_id(run_config(*overrides))
    with pytest.raises(ConfigError, match="pair=3: data set arrays has 3 classes, so pair must be in 0..2"):
        run_config("dataset=arrays", f"dataset.path={path}", "pair=3", f"paths.root={tmp_path}")


def test_a_study_declares_its_data_sources_three_here(tmp_path):
    """A data source is config: data_source/<name>.yaml and dataset/default_<name>.yaml in a folder of the
    user's (Hydra's search path); a study lists as many as it likes, and seeds cover their cells in order."""
    path = write(tmp_path / "mine.npz", **toy_arrays())
    conf = tmp_path / "conf"
    for name, text in {
        "study/three.yaml": "name: three\nrunner: sequence\nfactors: [data_source, pair]\n"
        "data_sources: [gesture, sentence, toy]\n",
        "data_source/toy.yaml": "name: toy\nbatch_size: 16\n",
        "dataset/default_toy.yaml": f"defaults:\n  - arrays\n  - _self_\npath: {path}\n",
    }.items():
        (conf / name).parent.mkdir(parents=True, exist_ok=True)
        (conf / name).write_text(text)
    search = f"hydra.searchpath=[file://{conf}]"
    # 15 gesture pairs, 10 sentence pairs, 3 toy pairs: seeds 25..27 are the toy source's pairs
    for seed, source, pair in [(0, "gesture", 0), (24, "sentence", 9), (26, "toy", 1), (28 + 27, "toy", 2)]:
        cfg = run_config(search, "study=three", f"seed={seed}", f"paths.root={tmp_path}")
        assert (cfg.design.data_source, cfg.design.pair, cfg.design.replicate) == (source, pair, seed // 28)
    assert list(cfg.design.class_names) == ["run", "jump"] and cfg.trainer.batch_size == 16
    with pytest.raises(ConfigError, match="data_source=toy is not in study 'headline'"):
        run_config(search, "data_source=toy", f"paths.root={tmp_path}")
