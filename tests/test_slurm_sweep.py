"""The study sweep through `hydra/launcher=slurm` on a real one-node Slurm cluster:
records, a job killed part-way, status, and a relaunch that runs only what is missing."""

import json
import os
import subprocess
import sys
import time

import pytest

from pipeline.runfolder import read_status
from pipeline.status import collect
from tests.helpers import REPO
from tests.slurm_cluster import SlurmCluster, sacct_states

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _sweep(root, epochs, partition):
    args = [
        sys.executable,
        "-m",
        "pipeline",
        "-m",
        "seed=range(0,3)",
        f"trainer.epochs={epochs}",
        f"paths.root={root}",
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={partition}",
        "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=10",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_running_run(runs_dir, timeout=240):
    """A run folder whose status says running, with its claim (which names the Slurm task)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if runs_dir.is_dir():
            for run_dir in sorted(runs_dir.iterdir()):
                status = read_status(run_dir)
                claim = run_dir / "claim.json"
                if status and status["state"] == "running" and claim.exists():
                    info = json.loads(claim.read_text())
                    if info.get("slurm_job_id"):
                        return run_dir, info
        time.sleep(0.5)
    raise TimeoutError(f"no run started under {runs_dir} within {timeout}s")


def _array_task(job_id) -> str:
    """The ``<array job>_<task>`` name of the array task whose SLURM_JOB_ID is ``job_id``.

    The first task of an array has the array's own job id, and ``scancel <that id>``
    cancels every task of the array, so a task is always cancelled by its array name.
    """
    rows = subprocess.run(["squeue", "-h", "-o", "%A %i"], capture_output=True, text=True, check=True).stdout
    for row in rows.splitlines():
        numeric, name = row.split()
        if numeric == str(job_id) and "[" not in name:  # not the line of the array's pending tasks
            return name
    raise AssertionError(f"Slurm job {job_id} is not in the queue:\n{rows}")


def _wait_for_empty_queue(timeout=300):
    end = time.monotonic() + timeout
    while subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.strip():
        if time.monotonic() > end:
            raise TimeoutError("Slurm jobs still queued")
        time.sleep(0.5)


def test_sweep_on_slurm_survives_a_killed_job_and_resumes(slurm_cluster: SlurmCluster, tmp_path):
    root = tmp_path / "outputs"
    runs_dir = root / "headline" / "runs"
    proc = _sweep(root, epochs=40, partition=slurm_cluster.partition)
    try:
        victim, claim = _wait_for_running_run(runs_dir)
        # kill the array task that runs it, as a dying node would (SIGKILL: submitit
        # deliberately ignores the SIGTERM of a plain scancel, and the run would
        # finish within Slurm's KillWait)
        subprocess.run(["scancel", "--signal=KILL", "--full", _array_task(claim["slurm_job_id"])], check=True)
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, output[-3000:]
    assert "relaunch the same command" in output

    # The sweep command ends as soon as submitit learns of the lost task; the
    # other array tasks run on under Slurm and record their runs. Let them finish.
    _wait_for_empty_queue()
    # the killed run is not done; the others are complete and their records check out
    states = {p.name: (read_status(p) or {}).get("state") for p in runs_dir.iterdir()}
    assert states[victim.name] != "done"
    finished = {name: read_status(runs_dir / name)["ended"] for name, s in states.items() if s == "done"}
    assert len(finished) == 2, states
    for name in finished:
        run_dir = runs_dir / name
        assert {"config.yaml", "curves.parquet", "readouts.parquet", "summary.json"} <= {
            p.name for p in run_dir.iterdir()
        }
        assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 40
    report = collect(root)["headline"]
    lost = [p for p in report["problems"] if p["run_id"] == victim.name]
    assert lost and lost[0]["state"] in ("failed", "missing"), report
    # the accounting database saw the cancellation
    job_id = str(claim["slurm_job_id"])
    assert set(sacct_states(job_id).values()) & {"CANCELLED", "FAILED"}

    # relaunch: only the killed run runs again
    again = _sweep(root, epochs=40, partition=slurm_cluster.partition)
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 0, output[-3000:]
    assert "1 to run, 2 already done" in output
    assert read_status(runs_dir / victim.name)["state"] == "done"
    assert {n: read_status(runs_dir / n)["ended"] for n in finished} == finished
    assert collect(root)["headline"]["problems"] == []
