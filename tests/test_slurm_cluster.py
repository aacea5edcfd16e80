"""End-to-end checks of the one-node test Slurm cluster (slurm/cluster/*.sh),
of accounting (sacct) and of the project's Hydra launcher config
(conf/hydra/launcher/slurm.yaml) through hydra-submitit-launcher."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import time

import pytest

# The `slurm_cluster` fixture comes from tests/slurm_cluster.py, registered in
# tests/conftest.py (one session-wide cluster shared by every Slurm test).
from tests.slurm_cluster import SlurmCluster, sbatch, wait_for_jobs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_sbatch_array_all_completed(slurm_cluster: SlurmCluster, tmp_path):
    script = tmp_path / "task.sh"
    script.write_text('#!/bin/bash\necho "task $SLURM_ARRAY_TASK_ID on $(hostname)"\n')
    t0 = time.monotonic()
    job = sbatch(
        "--array=0-2",
        f"--partition={slurm_cluster.partition}",
        f"--chdir={tmp_path}",
        "--output=out_%a.txt",
        "--job-name=lcm-array",
        str(script),
    )
    states = wait_for_jobs(job, n=3, timeout=60)
    elapsed = time.monotonic() - t0
    assert states == {f"{job}_{i}": "COMPLETED" for i in range(3)}, states
    for i in range(3):
        assert (tmp_path / f"out_{i}.txt").read_text().startswith(f"task {i} on ")
    print(f"3-task array: {elapsed:.1f}s")


def test_scancel_shows_cancelled(slurm_cluster: SlurmCluster, tmp_path):
    job = sbatch(f"--chdir={tmp_path}", "--output=/dev/null", "--wrap=sleep 300")
    end = time.monotonic() + 30
    while time.monotonic() < end:  # cancel once it runs (a pending cancel also works)
        if subprocess.run(
            ["squeue", "-h", "-j", job, "-t", "R", "-o", "%i"], capture_output=True, text=True
        ).stdout.strip():
            break
        time.sleep(0.2)
    subprocess.run(["scancel", job], check=True)
    assert wait_for_jobs(job, n=1, timeout=60) == {job: "CANCELLED"}


TINY_APP = textwrap.dedent(
    """
    import os
    import hydra
    from hydra.core.hydra_config import HydraConfig

    @hydra.main(version_base="1.3", config_path=".", config_name="tiny_app")
    def main(cfg):
        out = HydraConfig.get().runtime.output_dir
        with open(os.path.join(out, "result.txt"), "w") as f:
            f.write(f"{cfg.x} {os.environ['SLURM_ARRAY_JOB_ID']} {os.environ['SLURM_ARRAY_TASK_ID']}\\n")
        return cfg.x * 10

    if __name__ == "__main__":
        main()
    """
)


def test_hydra_sweep_runs_as_one_job_array(slurm_cluster: SlurmCluster, tmp_path):
    (tmp_path / "tiny_app.py").write_text(TINY_APP)
    (tmp_path / "tiny_app.yaml").write_text("x: 0\n")
    sweep = tmp_path / "sweep"
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "tiny_app.py",
            "-m",
            f"hydra.searchpath=[file://{slurm_cluster.conf_dir}]",
            "hydra/launcher=slurm",
            f"hydra.sweep.dir={sweep}",
            "x=1,2",
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr

    rows = sorted((sweep / str(i) / "result.txt").read_text().split() for i in range(2))
    assert [r[0] for r in rows] == ["1", "2"]
    array_ids = {r[1] for r in rows}
    assert len(array_ids) == 1, f"expected ONE job array, got {array_ids}"
    (array_id,) = array_ids
    assert sorted(r[2] for r in rows) == ["0", "1"]

    # results came back through submitit's pickles
    returns = []
    for i in range(2):
        kind, job_return = pickle.loads(
            (sweep / ".submitit" / f"{array_id}_{i}" / f"{array_id}_{i}_0_result.pkl").read_bytes()
        )
        assert kind == "success"
        returns.append(job_return.return_value)
    assert sorted(returns) == [10, 20]

    script = (sweep / ".submitit" / array_id / f"{array_id}_submission.sh").read_text()
    assert "#SBATCH --array=0-1%2" in script
    assert "#SBATCH --mem=4GB" in script
    assert wait_for_jobs(array_id, n=2, timeout=30) == {f"{array_id}_0": "COMPLETED", f"{array_id}_1": "COMPLETED"}
    print(f"2-job Hydra sweep via hydra/launcher=slurm: {elapsed:.1f}s")
