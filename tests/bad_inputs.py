"""The bad-input tables: every value the pipeline must refuse before anything is written, naming the key.

Used by tests/test_reliability.py (planning, in-process), tests/test_sweep_guarantees.py (whole commands)
and tools/red_team.py (every row as a real command, counted for docs/reliability.md).
"""

from __future__ import annotations

import torch

BAD_INPUTS = [  # (overrides, what the message must name)
    (["paths.root="], "paths.root"),
    (["paths.root=/proc/x"], "paths.root"),
    (["paths.root=/dev/x"], "paths.root"),
    (["+foo=1"], "foo"),
    (["+trainer.foo=1"], "trainer.foo"),
    (["++trainer.foo=1"], "trainer.foo"),
    (["no_such_key=1"], "no_such_key"),
    (["data_source=audio"], "data_source"),
    (["dataset=mnist"], "dataset"),
    (["labels=maybe"], "labels"),
    (["pair=-1"], "pair"),
    (["data_source=sentence", "pair=12"], "pair"),
    (["seed=-1"], "seed"),
    (["seed=abc"], "seed"),
    (["probe.knn.k=0"], "probe.knn.k"),
    (["probe.knn.k=-1"], "probe.knn.k"),
    (["probe.knn.states=foo"], "probe.knn.states"),
    (["probe.knn.splits=[foo]"], "probe.knn.splits"),
    (["probe.knn.gram_precision=float8"], "probe.knn.gram_precision"),
    (["probe.knn.ties=coin"], "probe.knn.ties"),
    (["probe.knn.mode=loo"], "probe.knn.mode"),
    (["model.name=gru2"], "model.name"),
    (["model.hidden_size=0"], "model.hidden_size"),
    (["model.hidden_size=-5"], "model.hidden_size"),
    (["model.hidden_size=10000000"], "model.hidden_size"),
    (["model.hidden_size=abc"], "model.hidden_size"),
    (["model.min_hidden_size=0"], "model.min_hidden_size"),
    (["model.batchnorm_time=3"], "model.batchnorm_time"),
    (["trainer.num_threads=-1"], "trainer.num_threads"),
    (["trainer.num_threads=abc"], "trainer.num_threads"),
    (["trainer.lr=1e300"], "trainer.lr"),
    (["trainer.lr=0"], "trainer.lr"),
    (["trainer.lr=-0.1"], "trainer.lr"),
    (["trainer.lr=abc"], "trainer.lr"),
    (["trainer.epochs=0"], "trainer.epochs"),
    (["trainer.epochs=1.5"], "trainer.epochs"),
    (["trainer.batch_size=0"], "trainer.batch_size"),
    (["trainer.shuffle=maybe"], "trainer.shuffle"),
    (["trainer.device=tpu"], "trainer.device"),
    (["split.oversample=2"], "split.oversample"),
    (["split.test_fraction=0"], "split.test_fraction"),
    (["split.test_fraction=1.5"], "split.test_fraction"),
    (["split.val_fraction=-0.2"], "split.val_fraction"),
    (["dataset.time_slices=0"], "dataset.time_slices"),
    (["dataset.time_slices=abc"], "dataset.time_slices"),
    (["deficit.kind=burn"], "deficit.kind"),
    (["deficit.length=-1"], "deficit.length"),
    # a study name or run id that would lead out of <paths.root>/<study>/runs/
    (["study.name=../../x"], "study.name"),
    (["study.name=/tmp/elsewhere"], "study.name"),
    (["study.name=.hidden"], "study.name"),
    (["study.name=a/b"], "study.name"),
    (["study.name=''"], "study.name"),
    # values only wrong for the chosen data set (the run loads it and draws its own split)
    (["dataset.n_classes=7", "pair=20"], "dataset.n_classes"),
    (["dataset.n_classes=1"], "dataset.n_classes"),
    (["dataset.stride=0"], "dataset.stride"),
    (["dataset.window=0"], "dataset.window"),
    (["dataset.downsample=0"], "dataset.downsample"),
    (["dataset.min_length=1000"], "dataset.min_length"),
    (
        ["dataset.classes=[PEN,CARTWHEEL]", "dataset.class_names=[PEN,CARTWHEEL]", "dataset.n_classes=2"],
        "dataset.classes",
    ),
    (["split.test_fraction=0.999"], "split.test_fraction"),
    (["data_source=sentence", "split.test_fraction=0.9999"], "split.test_fraction"),
    # the record's learning-curve map needs the KNN probe on the training states
    (["probe.knn.splits=[]"], "probe.knn.splits"),
    (["probe.knn.splits=[test]"], "probe.knn.splits"),
    (["probe.knn.splits=[train,train]"], "probe.knn.splits"),
    (["probe.knn.enabled=false"], "probe.knn.enabled"),
    # layers the run's model does not have (the model is built at planning, for the data's shape)
    (
        ["probe.gradient_spectrum.enabled=true", "probe.gradient_spectrum.layers=[nope]"],
        "probe.gradient_spectrum.layers",
    ),
    (
        ["probe.category_structure.enabled=true", "probe.category_structure.layers=[nope]"],
        "probe.category_structure.layers",
    ),
    # thread counts beyond the machine (100000 threads crashed torch, leaving the run "running")
    (["trainer.num_threads=100000"], "trainer.num_threads"),
    (["trainer.num_threads=1.5"], "trainer.num_threads"),
    # a deficit that would be recorded while applying nothing
    (["deficit.kind=zero", "deficit.length=2", "deficit.sources=[audio]"], "deficit.sources"),
    (["deficit.kind=zero", "deficit.length=2", "deficit.sources=[]"], "deficit.sources"),
    (["deficit.kind=zero", "deficit.length=2", "deficit.onset=50"], "deficit.onset"),
    (["deficit.kind=zero", "deficit.length=0"], "deficit.length"),
    (["deficit.kind=zero", "deficit.length=2", "deficit.features=[6]"], "deficit.features"),
    (["deficit.kind=zero", "deficit.length=2", "deficit.unit=step", "deficit.onset=100000"], "deficit.onset"),
    (["deficit.kind=zero", "deficit.length=2", "deficit.unit=hour"], "deficit.unit"),
    (["deficit.kind=noise", "deficit.length=2", "deficit.noise_std=0"], "deficit.noise_std"),
    (["deficit.kind=zero", "deficit.length=2", "deficit.fraction=0"], "deficit.fraction"),
    # the W&B mirror's keys (a bad one failed a run at its first image log)
    (["logger.wandb.media_every=-1"], "logger.wandb.media_every"),
    (["logger.wandb.color_scale=[1.0,0.4]"], "logger.wandb.color_scale"),
    (["logger.wandb.color_scale=[0.4]"], "logger.wandb.color_scale"),
    (["logger.wandb.chance=2"], "logger.wandb.chance"),
    (["logger.wandb.console=maybe"], "logger.wandb.console"),
    (["logger.wandb.project=''"], "logger.wandb.project"),
    (["logger.wandb.requirements=maybe"], "logger.wandb.requirements"),
]
if not torch.cuda.is_available():  # on a machine without a GPU, cuda is a bad value
    BAD_INPUTS.append((["trainer.device=cuda"], "trainer.device"))
    BAD_INPUTS.append((["trainer.device=cuda:3"], "trainer.device"))


# Data files: missing, or not in their format (checked at planning from the path and the file's first bytes).
# {files} is a folder of damaged files (write_bad_data_files); the commands run where there is no data/ folder.
BAD_DATA = [  # (overrides, what the message must name, and a word of what to do)
    (["dataset=imigue"], "dataset.root", "iMiGUE"),
    (["data_source=sentence", "dataset=emotion"], "dataset.root", "dair-ai/emotion"),
    (["dataset=imigue", "dataset.root={files}/text.npz"], "dataset.root", "not a .npz"),
    (["dataset=imigue", "dataset.root={files}/pickled.npz"], "dataset.root", "pickled"),
    (["dataset=imigue", "dataset.root={files}/empty"], "dataset.labels", "labels CSV"),
    (["dataset=imigue", "dataset.root={files}/binary_labels"], "dataset.root", "not a labels CSV"),
    (["dataset=cricket", "dataset.root={files}/empty"], "dataset.root", "CricketX_TRAIN.tsv"),
    (["dataset=cricket", "dataset.root={files}/words_tsv"], "dataset.root", "not a UCR .tsv"),
    (["dataset.root={files}/text.npz"], "dataset.root", "watch"),
    (["data_source=sentence", "dataset.root={files}/nothing"], "dataset.root", "BBC News"),
    (["data_source=sentence", "dataset=emotion", "dataset.root={files}/no_semicolon"], "dataset.root", "text;label"),
    (["data_source=sentence", "dataset=emotion", "dataset.root={files}/text.parquet"], "dataset.root", "parquet"),
    (
        ["data_source=sentence", "dataset=emotion", "dataset.root={files}/emotion"],
        "dataset.embeddings",
        "GloVe",
    ),
    (
        ["data_source=sentence", "dataset=emotion", "dataset.root={files}/emotion", "dataset.embeddings={files}/x.npz"],
        "dataset.embeddings",
        "not a GloVe text file",
    ),
    # a corpus whose class sadness has one sentence: pair 0 (sadness/joy) cannot be split, pair 5 (joy/love) can
    (
        [
            "data_source=sentence",
            "dataset=emotion",
            "dataset.root={files}/tiny_emotion",
            "dataset.embeddings={files}/glove.txt",
        ],
        "pair=0",
        "'sadness' has 1 sequence(s)",
    ),
]


def write_bad_data_files(folder):
    import io
    import zipfile

    import numpy as np

    folder.mkdir()
    (folder / "empty").mkdir()
    (folder / "text.npz").write_text("keypoints and labels\n")
    np.savez(folder / "pickled.npz", keypoints=np.zeros((2, 3, 274), np.float32), label=np.array([{}, {}]))
    (folder / "binary_labels").mkdir()
    (folder / "binary_labels" / "labels.csv").write_bytes(bytes(range(256)) * 4)
    (folder / "words_tsv").mkdir()
    for split in ("TRAIN", "TEST"):
        (folder / "words_tsv" / f"CricketX_{split}.tsv").write_text("one\ttwo\tthree\n")
    (folder / "no_semicolon").mkdir()
    (folder / "no_semicolon" / "train.txt").write_text("i feel fine, joy\n")
    (folder / "text.parquet").write_text("text,label\n")
    (folder / "emotion").mkdir()
    (folder / "emotion" / "train.txt").write_text("i feel fine;joy\n")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "x")
    (folder / "x.npz").write_bytes(buffer.getvalue())
    write_tiny_emotion(folder)


TINY_EMOTION_WORDS = ("i", "feel", "fine", "sad", "happy", "angry", "scared", "wow", "loving", "today")


def write_tiny_emotion(folder):
    """A valid emotion corpus with 1 sadness sentence and 30 of each other class, and GloVe vectors for it."""
    import numpy as np

    rng = np.random.default_rng(0)
    lines = ["i feel sad today;sadness"]
    for label, word in (
        ("joy", "happy"),
        ("love", "loving"),
        ("anger", "angry"),
        ("fear", "scared"),
        ("surprise", "wow"),
    ):
        lines += [f"i feel {word} {'today ' * (i % 4)}fine;{label}" for i in range(30)]
    (folder / "tiny_emotion").mkdir()
    (folder / "tiny_emotion" / "train.txt").write_text("\n".join(lines) + "\n")
    vectors = [f"{w} " + " ".join(f"{v:.3f}" for v in rng.normal(size=4)) for w in TINY_EMOTION_WORDS]
    (folder / "glove.txt").write_text("\n".join(vectors) + "\n")


# (command-line arguments, environment, what the message must name). Each is refused with exit status 1,
# the message and no traceback, before anything exists under the outputs root.
BAD_LAUNCHES = [
    (["-m", "seed=0", "hydra.sweeper.max_batch_size=-1"], {}, "hydra.sweeper.max_batch_size"),
    (["-m", "seed=0", "hydra.sweeper.max_batch_size=0"], {}, "hydra.sweeper.max_batch_size"),
    (["-m", "seed=0", "hydra.sweeper.runs_per_job=0"], {}, "hydra.sweeper.runs_per_job"),
    (["-m", "seed=0", "hydra.launcher.n_jobs=0"], {}, "hydra.launcher.n_jobs"),
    (["-m", "seed=range(0,0)"], {}, "names no run"),
    (["-m", "seed=0,0"], {}, "twice"),
    (["-m", "pair=0", "seed=3,1,3"], {}, "twice"),
    (["-m", "seed=0", "hydra.sweep.dir=/tmp/lcm-elsewhere"], {}, "hydra.sweep.dir"),
    (["-m", "seed=0", "hydra.sweep.subdir=../../x"], {}, "hydra.sweep.subdir"),
    (["-m", "seed=0", "hydra.job.chdir=true"], {}, "hydra.job.chdir"),
    (["-m", "seed=0", "study.name=../../x"], {}, "study.name"),
    (["-m", "seed=0", "+hydra.launcher.timeout_min=0"], {}, "hydra.launcher.timeout_min"),
    (["hydra.run.dir=/tmp/lcm-elsewhere"], {}, "hydra.run.dir"),
    (["hydra.output_subdir=/tmp/lcm-elsewhere"], {}, "hydra.output_subdir"),
    (["hydra.job.chdir=true"], {}, "hydra.job.chdir"),
    (["study.name=/tmp/lcm-elsewhere"], {}, "study.name"),
    (["trainer.num_threads=100000"], {}, "trainer.num_threads"),
    (["probe.knn.splits=[]"], {}, "probe.knn.splits"),
    (["dataset.n_classes=7", "pair=20"], {}, "dataset.n_classes"),
]
# an empty LCM_OUTPUTS: with debug=quick the runs went to /debug; the root is then the default's
EMPTY_ENV = [
    (["debug=quick"], {"LCM_OUTPUTS": ""}, "LCM_OUTPUTS"),
    ([], {"LCM_OUTPUTS": "  "}, "LCM_OUTPUTS"),
    (["-m", "seed=0"], {"LCM_OUTPUTS": ""}, "LCM_OUTPUTS"),
]


def diverging_watch_file(path, class_name: str = "PEN"):
    """A copy of the watch data whose recordings of ``class_name`` hold NaN: it passes every planning check
    (the file, its options, the split), and a run of a pair with that class fails while training (the
    network's states are not finite), recorded ``failed``: a failure only the run can meet."""
    from pathlib import Path

    import numpy as np

    from pipeline.data.watch import read_watch_file, watch_file

    raw = read_watch_file(watch_file(None))
    label = raw["y_labels"].index(class_name)
    recordings = [np.full_like(x, np.nan) if y == label else x for x, y in zip(raw["X"], raw["y"])]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(
        path, np.array({**raw, "X": recordings, "y_labels": list(raw["y_labels"])}, dtype=object), allow_pickle=True
    )
    return path


def clean_watch_file(path):
    """A plain copy of the watch data (beside a diverging one, so the two differ only in their file)."""
    import shutil
    from pathlib import Path

    from pipeline.data.watch import watch_file

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(watch_file(None), path)
    return Path(path)
