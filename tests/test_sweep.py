"""Study sweeps on the local launcher: the design grid, resuming, failures, claims, status."""

import csv
import json
import os
import re

import pytest
import yaml

from pipeline.runfolder import read_status
from pipeline.status import collect
from tests.helpers import run_cli

pytestmark = pytest.mark.slow
FAST = ["trainer.epochs=1"]


def _runs(root):
    runs_dir = root / "headline" / "runs"
    return {p.name: read_status(p) for p in runs_dir.iterdir()} if runs_dir.is_dir() else {}


def test_counterbalanced_sweep_resume_and_explicit_cells(tmp_path):
    result = run_cli("-m", "seed=range(0,3)", *FAST, f"paths.root={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = _runs(tmp_path)
    assert len(runs) == 3 and all(s["state"] == "done" for s in runs.values())
    assert sorted(r.split("-r")[0] for r in runs) == ["gesture-p00", "gesture-p01", "gesture-p02"]
    for name in runs:
        design = yaml.safe_load((tmp_path / "headline" / "runs" / name / "config.yaml").read_text())["design"]
        assert design["assignment"] == "counterbalanced" and design["participant"] == design["pair"]
    first_done = {name: s["ended"] for name, s in runs.items()}

    # relaunch: nothing reruns
    again = run_cli("-m", "seed=range(0,3)", *FAST, f"paths.root={tmp_path}")
    assert again.returncode == 0 and "0 to run, 3 already done" in again.stderr
    # the explicit form of the same cells names the same runs, so they are skipped too
    explicit = run_cli("-m", "data_source=gesture", "pair=0,1,2", "seed=0", *FAST, f"paths.root={tmp_path}")
    assert explicit.returncode == 0 and "0 to run, 3 already done" in explicit.stderr
    assert {n: s["ended"] for n, s in _runs(tmp_path).items()} == first_done

    plans = list((tmp_path / "headline" / "plans").glob("*.csv"))
    assert len(plans) == 3
    with open(sorted(plans)[0]) as fh:
        rows = list(csv.DictReader(fh))
    assert {r["run_id"] for r in rows} == set(runs) and all("expected_run_id=" in r["overrides"] for r in rows)


def test_a_failed_run_does_not_stop_the_sweep_and_is_rerun_on_relaunch(tmp_path):
    # a minimum length no Wiimote series reaches leaves no sequence: that run fails when it loads its data
    # (a file's content, which planning does not read); the run with the data set's own minimum must finish
    args = ["-m", "dataset=wiimote", "dataset.min_length=20,100000", "pair=0", *FAST, f"paths.root={tmp_path}"]
    result = run_cli(*args)
    assert result.returncode != 0
    assert "1 of 2 runs failed" in result.stderr and "no sequences for classes" in result.stderr
    states = sorted(s["state"] for s in _runs(tmp_path).values())
    assert states == ["done", "failed"]
    # the progress lines name each run as it ends, the failed one with its error
    (failed_id,) = [name for name, s in _runs(tmp_path).items() if s["state"] == "failed"]
    assert re.search(
        rf"^\[study\] {failed_id}  failed .*\(\d/2 done, 1 failed, ETA .*\)  .*no sequences",
        result.stderr,
        re.MULTILINE,
    )

    report = collect(tmp_path)["headline"]
    assert report["cells"]["gesture/pair 0"] == {"done": 1, "failed": 1}
    # the two minimum lengths are two conditions of the sweep, counted apart
    short, long = (f"dataset.min_length={n} dataset=wiimote trainer.epochs=1" for n in (20, 100000))
    assert report["conditions"] == {
        long: {"gesture/pair 0": {"failed": 1}},
        short: {"gesture/pair 0": {"done": 1}},
    }
    (problem,) = report["problems"]
    assert problem["state"] == "failed" and problem["detail"].startswith("ValueError: dataset 'wiimote': no sequences")

    status_cli = run_cli_module("pipeline.status", "--root", str(tmp_path))
    assert f"study headline [{long}]: 0 done, 1 failed, 0 running, 0 missing" in status_cli.stdout
    assert f"study headline [{short}]: 1 done, 0 failed, 0 running, 0 missing" in status_cli.stdout

    again = run_cli(*args)
    assert "1 to run, 1 already done" in again.stderr  # only the failed one is retried


def test_a_live_claim_is_left_alone(tmp_path):
    first = run_cli("seed=0", *FAST, f"paths.root={tmp_path}")
    (run_dir,) = (tmp_path / "headline" / "runs").iterdir()
    # another live process (this test) owns the folder of seed 1's run; its id
    # comes from a scratch launch of that run
    probe = run_cli("-m", "seed=1", *FAST, f"paths.root={tmp_path / 'scratch'}")
    (scratch_run,) = (tmp_path / "scratch" / "headline" / "runs").iterdir()
    other = run_dir.parent / scratch_run.name
    other.mkdir()
    (other / "claim.json").write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid()}))
    result = run_cli("-m", "seed=range(0,2)", *FAST, f"paths.root={tmp_path}")
    assert first.returncode == 0 and probe.returncode == 0
    assert result.returncode == 0
    assert "0 to run, 1 already done (skipped), 1 being computed elsewhere" in result.stderr
    assert not (other / "status.json").exists()
    assert collect(tmp_path)["headline"]["cells"]["gesture/pair 1"] == {"running": 1}


def test_a_job_whose_config_changed_since_launch_refuses_to_run(tmp_path):
    result = run_cli("expected_run_id=gesture-p00-r000-0000000000", *FAST, f"paths.root={tmp_path}")
    assert result.returncode != 0
    assert "conf/ or the code changed while the job waited" in result.stdout + result.stderr
    assert not (tmp_path / "headline" / "runs").exists()


def test_label_shuffled_null_runs_are_one_switch(tmp_path):
    result = run_cli("-m", "seed=0", "labels=real,shuffled", *FAST, f"paths.root={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    runs = _runs(tmp_path)
    assert len(runs) == 2
    labels = {
        yaml.safe_load((tmp_path / "headline" / "runs" / n / "config.yaml").read_text())["design"]["labels"]
        for n in runs
    }
    assert labels == {"real", "shuffled"}


def run_cli_module(module, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=60)


def test_packed_runs_equal_solo_runs_and_a_failed_run_does_not_stop_its_pack(tmp_path):
    """Two runs in one job (runs_per_job=2): the first fails (no series is that long), the second,
    whose config the job derives from the first one's, still runs and its record is byte for
    byte that of the same run launched on its own."""
    packed = run_cli(
        "-m",
        "data_source=gesture",
        "dataset=wiimote",
        "dataset.min_length=100000,20",
        "pair=1",
        *FAST,
        "hydra.sweeper.runs_per_job=2",
        f"paths.root={tmp_path / 'packed'}",
    )
    assert packed.returncode != 0
    assert "launching 2 runs as 1 job of up to 2 runs each" in packed.stderr
    assert "1 of 2 runs failed" in packed.stderr
    runs = _runs(tmp_path / "packed")
    assert sorted(s["state"] for s in runs.values()) == ["done", "failed"]
    (failed,) = [name for name, s in runs.items() if s["state"] == "failed"]
    assert f"  {failed}: " in packed.stderr  # the summary names the run, not the pack
    (done,) = [name for name, s in runs.items() if s["state"] == "done"]

    solo = run_cli("data_source=gesture", "dataset=wiimote", "pair=1", *FAST, f"paths.root={tmp_path / 'solo'}")
    assert solo.returncode == 0, solo.stderr[-3000:]
    (solo_dir,) = (tmp_path / "solo" / "headline" / "runs").iterdir()
    assert solo_dir.name == done
    packed_dir = tmp_path / "packed" / "headline" / "runs" / done
    for name in ("curves.parquet", "readouts.parquet"):
        assert (solo_dir / name).read_bytes() == (packed_dir / name).read_bytes()
    configs = [yaml.safe_load((d / "config.yaml").read_text()) for d in (solo_dir, packed_dir)]
    for cfg in configs:
        cfg.pop("paths")  # the two roots differ
        cfg.pop("expected_run_id")  # set by the sweeper only
    assert configs[0] == configs[1]
