"""K tasks per Slurm job (`hydra.launcher.tasks_per_node=K`, the GPU-sharing option of docs/slurm.md) on a
real one-node Slurm cluster: the K processes of a job share its pack, and every run is computed exactly once."""

import os
import subprocess
import sys

import pytest

from pipeline.runfolder import read_status
from tests.helpers import REPO
from tests.slurm_cluster import SlurmCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_tasks_of_one_job_share_its_pack_and_compute_each_run_once(slurm_cluster: SlurmCluster, tmp_path):
    root = tmp_path / "outputs"
    runs = 4
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "-m",
            f"seed=range(0,{runs})",
            "trainer.epochs=1",
            f"paths.root={root}",
            "hydra/launcher=slurm",
            f"hydra.launcher.partition={slurm_cluster.partition}",
            "hydra.launcher.tasks_per_node=2",
            "hydra.launcher.mem_gb=2",
            "hydra.launcher.timeout_min=10",
            f"hydra.sweeper.runs_per_job={runs}",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dirs = sorted((root / "headline" / "runs").iterdir())
    assert len(run_dirs) == runs
    statuses = [read_status(run_dir) for run_dir in run_dirs]
    assert all(s["state"] == "done" for s in statuses), statuses
    # one Slurm job (the pack), two processes in it, each run started once
    assert len({s["slurm_job_id"] for s in statuses}) == 1 and statuses[0]["slurm_job_id"]
    assert len({s["pid"] for s in statuses}) == 2, statuses
    for run_dir in run_dirs:
        log = (run_dir / "run.log").read_text().splitlines()
        starts = [line for line in log if "pipeline.run: run " in line and " -> " in line]
        assert len(starts) == 1, starts
