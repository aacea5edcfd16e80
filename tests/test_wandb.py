"""W&B mirror, workspace and analysis export, checked by reading real offline W&B files back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from analysis.collect import collect_runs
from pipeline import dashboard, tracking, wandb_figures
from pipeline.curve_metrics import curve_metrics, smooth_3rs3r
from pipeline.run import execute
from pipeline.schema import KNN_TIE_SHARE
from tests.helpers import REPO, run_config, run_plan
from tests.wandb_records import (
    config_value,
    exit_code,
    final_results,
    history,
    read_offline,
    run_record,
    summary,
    wandb_files,
)

EPOCHS = 3
# ---------------------------------------------------------------------------
# Pieces, without W&B
# ---------------------------------------------------------------------------


def _curves(epoch: int, values, tie_values=None) -> pd.DataFrame:
    rows = [("knn", "train", epoch, t, v) for t, v in enumerate(values, 1)]
    rows += [("knn_tie_share", "train", epoch, t, v) for t, v in enumerate(tie_values or [], 1)]
    rows += [("knn", "test", epoch, t, 0.1) for t in range(1, len(values) + 1)]  # never part of the map
    return pd.DataFrame(rows, columns=["probe", "split", "epoch", "time_slice", "value"])


def test_epoch_metrics_are_the_analysis_metrics_on_a_curve_with_ties():
    curve = np.array([0.5, 0.5, 0.75, 0.75, 0.5, 0.625, 0.625, 0.875, 0.875, 0.875, 0.5, 0.75])
    rows = _curves(1, curve.tolist()).sample(frac=1.0, random_state=0)  # rows in any order
    assert np.array_equal(tracking.epoch_curve(rows), curve)
    got = tracking.epoch_metrics(tracking.epoch_curve(rows))
    smoothed = smooth_3rs3r(curve)
    assert got["map/start"] == smoothed[0] and got["map/end"] == smoothed[-1]
    assert got["map/end_minus_start"] == smoothed[-1] - smoothed[0]
    assert got["map/max"] == smoothed.max()
    assert got["map/tmax"] == (int(np.argmax(smoothed)) + 1) / len(curve)
    reference = curve_metrics(curve).as_dict()
    assert {k: v[0] for k, v in reference.items()} == {k[len("map/") :]: v for k, v in got.items()}


def test_tie_share_is_the_mean_of_the_tie_rows_when_they_exist():
    frame = _curves(1, [0.5, 0.6, 0.7], tie_values=[0.0, 0.25, 0.5])
    assert tracking.tie_share(frame) == pytest.approx(0.25)
    assert tracking.tie_share(_curves(1, [0.5, 0.6, 0.7])) is None
    assert tracking.tie_share(pd.DataFrame(columns=["probe", "split", "epoch", "time_slice", "value"])) is None


def test_config_name_tags_and_group_of_a_run(tmp_path):
    cfg = run_config("data_source=gesture", "pair=0", "seed=3", f"paths.root={tmp_path}", "labels=shuffled")
    rid = "gesture-p00-r003-abc"
    config = tracking.run_config(cfg, rid, attempt=2, earlier=[rid])
    for plumbing in ("expected_run_id", "pack_file", "paths", "participant", "design", "assignment"):
        assert plumbing not in config, plumbing
    assert config["run_id"] == rid and config["attempt"] == 2 and config["wandb_id"] == f"{rid}-a2"
    assert config["earlier_attempts"] == [rid]
    assert (config["data_source"], config["pair"], config["replicate"]) == ("gesture", 0, 3)
    assert config["class_names"] == ["PEN", "ABD"] and config["class_pair"] == "PEN/ABD"
    assert config["labels"] == "shuffled" and config["source_group"] == "gesture shuffled"
    assert config["source_pair"] == "gesture PEN/ABD shuffled"
    assert config["study"]["name"] == "headline" and "trainer" in config
    assert tracking.display_name(cfg) == "gesture PEN/ABD r003 shuffled"
    assert tracking.display_name(cfg, attempt=2) == "gesture PEN/ABD r003 shuffled attempt 2"
    assert tracking.group_name(cfg) == "headline-shuffled"
    assert tracking.run_tags(cfg) == ["headline", "gesture", "shuffled", "PEN", "ABD"]


def test_earlier_attempts_count_only_this_runs_wandb_folders(tmp_path):
    rid = "gesture-p00-r000-abc"
    assert tracking.earlier_attempts(tmp_path, rid) == []
    for name in (
        f"offline-run-20260101_000000-{rid}",
        f"run-20260102_000000-{rid}-a2",
        f"offline-run-20260103_000000-{rid}x",  # another run id that starts the same way
        f"offline-run-20260103_000000-{rid}-a3-b",
        "latest-run",
        "debug.log",
    ):
        (tmp_path / "wandb" / name).mkdir(parents=True)
    assert tracking.earlier_attempts(tmp_path, rid) == [rid, f"{rid}-a2"]
    assert tracking.attempt_id(rid, 3) == f"{rid}-a3"


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("media_every", -1, "media_every=-1"),
        ("media_every", "often", "media_every='often'"),
        ("color_scale", [1.0, 0.4], "low must be below high"),
        ("color_scale", "red", "two numbers"),
        ("chance", "half", "chance='half'"),
        ("console", "loud", "console='loud'"),
    ],
)
def test_bad_logger_options_name_the_key(tmp_path, key, value, message):
    cfg = run_config(f"paths.root={tmp_path}")
    OmegaConf.update(cfg, f"logger.wandb.{key}", value, force_add=True)
    with pytest.raises(ValueError, match=message):
        tracking.Tracker(cfg, "x", tmp_path)  # disabled mode too: the typo shows before W&B is turned on


def test_a_lost_wandb_folder_silences_wandbs_own_log_there_only(tmp_path):
    """W&B's own log of a run is a handler of the ``wandb`` logger writing into the run's W&B folder; once that
    folder is lost (a full disk), its messages are dropped, and another run's log still gets them."""
    import logging

    from pipeline.wandb_state import quiet_wandb_log

    logger = logging.getLogger("wandb")
    logs, handlers = {}, []
    for name in ("lost", "other"):
        logs[name] = tmp_path / name / "wandb" / "offline-run-20260101_000000-x" / "logs" / "debug.log"
        logs[name].parent.mkdir(parents=True)
        handlers.append(logging.FileHandler(logs[name]))
        logger.addHandler(handlers[-1])
    try:
        quiet_wandb_log(tmp_path / "lost" / "wandb")
        logger.warning("after the loss")
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
    assert logs["lost"].read_text() == "" and "after the loss" in logs["other"].read_text()


# ---------------------------------------------------------------------------
# The tracker, offline, on synthetic epochs
# ---------------------------------------------------------------------------


def test_tracker_logs_metrics_tie_share_and_media_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = run_config(f"paths.root={tmp_path}", "trainer.epochs=5", "logger.wandb.media_every=2")
    rng = np.random.default_rng(0)
    curves = {e: np.round(rng.uniform(0.4, 1.0, 12) * 8) / 8 for e in range(1, 6)}
    tracker = tracking.Tracker(cfg, "gesture-p00-r000-synthetic", tmp_path)
    for epoch, curve in curves.items():
        ties = [0.1 * epoch] * 12 if epoch != 3 else None  # one epoch without tie rows
        tracker.log_epoch(epoch, {"train/loss": 1.0 / epoch}, _curves(epoch, curve.tolist(), ties))
    tracker.finish(None, {"test_accuracy": 0.75, "seconds": {"total": 1.5}, "class_names": ["a", "b"]}, ok=True)

    records = read_offline(wandb_files(tmp_path)["gesture-p00-r000-synthetic"])
    rows = history(records)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4, 5]
    metrics = [r["metric"] for r in records if r["type"] == "metric"]
    assert {"name": "epoch", "options": {"defined": True}} in metrics
    assert any(m.get("glob_name") == "*" and m.get("step_metric") == "epoch" for m in metrics)
    for row in rows:
        expected = tracking.epoch_metrics(curves[row["epoch"]])
        assert {k: row[k] for k in expected} == expected
        assert row["knn/mean"] == pytest.approx(curves[row["epoch"]].mean())
        assert row.get("knn/tie_share") == (None if row["epoch"] == 3 else pytest.approx(0.1 * row["epoch"]))
    # media every 2 epochs and at the last one
    assert [row["epoch"] for row in rows if "map/image._type" in row] == [2, 4, 5]
    assert [row["epoch"] for row in rows if "map/curve_table._type" in row] == [2, 4, 5]
    last = rows[-1]
    assert "chance 0.75" in last["map/image.caption"] and "0.4-1" in last["map/image.caption"]
    image = next(tmp_path.glob("wandb/offline-run-*/files/" + last["map/image.path"]))
    assert image.stat().st_size == last["map/image.size"] > 1000
    final = summary(records)
    assert final["run/complete"] == 1 and final["test_accuracy"] == 0.75 and final["seconds/total"] == 1.5
    assert exit_code(records) == 0
    # off by default: the run folder has the log and the versions, and each costs CPU per run
    assert not [r for r in records if r["type"] == "output_raw"]
    assert not list(tmp_path.glob("wandb/offline-run-*/files/requirements.txt"))


def test_a_companion_study_logs_against_steps_with_its_headline_quantities(tmp_path, monkeypatch):
    cfg = run_config("study=critical_pathways", f"paths.root={tmp_path}")
    config = tracking.run_config(cfg, "cp-run")
    assert {"depth", "deficit_onset", "deficit_length", "replicate"} <= set(config)
    assert not {"dataset", "model", "data_source", "pair", "design"} & set(config)  # ignored by its runner
    assert set(config["trainer"]) >= {"lr", "steps"}  # its own training keys (conf/trainer/critical_pathways.yaml)
    assert tracking.display_name(cfg).startswith("critical_pathways depth=")
    monkeypatch.setenv("WANDB_MODE", "offline")
    tracker = tracking.Tracker(cfg, "cp-run", tmp_path)
    empty = pd.DataFrame(columns=["probe", "split", "epoch", "time_slice", "value"])
    for step in (0, 100, 200):
        tracker.log_epoch(step, {"train/loss": 1.0 / (step + 1), "share_b/mode1": 0.5 - step / 1000}, empty)
    tracker.finish(empty, {"final_share_b_mode1": 0.3, "amplification_mode1": 2.5, "final_share_b": {1: 0.3}}, ok=True)
    records = read_offline(wandb_files(tmp_path)["cp-run"])
    assert [row["step"] for row in history(records)] == [0, 100, 200]
    assert not any(key.startswith("map/") for row in history(records) for key in row)
    metrics = [r["metric"] for r in records if r["type"] == "metric"]
    assert any(m.get("glob_name") == "*" and m.get("step_metric") == "step" for m in metrics)
    final = summary(records)
    assert (final["final_share_b_mode1"], final["amplification_mode1"], final["final_share_b/1"]) == (0.3, 2.5, 0.3)


COMPANION_RUNS = {
    "critical_pathways": ["trainer.steps=200", "study.deficit_length=50"],
    "critical_matrix_completion": ["trainer.steps=100", "study.size=30", "study.n_observed=300"],
    "multitask": ["trainer.single_epochs=4", "trainer.finetune_epochs=2", "study.eval_every=2"],
    "dense_sample": [
        "trainer.epochs=1",
        "study.data.per_class=30",
        "study.data.train_per_class=20",
        "probe.category_structure.per_class=5",
    ],
}


@pytest.mark.parametrize("study", sorted(COMPANION_RUNS))
def test_a_companion_run_logs_its_headline_figure_at_the_end(study, tmp_path, monkeypatch):
    """A real run of each companion runner, mirrored offline: its per-step headline quantities, then its
    figure (drawn from the table it wrote to the run folder) once, at the last step it logged."""
    from pipeline.record import RunRecord
    from pipeline.studies import RunContext, get_runner

    cfg = run_config(f"study={study}", "seed=5", f"paths.root={tmp_path}", *COMPANION_RUNS[study])
    monkeypatch.setenv("WANDB_MODE", "offline")
    tracker = tracking.Tracker(cfg, f"{study}-run", tmp_path)
    logged = []

    def on_step(step, readouts, curves):
        logged.append((step, readouts))
        tracker.log_epoch(step, readouts, curves)

    result = get_runner(cfg.study.runner).run(cfg, RunContext(5, on_step))
    RunRecord(tmp_path, f"{study}-run").write_results(result.curves, result.readouts, result.summary, result.tables)
    tracker.finish(result.curves, result.summary, ok=True)

    table, key, _, caption = wandb_figures.COMPANION_MEDIA[study]
    assert (tmp_path / f"{table}.parquet").exists()
    rows = history(read_offline(wandb_files(tmp_path)[f"{study}-run"]))
    x_axis = "step" if study.startswith("critical") else "epoch"
    with_image = [row for row in rows if f"{key}._type" in row]
    assert len(with_image) == 1 and rows[-1] is with_image[0]
    assert with_image[0][x_axis] == max(step for step, _ in logged)
    assert with_image[0][f"{key}.caption"] == caption
    image = next(tmp_path.glob("wandb/offline-run-*/files/" + with_image[0][f"{key}.path"]))
    assert image.stat().st_size == with_image[0][f"{key}.size"] > 1000
    # the per-step headline quantities the runner reported are in the history, as reported
    first_step, first = logged[0]
    row = next(r for r in rows if r.get(x_axis) == first_step)
    assert all(row[k] == pytest.approx(v) for k, v in first.items())


def test_no_companion_figure_without_its_table(tmp_path):
    assert wandb_figures.companion_image("critical_pathways", tmp_path) is None
    assert wandb_figures.companion_image("sequence", tmp_path) is None


# ---------------------------------------------------------------------------
# A real run, offline: equal to the analysis, and every workspace panel has its data
# ---------------------------------------------------------------------------


# W&B's variables that name folders, and the one through which a child process joins its parent's W&B
# service (set once a test of this process has used W&B): a test that checks where W&B writes runs
# without them, as a user's fresh shell does
WANDB_FOLDER_VARIABLES = (
    "WANDB_CACHE_DIR",
    "WANDB_CONFIG_DIR",
    "WANDB_DATA_DIR",
    "WANDB_DIR",
    "WANDB_ARTIFACT_DIR",
    "WANDB_SERVICE",
)


def user_env(home: Path, **extra: str) -> dict:
    """The environment of a user with ``home`` as HOME, none of W&B's folder variables and no W&B service."""
    env = {k: v for k, v in os.environ.items() if k not in WANDB_FOLDER_VARIABLES and not k.startswith("XDG_")}
    return {**env, "HOME": str(home), "PYTHONUNBUFFERED": "1", "MPLCONFIGDIR": str(home / "mpl"), **extra}


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """One real run mirrored offline by `python -m pipeline`, in a fresh HOME, with W&B's defaults."""
    root = tmp_path_factory.mktemp("outputs")
    home = tmp_path_factory.mktemp("home")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", f"trainer.epochs={EPOCHS}", "dataset.time_slices=20"]
        + [f"paths.root={root}", "logger.wandb.media_every=2"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=user_env(home, WANDB_MODE="offline"),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = (root / "headline" / "runs").iterdir()
    (wandb_file,) = wandb_files(run_dir).values()
    return {"root": root, "home": home, "run_dir": run_dir, "records": read_offline(wandb_file)}


def test_a_real_run_logs_the_analysis_metrics_epoch_by_epoch(offline_run):
    rows = history(offline_run["records"])
    table = collect_runs(offline_run["root"], study="headline", use_cache=False, progress=False).metrics
    assert len(table) == EPOCHS and [row["epoch"] for row in rows] == list(range(1, EPOCHS + 1))
    for row, (_, expected) in zip(rows, table.sort_values("epoch").iterrows()):
        for name in ("start", "end", "end_minus_start", "max", "tmax"):
            assert row[f"map/{name}"] == expected[name], (row["epoch"], name)  # exact: the same code
    assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "knn/mean"} <= set(rows[0])


def test_a_real_run_is_named_tagged_and_grouped(offline_run):
    run = run_record(offline_run["records"])
    rid = offline_run["run_dir"].name
    assert run["run_id"] == rid and run["display_name"] == "gesture PEN/ABD r000"
    assert run["run_group"] == "headline-real" and run["job_type"] == "run"
    assert run["tags"] == ["headline", "gesture", "real", "PEN", "ABD"]
    assert config_value(run, "run_id") == rid and config_value(run, "data_source") == "gesture"
    assert config_value(run, "class_names") == ["PEN", "ABD"]
    keys = set(run["config"]["update"])
    assert not keys & {"expected_run_id", "pack_file", "paths", "participant", "design"}
    assert summary(offline_run["records"])["run/complete"] == 1


def test_every_workspace_panel_key_is_in_the_runs_history(offline_run):
    spec = dashboard.workspace_spec(dashboard.build_workspace("me", "learning-curve-maps", "headline"))
    used = dashboard.panel_keys(spec)
    assert {"epoch", "map/start", "map/end_minus_start", "map/max", "map/tmax", "map/image"} <= used
    logged = {
        key.split(".")[0] if key.startswith("map/image") else key
        for row in history(offline_run["records"])
        for key in row
    }
    curves = pd.read_parquet(offline_run["run_dir"] / "curves.parquet")
    pending = set() if (curves.probe == KNN_TIE_SHARE).any() else {"knn/tie_share"}  # until the probe has it
    assert used - pending <= logged, sorted(used - pending - logged)
    # the workspace shows the study's complete runs only
    filters = json.dumps(spec["spec"]["section"]["runSets"][0]["filters"])
    assert "headline-real" in filters and "run/complete" in filters and "jobType" in filters


# ---------------------------------------------------------------------------
# At study scale: the slider, the map image, the record artifact, the summary, where W&B writes
# ---------------------------------------------------------------------------


def test_the_map_slider_walks_epochs(offline_run):
    rows = history(offline_run["records"])
    assert [row["_step"] for row in rows] == [row["epoch"] for row in rows] == list(range(1, EPOCHS + 1))
    assert [row["_step"] for row in rows if "map/image._type" in row] == [2, 3]  # media_every=2 and the last epoch


def test_a_map_image_is_wide_and_titled_with_run_pair_and_epoch(offline_run):
    from PIL import Image

    run_dir = offline_run["run_dir"]
    rows = [row for row in history(offline_run["records"]) if "map/image._type" in row]
    for row in rows:
        (path,) = run_dir.glob("wandb/offline-run-*/files/" + row["map/image.path"])
        with Image.open(path) as image:
            assert image.size == (row["map/image.width"], row["map/image.height"])
        assert row["map/image.width"] >= 800
        title = f"gesture, class pair PEN/ABD, replicate 0 (run {run_dir.name}): epoch {row['epoch']} of {EPOCHS}"
        assert row["map/image.caption"].startswith(title + ". ")


def test_the_map_title_drawn_is_the_one_given():
    figure = wandb_figures.MapFigure(4, 10, (0.4, 1.0), 0.75)
    figure.render(np.full((4, 10), 0.6), np.full(10, 0.6), np.full(10, 0.6), "sentence, class pair a/b: epoch 2 of 4")
    assert figure.title.get_text() == "sentence, class pair a/b: epoch 2 of 4"
    assert (figure.ax_map.get_xlabel(), figure.ax_map.get_ylabel()) == ("epoch", "time slice")


def _top_colour_patch(png: bytes) -> tuple[int, int]:
    """(height, width) in pixels of the largest patch drawn in the colour map's top colour."""
    import io

    import matplotlib
    from PIL import Image
    from scipy import ndimage

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    top = np.array(matplotlib.colormaps[wandb_figures.MAP_CMAP](1.0)[:3]) * 255
    labels, n = ndimage.label(np.abs(pixels - top).max(axis=2) < 12)
    sizes = ndimage.sum(labels > 0, labels, range(1, n + 1))
    rows, cols = ndimage.find_objects(labels)[int(np.argmax(sizes))]
    return rows.stop - rows.start, cols.stop - cols.start


def test_the_map_is_oriented_as_the_report_draws_it():
    """A map whose last epoch alone is at the top of the colour scale: the report (analysis/figures.py) and
    the W&B image both draw it as a tall stripe, epoch across and time slice up, never as a flat band."""
    import io

    from PIL import Image

    from analysis.figures import map_figures

    grid = np.full((6, 40), 0.5)
    grid[-1] = 1.0
    pixels = wandb_figures.MapFigure(6, 40, (0.4, 1.0), 0.75).render(grid, grid[-1], grid[-1], "title")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="png")
    height, width = _top_colour_patch(buffer.getvalue())
    assert height > 2 * width, (height, width)
    maps = pd.DataFrame(
        [{"source": "gesture", "labels": "real", "pair": "PEN/ABD", "pair_index": 0, "n_runs": 1, "map": grid}]
    )
    height, width = _top_colour_patch(map_figures(maps)["maps_gesture_real.png"])
    assert height > 2 * width, (height, width)


def test_the_map_can_be_rebuilt_from_the_record_artifact(offline_run):
    """The run-record artifact as `wandb sync` would upload it: its staged copies (checked against the
    manifest's MD5 digests) hold the record files, and the map rebuilt from them is the analysis' map."""
    import base64
    import hashlib

    from analysis.collect import read_run

    run_dir = offline_run["run_dir"]
    (artifact,) = [
        r["artifact"]
        for r in offline_run["records"]
        if r["type"] == "artifact" and r["artifact"]["type"] == tracking.RECORD_ARTIFACT_TYPE
    ]
    assert artifact["name"] == f"record-{run_dir.name}"
    contents = {entry["path"]: entry for entry in artifact["manifest"]["contents"]}
    assert set(contents) == {"config.yaml", "curves.parquet", "readouts.parquet", "summary.json"}
    for name, entry in contents.items():
        staged = Path(entry["local_path"])
        assert run_dir / "wandb" in staged.parents, staged  # staged in the run's own W&B folder
        data = staged.read_bytes()
        assert base64.b64encode(hashlib.md5(data).digest()).decode() == entry["digest"], name
        assert data == (run_dir / name).read_bytes(), name
    curves = pd.read_parquet(contents["curves.parquet"]["local_path"])
    knn = curves[(curves.probe == "knn") & (curves.split == "train")]
    rebuilt = knn.pivot(index="epoch", columns="time_slice", values="value").sort_index().to_numpy()
    _, expected = read_run(run_dir)
    assert rebuilt.shape == (EPOCHS, 20) and np.array_equal(rebuilt, expected)


def test_a_rebuilt_mirror_is_the_live_mirror(offline_run, tmp_path, monkeypatch):
    """The run folder replayed (pipeline.wandb_rebuild) gives the history, images and results the run
    logged live: the same keys and values at the same steps (times and W&B's own artifact ids aside)."""
    from pipeline import wandb_rebuild

    monkeypatch.setenv("WANDB_MODE", "offline")
    copy = tmp_path / "headline" / "runs" / offline_run["run_dir"].name
    shutil.copytree(offline_run["run_dir"], copy, ignore=shutil.ignore_patterns("wandb"))
    state = wandb_rebuild.rebuild(copy)
    assert state["state"] == "complete" and (copy / "wandb" / wandb_rebuild.REBUILT).is_file()
    rebuilt = read_offline(wandb_files(copy)[copy.name])

    def comparable(records):
        volatile = ("_runtime", "_timestamp", "artifact_path", "_latest_artifact_path")
        return [{k: v for k, v in row.items() if not k.endswith(volatile)} for row in history(records)]

    assert comparable(rebuilt) == comparable(offline_run["records"])
    assert final_results(rebuilt) == final_results(offline_run["records"])


def test_the_summary_holds_results_and_map_movement_without_config(offline_run):
    from analysis.health import run_health

    records = offline_run["records"]
    run_dir = offline_run["run_dir"]
    config = set(run_record(records)["config"]["update"])
    results = final_results(records)
    assert not set(results) & config, sorted(set(results) & config)
    assert not {"epochs", "batch_size", "time_slices", "run_id", "study", "dataset", "pair", "labels"} & set(results)
    record = json.loads((run_dir / "summary.json").read_text())
    assert results["test_accuracy"] == record["test_accuracy"] and results["n_train"] == record["n_train"]
    assert results["map/movement"] == run_health(run_dir)["map_movement"]  # the health table's number
    assert not [k for k in results if k.startswith("wandb")]
    assert record["wandb"] == {
        "requested_mode": "offline",
        "mode": "offline",
        "state": "complete",
        "id": run_dir.name,
        "project": "learning-curve-maps",
    }


def test_wandb_writes_nothing_outside_the_run_folder(offline_run):
    """In a fresh HOME with none of W&B's folder variables: its staging area, cache and service logs are in
    the run's W&B folder; nothing in ~/.local/share/wandb, ~/.cache/wandb, the outputs root or the clone."""
    home, root, run_dir = offline_run["home"], offline_run["root"], offline_run["run_dir"]
    assert not [p for p in home.rglob("*") if "wandb" in p.name.lower()]
    assert list(run_dir.glob("wandb/data/artifacts/staging/*")) and list(
        run_dir.glob("wandb/cache/**/core-debug-*.log")
    )
    outside = [p for p in root.rglob("*") if "wandb" in p.name.lower() and run_dir / "wandb" not in (p, *p.parents)]
    assert not outside, outside
    assert not (REPO / "wandb").exists() and not (REPO / "artifacts").exists()


def test_the_workspace_shows_every_run_of_a_study_with_its_null_runs(tmp_path):
    """A synthetic study of 1,500 run folders (750 real-label runs and their 750 shuffled-label null runs):
    every panel shows them all, and the run set takes both groups of the study."""
    runs = tmp_path / "headline" / "runs"
    for i in range(1500):
        (runs / f"gesture-p{i % 15:02d}-r{i:04d}-synthetic").mkdir(parents=True)
    spec = _dry_run_spec("--study", "headline", "--root", str(tmp_path), "--runs", "10")
    assert _values(spec, "maxRuns") == [1500]
    assert _values(_dry_run_spec("--study", "headline", "--runs", "2400"), "maxRuns") == [2400]
    filters = spec["spec"]["section"]["runSets"][0]["filters"]["filters"]
    groups = next(f["value"] for f in filters if f["key"]["name"] == "group")
    for labels in ("real", "shuffled"):
        cfg = run_config("data_source=sentence", "pair=3", "seed=7", f"paths.root={tmp_path}", f"labels={labels}")
        assert tracking.group_name(cfg) in groups
    assert not [f for f in filters if f["key"]["name"] in ("labels", "replicate", "data_source")]


def _values(node, key: str) -> list:
    """Every value of ``key`` anywhere in a nested spec."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [x for v in node.values() for x in _values(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in _values(v, key)]
    return []


def _dry_run_spec(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.dashboard", "--entity", "me", "--project", "p", "--dry-run", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_dashboard_dry_run_prints_the_spec_without_network(tmp_path):
    env = {
        **os.environ,
        "WANDB_BASE_URL": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "WANDB_API_KEY": "",
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.dashboard",
            "--entity",
            "me",
            "--project",
            "p",
            "--study",
            "headline",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    spec = json.loads(out.stdout)
    sections = [s["name"] for s in spec["spec"]["section"]["panelBankConfig"]["sections"]]
    assert sections == [
        "Study overview",
        "Class pairs",
        "Learning-curve maps",
        "Real vs shuffled labels",
        "Training health",
    ]
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.dashboard",
            "--entity",
            "",
            "--project",
            "p",
            "--study",
            "headline",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and "--entity" in bad.stderr


# ---------------------------------------------------------------------------
# A recomputed run: each attempt its own W&B run, one complete history
# ---------------------------------------------------------------------------


def test_a_recomputed_run_never_mixes_histories(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    import pipeline.run as run_module

    real_context = run_module.RunContext

    def failing_context(seed, on_step):
        def on_step_failing(step, readouts, curves):
            on_step(step, readouts, curves)
            if step == 2:
                raise RuntimeError("simulated crash at epoch 2")

        return real_context(seed, on_step_failing)

    plan = run_plan(f"paths.root={tmp_path}", f"trainer.epochs={EPOCHS}")
    monkeypatch.setattr(run_module, "RunContext", failing_context)
    with pytest.raises(RuntimeError, match="simulated"):
        execute(plan)
    monkeypatch.setattr(run_module, "RunContext", real_context)
    outcome = execute(plan)
    assert outcome.state == "done"
    files = wandb_files(outcome.run_dir)
    rid = outcome.run_id
    assert sorted(files) == [rid, f"{rid}-a2"]
    first, second = read_offline(files[rid]), read_offline(files[f"{rid}-a2"])
    assert [row["epoch"] for row in history(first)] == [1, 2]
    assert exit_code(first) == 1 and "run/complete" not in summary(first)  # W&B state: failed
    assert [row["epoch"] for row in history(second)] == list(range(1, EPOCHS + 1))
    assert exit_code(second) == 0 and summary(second)["run/complete"] == 1
    run = run_record(second)
    assert run["display_name"].endswith("attempt 2") and config_value(run, "earlier_attempts") == [rid]
    assert config_value(run, "run_id") == rid and config_value(run, "attempt") == 2


# ---------------------------------------------------------------------------
# python -m analysis --wandb
# ---------------------------------------------------------------------------


def test_analysis_logs_tables_figures_and_the_study_runs_offline_without_torch(tmp_path):
    """The analysis run: its tables, the report's figures as images on its page, and the study's runs with
    links to their W&B runs (the rebuilt mirror where the first was lost; none for a run with W&B off)."""
    from tests.analysis_fixtures import make_study

    study = make_study(tmp_path, study="jd", epochs=5, replicates=2, shuffled_replicates=1, broken=False)
    run_ids = sorted(study["runs"])
    off, lost = run_ids[0], run_ids[1]
    for rid in run_ids[1:]:
        path = tmp_path / "jd" / "runs" / rid / "summary.json"
        state = "failed" if rid == lost else "complete"
        entry = {"requested_mode": "offline", "mode": "offline", "state": state, "id": rid, "project": "lcm-test"}
        path.write_text(json.dumps({**json.loads(path.read_text()), "wandb": entry}))
    (tmp_path / "jd" / "runs" / lost / "wandb").mkdir()
    (tmp_path / "jd" / "runs" / lost / "wandb" / "rebuilt.json").write_text(json.dumps({"wandb_id": f"{lost}-a2"}))
    (tmp_path / "analysis").mkdir()
    pd.DataFrame({"metric": ["max"], "replicated": [True]}).to_csv(
        tmp_path / "analysis" / "replication.csv", index=False
    )
    code = (
        "import sys; from analysis.cli import main; rc = main(sys.argv[1:]); "
        "assert not [m for m in sys.modules if m == 'torch' or m.startswith('torch.')], 'torch imported'; "
        "sys.exit(rc)"
    )
    env = user_env(tmp_path / "home", WANDB_MODE="offline", MPLBACKEND="Agg", WANDB_ENTITY="team")
    args = ["--root", str(tmp_path), "--study", "jd", "--core-only", "--quiet", "--wandb"]
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr
    (wandb_file,) = (tmp_path / "analysis").glob("wandb/offline-run-*/run-*.wandb")
    records = read_offline(wandb_file)
    run = run_record(records)
    assert run["job_type"] == "analysis" and run["run_group"] == "jd"
    assert config_value(run, "run_groups") == ["jd-real", "jd-shuffled"]
    logged = history(records)[0]
    for name in ("metrics", "runs", "replication", "models/mixed_effects", "models/lrt", "models/ols"):
        assert f"{name}._type" in logged, name
    figures = sorted(p.stem for p in (tmp_path / "analysis" / "figures").glob("*.png"))
    assert (
        figures
        and [
            k[len("figures/") : -len("._type")]
            for k in sorted(logged)
            if k.startswith("figures/") and k.endswith("._type")
        ]
        == figures
    )
    assert all(logged[f"figures/{name}._type"] == "image-file" for name in figures)
    assert logged["runs/links._type"] == "html-file"
    runs_file = next((tmp_path / "analysis").glob("wandb/offline-run-*/files/" + logged["runs.path"]))
    runs = json.loads(runs_file.read_text())
    column = {name: i for i, name in enumerate(runs["columns"])}
    links = {row[column["run_id"]]: row[column["link"]] for row in runs["data"]}
    app = "https://forge.coreweave.com/wandb"  # wandb 0.31's app for its default server
    assert set(links) == set(run_ids) and links[off] == ""
    assert links[lost] == f"{app}/team/lcm-test/runs/{lost}-a2"
    assert all(links[rid] == f"{app}/team/lcm-test/runs/{rid}" for rid in run_ids[2:])
    artifact = next(r["artifact"] for r in records if r["type"] == "artifact" and r["artifact"]["type"] == "analysis")
    contents = {c["path"] for c in artifact["manifest"]["contents"]}
    assert {"report.html", "metrics.table.json", "replication.table.json", "models_ols.table.json"} <= contents
    assert {f"figures/{name}.png" for name in figures} <= contents
    table_file = next((tmp_path / "analysis").glob("wandb/offline-run-*/files/media/table/metrics_*.table.json"))
    logged_table = json.loads(table_file.read_text())
    metrics = pd.read_parquet(tmp_path / "analysis" / "metrics.parquet")
    assert len(logged_table["data"]) == len(metrics)
    column = logged_table["columns"].index("max")
    assert [row[column] for row in logged_table["data"]] == metrics["max"].tolist()
    assert exit_code(records) == 0
    assert not [p for p in (tmp_path / "home").rglob("*") if "wandb" in p.name.lower()]
