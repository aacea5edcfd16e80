"""W&B mirror, workspace and analysis export, checked by reading real offline W&B files back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from analysis.collect import collect_runs
from pipeline import dashboard, tracking
from pipeline.curve_metrics import curve_metrics, smooth_3rs3r
from pipeline.run import execute
from pipeline.schema import KNN_TIE_SHARE
from tests.helpers import REPO, run_cli, run_config, run_plan

EPOCHS = 3
WANDB_CLI = [sys.executable, "-c", "import sys; from wandb.cli.cli import cli; sys.exit(cli())"]


def read_offline(wandb_file: Path) -> list[dict]:
    """Every record of an offline run, read with `wandb leet inspect --json` (no network)."""
    out = subprocess.run(
        [*WANDB_CLI, "leet", "inspect", "--json", str(wandb_file)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def history(records: list[dict]) -> list[dict]:
    return [r["history"]["item"] for r in records if r["type"] == "history"]


def run_record(records: list[dict]) -> dict:
    return next(r["run"] for r in records if r["type"] == "run")


def summary(records: list[dict]) -> dict:
    out: dict = {}
    for r in records:
        if r["type"] == "summary":
            out.update(r["summary"].get("update", {}))
    return out


def exit_code(records: list[dict]) -> int | None:
    return next((r["exit"].get("exit_code", 0) for r in records if r["type"] == "exit"), None)


def config_value(run: dict, key: str):
    item = run["config"]["update"][key]
    return json.loads(item["value_json"]) if isinstance(item, dict) and "value_json" in item else item


def wandb_files(run_dir: Path) -> dict[str, Path]:
    """W&B id -> its offline .wandb file, for every attempt logged in a run folder."""
    return {p.stem[len("run-") :]: p for p in run_dir.glob("wandb/offline-run-*/run-*.wandb")}


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

    table, key, _, caption = tracking.COMPANION_MEDIA[study]
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
    assert tracking.companion_image("critical_pathways", tmp_path) is None
    assert tracking.companion_image("sequence", tmp_path) is None


# ---------------------------------------------------------------------------
# A real run, offline: equal to the analysis, and every workspace panel has its data
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    env = {
        "WANDB_MODE": "offline",
        "WANDB_CACHE_DIR": str(root / ".wandb-cache"),
        "WANDB_CONFIG_DIR": str(root / ".wandb-cache"),
        "WANDB_DATA_DIR": str(root / ".wandb-cache"),
    }
    result = run_cli(f"trainer.epochs={EPOCHS}", f"paths.root={root}", "logger.wandb.media_every=2", env=env)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (root / "headline" / "runs").iterdir()
    (wandb_file,) = wandb_files(run_dir).values()
    return {"root": root, "run_dir": run_dir, "records": read_offline(wandb_file)}


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


def test_analysis_logs_tables_and_report_offline_without_torch(tmp_path):
    from tests.analysis_fixtures import make_study

    make_study(tmp_path, study="jd", epochs=5, replicates=2, shuffled_replicates=1, broken=False)
    (tmp_path / "analysis").mkdir()
    pd.DataFrame({"metric": ["max"], "replicated": [True]}).to_csv(
        tmp_path / "analysis" / "replication.csv", index=False
    )
    code = (
        "import sys; from analysis.cli import main; rc = main(sys.argv[1:]); "
        "assert not [m for m in sys.modules if m == 'torch' or m.startswith('torch.')], 'torch imported'; "
        "sys.exit(rc)"
    )
    env = {**os.environ, "WANDB_MODE": "offline", "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--root",
            str(tmp_path),
            "--study",
            "jd",
            "--core-only",
            "--no-figures",
            "--quiet",
            "--wandb",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (wandb_file,) = (tmp_path / "analysis").glob("wandb/offline-run-*/run-*.wandb")
    records = read_offline(wandb_file)
    run = run_record(records)
    assert run["job_type"] == "analysis" and run["run_group"] == "jd"
    logged = set(history(records)[0])
    for name in ("metrics", "replication", "models/mixed_effects", "models/lrt", "models/ols"):
        assert f"{name}._type" in logged, name
    artifact = next(r["artifact"] for r in records if r["type"] == "artifact" and r["artifact"]["type"] == "analysis")
    contents = {c["path"] for c in artifact["manifest"]["contents"]}
    assert {"report.html", "metrics.table.json", "replication.table.json", "models_ols.table.json"} <= contents
    table_file = next((tmp_path / "analysis").glob("wandb/offline-run-*/files/media/table/metrics_*.table.json"))
    logged_table = json.loads(table_file.read_text())
    metrics = pd.read_parquet(tmp_path / "analysis" / "metrics.parquet")
    assert len(logged_table["data"]) == len(metrics)
    column = logged_table["columns"].index("max")
    assert [row[column] for row in logged_table["data"]] == metrics["max"].tolist()
    assert exit_code(records) == 0
