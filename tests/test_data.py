"""The data layer: shipped data sets, the study's file formats on fixtures,
the tokeniser, class pairs, helpful errors. Fast (numpy only, no torch)."""

from __future__ import annotations

import gzip
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from pipeline.data import (
    EMOTION_CLASSES,
    IMIGUE_CLASS_NAMES,
    LOADERS,
    DataNotFoundError,
    SequenceData,
    class_pairs,
    load_dataset,
)
from pipeline.data.glove import load_glove_text
from pipeline.data.imigue import frame_features
from pipeline.data.text import basic_english, basic_english_reference, embed_token_lists, split_sentences

try:
    from tests.fixtures_data import (
        EMOTION_ROWS,
        write_emotion_csv,
        write_emotion_txt,
        write_glove_text,
        write_imigue,
        write_openpose_clip,
    )
except ImportError:  # tests/ on sys.path (rootdir-less runs)
    from fixtures_data import (
        EMOTION_ROWS,
        write_emotion_csv,
        write_emotion_txt,
        write_glove_text,  # type: ignore
        write_imigue,
        write_openpose_clip,
    )

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf" / "dataset"


def dataset_cfg(name: str, **overrides):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def training_sequences(n_pair: int, test_fraction: float = 0.2, val_fraction: float = 0.2) -> int:
    """Training sequences of a balanced pair after the run's two 80/20 splits (rounded down)."""
    train_full = n_pair - int(np.ceil(n_pair * test_fraction))
    return train_full - int(np.ceil(train_full * val_fraction))


def assert_well_formed(d: SequenceData, n_features: int, time_slices: int) -> None:
    assert d.x.dtype == np.float32 and d.x.ndim == 3
    assert d.x.shape[1:] == (time_slices, n_features)
    assert d.y.dtype == np.int64 and d.lengths.dtype == np.int64
    assert d.x.shape[0] == d.y.shape[0] == d.lengths.shape[0]
    assert np.isfinite(d.x).all()
    assert d.lengths.min() >= 1 and d.lengths.max() <= time_slices
    after_end = np.arange(time_slices)[None, :] >= d.lengths[:, None]
    assert not np.abs(d.x[after_end]).any(), "padding must be zeros at the end"


# ------------------------------------------------------------------------------------------ class pairs


def test_class_pairs_order():
    pairs = class_pairs(6)
    assert len(pairs) == 15 and pairs[0] == (0, 1) and pairs[4] == (0, 5) and pairs[5] == (1, 2)
    assert pairs[-1] == (4, 5)
    assert pairs == list(itertools.combinations(range(6), 2))
    assert len(class_pairs(5)) == 10


# ------------------------------------------------------------------------------------------ configs


def test_every_dataset_config_is_complete():
    names = sorted(p.stem for p in CONF.glob("*.yaml") if not p.stem.startswith("default_"))
    assert {"watch", "wiimote", "cricket", "bbc_news", "imigue", "emotion"} <= set(names)
    for name in names:
        cfg = OmegaConf.load(CONF / f"{name}.yaml")
        for key in ("name", "source", "loader", "n_classes", "class_names"):
            assert key in cfg, f"{name}.yaml lacks {key}"
        assert cfg.name == name
        assert cfg.loader in LOADERS
        if OmegaConf.is_interpolation(cfg, "source"):  # `arrays`: a user's file serves the run's data source
            continue
        assert cfg.source in ("gesture", "sentence")
        assert cfg.n_classes == len(cfg.class_names)
    assert tuple(OmegaConf.load(CONF / "emotion.yaml").class_names) == EMOTION_CLASSES
    assert tuple(OmegaConf.load(CONF / "imigue.yaml").class_names) == IMIGUE_CLASS_NAMES


def test_default_configs_compose_with_hydra(tmp_path):
    from hydra import compose, initialize_config_dir

    (tmp_path / "dataset").symlink_to(CONF)
    (tmp_path / "data_source").mkdir()
    for source in ("gesture", "sentence"):
        (tmp_path / "data_source" / f"{source}.yaml").write_text(f"name: {source}\n")
    (tmp_path / "config.yaml").write_text(
        "defaults:\n  - data_source: gesture\n  - dataset: default_${data_source}\n  - _self_\n"
    )
    with initialize_config_dir(str(tmp_path), version_base=None):
        assert compose("config").dataset.name == "watch"
        sentence = compose("config", overrides=["data_source=sentence"]).dataset
        assert sentence.name == "bbc_news" and sentence.n_classes == 5


def test_data_layer_does_not_import_torch():
    code = "import sys, pipeline.data; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_config_mismatch_is_an_error():
    with pytest.raises(ValueError, match="n_classes"):
        load_dataset(dataset_cfg("wiimote", n_classes=5), cache=False)
    with pytest.raises(ValueError, match="loader"):
        load_dataset({"name": "x", "source": "gesture", "loader": "nope"})


# ------------------------------------------------------------------------------------------ shipped data


def test_wiimote_default_gesture_set():
    d = load_dataset(dataset_cfg("wiimote"), cache=False)
    assert_well_formed(d, n_features=1, time_slices=150)
    assert d.source == "gesture" and d.name == "wiimote"
    assert d.class_names == ("pick-up", "shake", "move right", "move left", "move up", "move down")
    counts = np.bincount(d.y, minlength=6)
    assert counts.tolist() == [100, 100, 100, 99, 100, 98]
    assert d.lengths.min() >= 20
    for a, b in class_pairs(6):
        assert training_sequences(counts[a] + counts[b]) >= 100
    again = load_dataset(dataset_cfg("wiimote"), cache=False)
    assert np.array_equal(d.x, again.x) and np.array_equal(d.y, again.y)
    assert np.array_equal(d.lengths, again.lengths)


def test_cricket_gesture_set():
    d = load_dataset(dataset_cfg("cricket"))
    assert_well_formed(d, n_features=1, time_slices=150)
    assert np.bincount(d.y).tolist() == [65] * 6  # TRAIN + TEST pooled
    assert (d.lengths == 150).all()  # 300 samples, every 2nd
    assert d.class_names[0] == "Cancel Call"


def test_bbc_news_default_sentence_set():
    d = load_dataset(dataset_cfg("bbc_news"), cache=False)
    assert_well_formed(d, n_features=50, time_slices=40)
    assert d.source == "sentence"
    assert d.class_names == ("business", "entertainment", "politics", "sports", "tech")
    assert np.bincount(d.y).tolist() == [1300] * 5
    assert d.lengths.min() >= 5
    # a pair of 2 x 1300 gives at least 1,664 training sentences: 7 updates per epoch at batch 256
    assert training_sequences(2600) == 1664 > 6 * 256
    # nearly every real token has a GloVe vector (unknown -> zero vector)
    inside = np.arange(40)[None, :] < d.lengths[:, None]
    zero_tokens = (np.abs(d.x).sum(2) == 0) & inside
    assert zero_tokens.sum() / inside.sum() < 0.05
    again = load_dataset(dataset_cfg("bbc_news"), cache=False)
    assert np.array_equal(d.x, again.x) and np.array_equal(d.y, again.y)
    other = load_dataset(dataset_cfg("bbc_news", sample_seed=1), cache=False)
    assert not np.array_equal(d.x, other.x)


def test_cache_returns_the_same_read_only_data():
    a = load_dataset(dataset_cfg("wiimote"))
    b = load_dataset(dict(OmegaConf.to_container(dataset_cfg("wiimote"))))
    assert a is b
    with pytest.raises(ValueError):
        a.x[0, 0, 0] = 1.0


# ------------------------------------------------------------------------------------------ text


@pytest.mark.parametrize(
    "text, tokens",
    [
        (
            "You can now install TorchText using pip!",
            ["you", "can", "now", "install", "torchtext", "using", "pip", "!"],
        ),
        ("Don't stop", ["don", "'", "t", "stop"]),
        ('He said "Hi, there" (twice).', ["he", "said", "hi", ",", "there", "(", "twice", ")", "."]),
        ("a;b:c<br />d? E", ["a", "b", "c", "d", "?", "e"]),
        ("Profit rose 1.13bn\tto  $2", ["profit", "rose", "1", ".", "13bn", "to", "$2"]),
    ],
)
def test_basic_english(text, tokens):
    assert basic_english(text) == tokens
    assert basic_english_reference(text) == tokens


def test_basic_english_matches_the_regex_reference():
    rng = np.random.default_rng(0)
    alphabet = list("abcXYZ '\".,()!?;:<br />\t\n-$1") + ["<br />"]
    for _ in range(300):
        s = "".join(rng.choice(alphabet, size=rng.integers(0, 40)))
        assert basic_english(s) == basic_english_reference(s), s


def test_split_sentences():
    para = 'Sales rose 2% to $11.1bn. "We are pleased," he said. Really? Yes! it was the U.S. market (again.) Done'
    assert split_sentences(para) == [
        "Sales rose 2% to $11.1bn.",
        '"We are pleased," he said.',
        "Really?",
        "Yes! it was the U.S. market (again.)",
        "Done",
    ]
    assert split_sentences("   ") == []


def test_embed_token_lists_unknown_zero_and_padding():
    index = {"a": 0, "b": 1}
    matrix = np.array([[1, 2], [3, 4]], dtype=np.float32)
    x, lengths = embed_token_lists([["a", "zzz", "b"], ["b", "a", "a", "b"]], index, matrix, time_slices=3)
    assert lengths.tolist() == [3, 3]
    assert x[0].tolist() == [[1, 2], [0, 0], [3, 4]]
    assert x[1].tolist() == [[3, 4], [1, 2], [1, 2]]


# ------------------------------------------------------------------------------------------ GloVe text


def test_glove_text_loader(tmp_path):
    vectors = write_glove_text(tmp_path / "g.txt", ["the", "cat", ",", "sat"], dim=6)
    index, matrix = load_glove_text(tmp_path / "g.txt")
    assert matrix.shape == (4, 6) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix[index["cat"]], vectors["cat"], rtol=1e-6)
    index, matrix = load_glove_text(tmp_path / "g.txt", vocab={"sat", "dog"})
    assert set(index) == {"sat"} and matrix.shape == (1, 6)
    # word2vec-style header and gzip
    write_glove_text(tmp_path / "h.txt", ["x", "y"], dim=3, header=True)
    with open(tmp_path / "h.txt", "rb") as f, gzip.open(tmp_path / "h.txt.gz", "wb") as g:
        g.write(f.read())
    index, matrix = load_glove_text(tmp_path / "h.txt.gz")
    assert set(index) == {"x", "y"} and matrix.shape == (2, 3)
    (tmp_path / "bad.txt").write_text("a 1 2 3\nb 1 2\n")
    with pytest.raises(ValueError, match="expected 3"):
        load_glove_text(tmp_path / "bad.txt")


# ------------------------------------------------------------------------------------------ emotion


def _emotion_cfg(root: Path, glove: Path, **extra):
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


def test_emotion_loader_txt_and_csv(tmp_path):
    words = sorted({t for text, _ in EMOTION_ROWS for t in basic_english(text)} - {"lonely"})
    vectors = write_glove_text(tmp_path / "glove" / "glove.tiny.4d.txt", words, dim=4)
    write_emotion_txt(tmp_path / "txt" / "train.txt")
    d = load_dataset(_emotion_cfg(tmp_path / "txt", tmp_path / "glove" / "glove.tiny.4d.txt"), cache=False)
    longest = max(len(basic_english(t)) for t, _ in EMOTION_ROWS)
    assert_well_formed(d, n_features=4, time_slices=longest)
    assert d.class_names == ("sadness", "joy", "love", "anger", "fear", "surprise")
    assert d.y.tolist() == [0, 1, 2, 3, 4, 5, 0, 1]  # the data set's coding, file order
    np.testing.assert_allclose(d.x[0, 0], vectors["i"], rtol=1e-6)
    assert not d.x[0, 5].any() and d.lengths[0] == 7  # "lonely" is unknown -> zero vector, still a token
    # CSV form with 0..5 labels gives the same data
    write_emotion_csv(tmp_path / "csv" / "train.csv")
    c = load_dataset(_emotion_cfg(tmp_path / "csv", tmp_path / "glove" / "glove.tiny.4d.txt"), cache=False)
    assert np.array_equal(c.x, d.x) and np.array_equal(c.y, d.y)
    # cut / pad to time_slices; per_class sampling
    cut = load_dataset(
        _emotion_cfg(tmp_path / "txt", tmp_path / "glove" / "glove.tiny.4d.txt", time_slices=3), cache=False
    )
    assert cut.x.shape[1] == 3 and cut.lengths.max() == 3
    one = load_dataset(
        _emotion_cfg(tmp_path / "txt", tmp_path / "glove" / "glove.tiny.4d.txt", per_class=1), cache=False
    )
    assert np.bincount(one.y).tolist() == [1] * 6


def test_emotion_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_glove_text(tmp_path / "g.txt", ["i", "feel"], dim=2)
    pq.write_table(
        pa.table(
            {"text": [t for t, _ in EMOTION_ROWS], "label": [EMOTION_CLASSES.index(lab) for _, lab in EMOTION_ROWS]}
        ),
        tmp_path / "train.parquet",
    )
    d = load_dataset(_emotion_cfg(tmp_path, tmp_path / "g.txt"), cache=False)
    assert d.y.tolist() == [0, 1, 2, 3, 4, 5, 0, 1]


# ------------------------------------------------------------------------------------------ iMiGUE


def test_openpose_frame_features_layout():
    frame = {
        "people": [
            {
                "pose_keypoints_2d": [float(v) for v in range(75)],
                "face_keypoints_2d": [1.0] * 210,
                "hand_left_keypoints_2d": [],
                "hand_right_keypoints_2d": [2.0] * 63,
            }
        ]
    }
    f = frame_features(frame)
    assert f.shape == (274,)
    assert f[:4].tolist() == [0, 1, 3, 4]  # x0, y0, x1, y1 (confidence 2, 5 dropped)
    assert (f[50:190] == 1).all() and (f[190:232] == 0).all() and (f[232:] == 2).all()
    assert not frame_features({"people": []}).any()


CLIPS = [
    ("c01", 99, 7),
    ("c02", 20, 4),
    ("c03", 1, 6),
    ("c04", 23, 3),
    ("c05", 12, 5),
    ("c06", 3, 8),
    ("c07", 32, 4),
    ("c08", 31, 5),
    ("c09", 11, 3),
]


def _imigue_cfg(root, **extra):
    cfg = OmegaConf.to_container(dataset_cfg("imigue"))
    cfg.update(root=str(root), **extra)
    return cfg


def test_imigue_openpose_folders(tmp_path):
    expected = write_imigue(tmp_path / "imigue", CLIPS)
    d = load_dataset(_imigue_cfg(tmp_path / "imigue", time_slices=6), cache=False)
    assert_well_formed(d, n_features=274, time_slices=6)
    assert d.class_names == ("no gesture", "body", "head", "hand", "body-head", "head-hand")
    # id 32 is in no group: dropped; the others regrouped into the 6 classes, CSV order kept
    assert d.y.tolist() == [0, 1, 2, 3, 4, 5, 1, 5]
    kept = [c for c in CLIPS if c[1] != 32]
    assert d.lengths.tolist() == [min(n, 6) for _, _, n in kept]
    for i, (name, _, n) in enumerate(kept):
        m = min(n, 6)
        np.testing.assert_array_equal(d.x[i, :m], expected[name][:m])  # frames sorted, cut at 6
    assert not d.x[0, 2].any()  # the frame without a person is zeros
    # default 150 time slices: everything zero-padded
    full = load_dataset(_imigue_cfg(tmp_path / "imigue"), cache=False)
    assert full.x.shape == (8, 150, 274) and full.lengths[0] == 7


def test_imigue_npz_and_cache(tmp_path):
    write_imigue(tmp_path / "imigue", CLIPS)
    cache = tmp_path / "cache" / "imigue.npz"
    a = load_dataset(_imigue_cfg(tmp_path / "imigue", time_slices=6, npz_cache=str(cache)), cache=False)
    assert cache.exists()
    for path in (tmp_path / "imigue" / "c01").iterdir():  # the cache is read, not the folders
        path.unlink()
    b = load_dataset(_imigue_cfg(tmp_path / "imigue", time_slices=6, npz_cache=str(cache)), cache=False)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    # a user-made .npz without `length` (inferred from the last non-zero frame)
    labels = np.array([99, 27, 32, 21, 2, 30, 5])
    frames = np.array([4, 10, 3, 2, 1, 9, 8])
    kp = np.zeros((7, 10, 274), dtype=np.float32)
    for i, n in enumerate(frames):
        kp[i, :n] = i + 1.0
    np.savez(tmp_path / "pre.npz", keypoints=kp, label=labels)
    c = load_dataset(_imigue_cfg(tmp_path / "pre.npz", time_slices=8), cache=False)
    assert c.y.tolist() == [0, 3, 1, 2, 4, 5] and c.x.shape == (6, 8, 274)
    assert c.lengths.tolist() == [4, 8, 2, 1, 8, 8]  # inferred from the last non-zero frame, cut at 8


def test_imigue_single_clip_reader_sorts_frames(tmp_path):
    from pipeline.data.imigue import read_openpose_clip

    expected = write_openpose_clip(tmp_path / "clip", 12, seed=3, missing_parts=["face_keypoints_2d"])
    np.testing.assert_array_equal(read_openpose_clip(tmp_path / "clip"), expected)


# ------------------------------------------------------------------------------------------ helpful errors


def test_missing_imigue_says_what_to_do(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset(_imigue_cfg(tmp_path / "absent"), cache=False)
    msg = str(err.value)
    for word in (
        "iMiGUE",
        str(tmp_path / "absent"),
        "github.com/linuxsino/iMiGUE",
        "OpenPose",
        "dataset.root",
        "data/imigue",
    ):
        assert word in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="labels"):
        load_dataset(_imigue_cfg(tmp_path / "empty"), cache=False)


def test_missing_emotion_and_glove_say_what_to_do(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset(_emotion_cfg(tmp_path / "absent", tmp_path / "g.txt"), cache=False)
    msg = str(err.value)
    for word in ("Emotion corpus", "dair-ai/emotion", "train.txt", "data/emotion", "dataset.root"):
        assert word in msg
    write_emotion_txt(tmp_path / "emo" / "train.txt")
    with pytest.raises(DataNotFoundError) as err:
        load_dataset(_emotion_cfg(tmp_path / "emo", tmp_path / "glove.6B.300d.txt"), cache=False)
    msg = str(err.value)
    for word in ("GloVe", "nlp.stanford.edu", "glove.6B.300d.txt", "dataset.embeddings", "glove6b50d_package"):
        assert word in msg
    with pytest.raises(DataNotFoundError, match="split 'val'"):
        load_dataset(_emotion_cfg(tmp_path / "emo", tmp_path / "g.txt", splits=["train", "val"]), cache=False)


# ------------------------------------------------------------------------------------------ watch (seglearn)


def _write_watch_file(path, recordings, labels, y_labels=("PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW"), sides=None):
    """A file in seglearn's format: np.save of a dict of numpy arrays in a 0-d object array."""
    data = {
        "X": [np.asarray(r, dtype=np.float64) for r in recordings],
        "y": np.asarray(labels),
        "subject": np.arange(len(labels)) % 3 + 1,
        "side": np.zeros(len(labels)) if sides is None else np.asarray(sides, dtype=np.float64),
        "y_labels": list(y_labels),
        "X_labels": ["ax", "ay", "az", "wx", "wy", "wz"],
    }
    np.save(path, np.array(data, dtype=object), allow_pickle=True)
    return path


def test_watch_windows_clips_and_recordings(tmp_path):
    rng = np.random.default_rng(0)
    recs = [rng.normal(size=(n, 6)) + k for k, n in enumerate([200, 175, 150, 260, 149, 210])]
    path = _write_watch_file(tmp_path / "watch.npy", recs, [0, 0, 1, 1, 2, 6])
    cfg = {
        "name": "w",
        "source": "gesture",
        "loader": "watch",
        "classes": ["ROW", "PEN", "ABD"],
        "root": str(path),
        "window": 150,
        "stride": 25,
        "min_length": 30,
        "standardize": False,
    }
    d = load_dataset(cfg, cache=False)
    assert_well_formed(d, n_features=6, time_slices=150)
    # windows per recording: (n - 150) // 25 + 1; FEL (label 2) is not chosen; ROW comes first
    expected = {5: 3, 0: 3, 1: 2, 2: 1, 3: 5}
    assert {int(g): int(c) for g, c in zip(*np.unique(d.groups, return_counts=True))} == expected
    assert d.y.tolist() == [0] * 3 + [1] * 5 + [2] * 6
    assert d.class_names == ("ROW", "PEN", "ABD")
    assert d.lengths.min() >= 30 and d.lengths.max() <= 150 and len(set(d.lengths.tolist())) > 5
    # each clip is the start of its window: recording 3's second window starts at sample 25
    w = np.flatnonzero(d.groups == 3)[1]
    n = d.lengths[w]
    np.testing.assert_allclose(d.x[w, :n], recs[3][25 : 25 + n].astype(np.float32))
    full = load_dataset({**cfg, "min_length": 150}, cache=False)
    assert (full.lengths == 150).all()
    std = load_dataset({**cfg, "standardize": True}, cache=False)
    inside = np.arange(150)[None, :] < std.lengths[:, None]
    assert abs(std.x[inside].mean()) < 0.5  # standardised channels (before clipping: mean 0, std 1)
    with pytest.raises(ValueError, match="not exercises"):
        load_dataset({**cfg, "classes": ["ROW", "SQUAT", "ABD"]}, cache=False)


def test_watch_channels_and_standardisation_per_recording(tmp_path):
    """Channel subsets keep those columns in the file's order of names given; `recording` standardises
    each recording by its own mean and std (computed here independently), `dataset` over all of them."""
    rng = np.random.default_rng(1)
    recs = [rng.normal(loc=k, scale=1 + k, size=(n, 6)) for k, n in enumerate([180, 170, 160, 200])]
    path = _write_watch_file(tmp_path / "watch.npy", recs, [0, 0, 1, 1])
    cfg = {"name": "w", "source": "gesture", "loader": "watch", "classes": ["PEN", "ABD"], "root": str(path)}
    cfg.update({"window": 150, "stride": 10, "min_length": 150, "standardize": "none"})
    raw = load_dataset({**cfg, "channels": ["wz", "ax"]}, cache=False)
    assert raw.x.shape[2] == 2
    np.testing.assert_allclose(raw.x[0], recs[0][:150][:, [5, 0]].astype(np.float32))
    per_recording = load_dataset({**cfg, "channels": ["wx", "wy", "wz"], "standardize": "recording"}, cache=False)
    for g, rec in enumerate(recs):
        gyro = rec[:, 3:]
        expected = ((gyro - gyro.mean(0)) / gyro.std(0)).astype(np.float32)
        first = np.flatnonzero(per_recording.groups == g)[1]  # its second window starts at sample 10
        np.testing.assert_allclose(per_recording.x[first], expected[10:160], rtol=1e-5, atol=1e-6)
    pooled = np.concatenate([r[:, 3:] for r in recs])
    over_all = load_dataset({**cfg, "channels": ["wx", "wy", "wz"], "standardize": "dataset"}, cache=False)
    expected = ((recs[2][:, 3:] - pooled.mean(0)) / pooled.std(0)).astype(np.float32)
    np.testing.assert_allclose(over_all.x[np.flatnonzero(over_all.groups == 2)[0]], expected[:150], rtol=1e-5)
    as_before = load_dataset({**cfg, "standardize": True}, cache=False).x  # true: over the data set, as before
    assert np.array_equal(as_before, load_dataset({**cfg, "standardize": "dataset"}, cache=False).x)
    with pytest.raises(ValueError, match="pick distinct channels among"):
        load_dataset({**cfg, "channels": ["wx", "gx"]}, cache=False)
    with pytest.raises(ValueError, match="standardize='subject'; allowed: dataset, recording, none"):
        load_dataset({**cfg, "standardize": "subject"}, cache=False)


def test_watch_standardisation_per_channel_mirror_and_change_since_clip_start(tmp_path):
    """`standardize` as a mapping gives each channel its own mode; `mirror_second_arm` negates ax, wy and wz
    of side-1 recordings before anything else; `from_clip_start` makes the named channels of every clip its
    change since the clip's first slice (zero there), the other channels and the padding untouched.
    Expected values computed here from the raw arrays, independently of the loader."""
    rng = np.random.default_rng(2)
    recs = [rng.normal(loc=k - 1.5, scale=1 + k, size=(n, 6)) for k, n in enumerate([190, 170, 165, 200])]
    path = _write_watch_file(tmp_path / "watch.npy", recs, [0, 1, 0, 1], sides=[0, 1, 1, 0])
    channels = ["wx", "ax", "wz"]
    cfg = {"name": "w", "source": "gesture", "loader": "watch", "classes": ["PEN", "ABD"], "root": str(path)}
    cfg.update({"window": 150, "stride": 5, "min_length": 40, "channels": channels})
    modes = {"wx": "recording", "ax": "dataset", "wz": "none"}
    signs = [{0: 1.0, 1: 1.0}, {0: 1.0, 1: -1.0}, {0: 1.0, 1: -1.0}]  # wx kept, ax and wz negated on side 1
    sides, columns = [0, 1, 1, 0], [3, 0, 5]
    mirrored = [rec[:, columns] * [s[side] for s in signs] for rec, side in zip(recs, sides)]
    pooled = np.concatenate(mirrored)
    expected = []
    for rec in mirrored:
        wx = (rec[:, 0] - rec[:, 0].mean()) / rec[:, 0].std()
        ax = (rec[:, 1] - pooled[:, 1].mean()) / pooled[:, 1].std()
        expected.append(np.stack([wx, ax, rec[:, 2]], axis=1))
    d = load_dataset({**cfg, "standardize": modes, "mirror_second_arm": True}, cache=False)
    for g, rec in enumerate(expected):
        clip = np.flatnonzero(d.groups == g)[2]  # its third window starts at sample 10
        n = d.lengths[clip]
        np.testing.assert_allclose(d.x[clip, :n], rec[10 : 10 + n].astype(np.float32), rtol=1e-5, atol=1e-6)
    unmirrored = load_dataset({**cfg, "standardize": modes}, cache=False)
    side0 = d.groups == 0  # side 0 as recorded (its ax differs only by the pooled statistics)
    assert np.array_equal(d.x[side0][..., [0, 2]], unmirrored.x[side0][..., [0, 2]])
    # ax of a side-1 recording: the pooled standardisation differs, the sign is flipped
    assert (
        np.corrcoef(d.x[d.groups == 1][:, :40, 1].ravel(), unmirrored.x[d.groups == 1][:, :40, 1].ravel())[0, 1] < -0.99
    )
    rel = load_dataset({**cfg, "standardize": modes, "mirror_second_arm": True, "from_clip_start": ["ax"]}, cache=False)
    assert (rel.x[:, 0, 1] == 0).all()
    for clip in range(0, len(rel.y), 7):
        n = rel.lengths[clip]
        np.testing.assert_allclose(rel.x[clip, :n, 1], d.x[clip, :n, 1] - d.x[clip, 0, 1], atol=1e-6)
        assert np.array_equal(rel.x[clip, :, [0, 2]], d.x[clip, :, [0, 2]])
        assert (rel.x[clip, n:] == 0).all()
    with pytest.raises(ValueError, match=r"must name each chosen channel once \(\['wx', 'ax', 'wz'\]\)"):
        load_dataset({**cfg, "standardize": {"wx": "recording", "ax": "dataset"}}, cache=False)
    with pytest.raises(ValueError, match="standardize='per_subject'; allowed: dataset, recording, none"):
        load_dataset({**cfg, "standardize": {**modes, "wz": "per_subject"}}, cache=False)
    with pytest.raises(ValueError, match="from_clip_start=\\['ay'\\]: pick distinct channels among the chosen"):
        load_dataset({**cfg, "from_clip_start": ["ay"]}, cache=False)


def test_watch_file_that_names_other_code_is_refused(tmp_path):
    """The reader unpickles plain numpy arrays only: anything else fails without running."""
    marker = tmp_path / "was_run"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    np.save(tmp_path / "evil.npy", np.array({"X": [Payload()], "y": np.zeros(1)}, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="only numpy arrays are allowed"):
        load_dataset(
            {
                "name": "w",
                "source": "gesture",
                "loader": "watch",
                "root": str(tmp_path / "evil.npy"),
                "classes": ["PEN"],
            },
            cache=False,
        )
    assert not marker.exists()
    good = _write_watch_file(tmp_path / "ok.npy", [np.zeros((160, 6))], [0]).read_bytes()
    (tmp_path / "cut.npy").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a readable watch data file"):
        load_dataset(
            {
                "name": "w",
                "source": "gesture",
                "loader": "watch",
                "root": str(tmp_path / "cut.npy"),
                "classes": ["PEN"],
            },
            cache=False,
        )
    np.save(tmp_path / "plain.npy", np.zeros((3, 6)))
    with pytest.raises(ValueError, match="0-d object array"):
        load_dataset(
            {
                "name": "w",
                "source": "gesture",
                "loader": "watch",
                "root": str(tmp_path / "plain.npy"),
                "classes": ["PEN"],
            },
            cache=False,
        )


def test_watch_default_gesture_set():
    from pipeline.data.watch import _read_cached, watch_file

    raw = _read_cached(str(watch_file(None)))
    assert len(raw["X"]) == 140 and raw["y_labels"] == ("PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW")
    assert np.bincount(raw["y"]).tolist() == [20] * 7
    d = load_dataset(dataset_cfg("watch"), cache=False)
    assert_well_formed(d, n_features=3, time_slices=150)  # the gyroscope's wx, wy, wz
    assert d.class_names == ("PEN", "ABD", "FEL", "IR", "TRAP", "ROW")
    # each recording standardised on its own: its first window's real slices lie near mean 0, std 1
    first = [np.flatnonzero(d.groups == g)[0] for g in np.unique(d.groups)]
    assert abs(np.mean([d.x[i, : d.lengths[i]].mean() for i in first])) < 0.2
    assert len(np.unique(d.groups)) == 120  # 6 exercises x 10 subjects x 2 arms
    for g in np.unique(d.groups):  # one class per recording
        assert len(set(d.y[d.groups == g].tolist())) == 1
    again = load_dataset(dataset_cfg("watch"), cache=False)
    assert np.array_equal(d.x, again.x) and np.array_equal(d.groups, again.groups)
    # the study's regime: every pair gives >= 7 optimiser updates per epoch at batch 128, whatever the split
    from analysis.health import updates_per_epoch
    from pipeline.splits import make_splits

    for k, pair in enumerate(class_pairs(6)):
        for replicate in range(3):
            s = make_splits(d.x, d.y, pair, np.random.default_rng([k, replicate]), groups=d.groups)
            assert updates_per_epoch(len(s.y_train), 128) >= 7, (pair, len(s.y_train))
