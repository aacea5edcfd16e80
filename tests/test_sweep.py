"""Study sweeps on the local launcher: the design grid, resuming, failures, claims, status."""

import csv
import json
import os
import re

import pytest
import yaml

from pipeline.runfolder import read_status
from pipeline.status import collect
from tests.bad_inputs import clean_watch_file, diverging_watch_file
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
    # NaN in the PEN recordings of one copy of the data: its run (pair 0 holds PEN) passes planning and fails
    # while training; the run on the clean copy must finish
    nan = diverging_watch_file(tmp_path / "nan" / "watch_dataset.npy")
    clean = clean_watch_file(tmp_path / "clean" / "watch_dataset.npy")
    root = tmp_path / "out"
    args = ["-m", "data_source=gesture", f"dataset.root={nan},{clean}", "pair=0", *FAST, f"paths.root={root}"]
    result = run_cli(*args)
    assert result.returncode != 0
    assert "1 of 2 runs failed" in result.stderr and "states are not finite" in result.stderr, result.stderr[-3000:]
    states = sorted(s["state"] for s in _runs(root).values())
    assert states == ["done", "failed"]
    # the progress lines name each run as it ends, the failed one with its error
    (failed_id,) = [name for name, s in _runs(root).items() if s["state"] == "failed"]
    assert re.search(
        rf"^\[study\] {failed_id}  failed .*\(\d/2 done, 1 failed, ETA .*\)  .*not finite",
        result.stderr,
        re.MULTILINE,
    )

    report = collect(root)["headline"]
    assert report["cells"]["gesture/pair 0"] == {"done": 1, "failed": 1}
    # the two data files are two conditions of the sweep, counted apart
    bad, good = (f"dataset.root={path} trainer.epochs=1" for path in (nan, clean))
    assert report["conditions"] == {
        bad: {"gesture/pair 0": {"failed": 1}},
        good: {"gesture/pair 0": {"done": 1}},
    }
    (problem,) = report["problems"]
    assert problem["state"] == "failed" and problem["detail"].startswith("ValueError: probe.knn: the reference")

    status_cli = run_cli_module("pipeline.status", "--root", str(root))
    assert f"study headline [{bad}]: 0 done, 1 failed, 0 running, 0 missing" in status_cli.stdout
    assert f"study headline [{good}]: 1 done, 0 failed, 0 running, 0 missing" in status_cli.stdout

    again = run_cli(*args)
    assert "1 to run, 1 already done" in again.stderr  # only the failed one is retried


def test_a_live_claim_is_left_alone_awaited_and_verified(tmp_path):
    """seed 1's folder is owned by another live process (this test): the sweep leaves it alone, waits for
    it, and exits 0 only once its owner has finished it (the record checks out)."""
    import subprocess
    import sys
    import threading
    import time

    import pandas as pd

    from pipeline.record import RunRecord
    from tests.helpers import REPO, run_plan

    root = tmp_path / "out"
    first = run_cli("seed=0", *FAST, f"paths.root={root}")
    assert first.returncode == 0, first.stderr[-3000:]
    other = root / "headline" / "runs" / run_plan("seed=1", *FAST, f"paths.root={root}").run_id
    other.mkdir()
    (other / "claim.json").write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid()}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "-m", "seed=range(0,2)", *FAST, f"paths.root={root}"],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    deadline = time.monotonic() + 300
    while not any("waiting for 1 run" in line for line in lines):
        assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)[-3000:]
        time.sleep(0.2)
    assert not (other / "status.json").exists()  # left alone
    # the owner finishes the run, then lets go of it
    record = RunRecord(other, other.name, cell="gesture/pair 1")
    record.write_config("design: {}\n")
    record.mark_running()
    record.write_results(pd.DataFrame({"v": [1]}), pd.DataFrame({"v": [1]}), {"run_id": other.name})
    record.mark_done()
    (other / "claim.json").unlink()
    proc.wait(timeout=120)
    err = "".join(lines)
    assert proc.returncode == 0, err[-3000:]
    assert "0 to run, 1 already done (skipped), 1 being computed elsewhere" in err
    assert "all 2 runs done (verified)" in err


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
    """Two runs in one job (runs_per_job=2): the first fails (its data holds NaN), the second, whose config
    the job derives from the first one's, still runs and its record is byte for byte that of the same run
    launched on its own."""
    nan = diverging_watch_file(tmp_path / "nan" / "watch_dataset.npy")
    clean = clean_watch_file(tmp_path / "clean" / "watch_dataset.npy")
    packed = run_cli(
        "-m",
        "data_source=gesture",
        f"dataset.root={nan},{clean}",
        "pair=1",
        *FAST,
        "hydra.sweeper.runs_per_job=2",
        f"paths.root={tmp_path / 'packed'}",
    )
    assert packed.returncode != 0
    assert "launching 2 runs as 1 job of up to 2 runs each" in packed.stderr, packed.stderr[-3000:]
    assert "1 of 2 runs failed" in packed.stderr
    runs = _runs(tmp_path / "packed")
    assert sorted(s["state"] for s in runs.values()) == ["done", "failed"]
    (failed,) = [name for name, s in runs.items() if s["state"] == "failed"]
    assert f"  {failed}: " in packed.stderr  # the summary names the run, not the pack
    (done,) = [name for name, s in runs.items() if s["state"] == "done"]

    solo = run_cli("data_source=gesture", f"dataset.root={clean}", "pair=1", *FAST, f"paths.root={tmp_path / 'solo'}")
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
