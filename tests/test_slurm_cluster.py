"""End-to-end checks of the one-node test Slurm cluster (slurm/cluster/*.sh),
of accounting (sacct) and of the project's Hydra launcher config
(conf/hydra/launcher/slurm.yaml) through hydra-submitit-launcher."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# The `slurm_cluster` fixture comes from tests/slurm_cluster.py, registered in
# tests/conftest.py (one session-wide cluster shared by every Slurm test).
from tests.helpers import REPO
from tests.slurm_cluster import SlurmCluster, sbatch, wait_for_jobs

pytestmark = [pytest.mark.timeout(900)]


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def _ports(state) -> dict[str, int]:
    pairs = (line.split("=") for line in (state / "ports").read_text().split())
    return {key: int(value) for key, value in pairs}


def _running(job: str, env: dict) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job, "-t", "R", "-o", "%i"], capture_output=True, text=True, env=env)
    return out.stdout.strip() == job


def _wait_running(job: str, env: dict, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not _running(job, env):
        assert time.monotonic() < end, f"job {job} did not start within {timeout}s"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_second_cluster_is_private_and_its_stop_leaves_the_first_alone(slurm_cluster: SlurmCluster, tmp_path):
    """Two clusters side by side: their own folders and ports; stopping one ends its daemons and
    jobs only (a job of the other cluster runs on), and nothing is written to /etc/slurm."""
    second = tmp_path / "second"
    scripts = slurm_cluster.repo_root / "slurm" / "cluster"
    subprocess.run(["bash", scripts / "start.sh", second], check=True, capture_output=True, timeout=180)
    first_env = dict(os.environ)
    second_env = {**os.environ, "SLURM_CONF": str(second / "etc" / "slurm.conf")}
    try:
        assert not set(_ports(slurm_cluster.state_dir).values()) & set(_ports(second).values())
        mine = sbatch(f"--chdir={tmp_path}", "--output=/dev/null", "--wrap=sleep 300")
        theirs = subprocess.run(
            ["sbatch", "--parsable", f"--chdir={tmp_path}", "--output=/dev/null", "--wrap=sleep 300"],
            capture_output=True,
            text=True,
            env=second_env,
            check=True,
        ).stdout.strip()
        _wait_running(mine, first_env)
        _wait_running(theirs, second_env)
        pids = {p.stem: int(p.read_text()) for p in (second / "run").glob("*.pid")}
        assert set(pids) == {"slurmctld", "slurmd", "slurmdbd"}
    finally:
        stop = subprocess.run(["bash", scripts / "stop.sh", second], capture_output=True, text=True, timeout=180)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert f"cancelling this cluster's jobs: {theirs}" in stop.stdout
    for name, pid in pids.items():
        assert not os.path.exists(f"/proc/{pid}"), f"{name} of the stopped cluster still runs"
    # the first cluster and its job are untouched
    assert _running(mine, first_env)
    subprocess.run(["scancel", mine], check=True)
    assert wait_for_jobs(mine, n=1, timeout=60) == {mine: "CANCELLED"}
    etc = [p for p in Path("/etc/slurm").glob("*") if p.is_file()] if Path("/etc/slurm").is_dir() else []
    assert not [p for p in etc if "lcm-test-cluster" in p.read_text(errors="replace")]


def test_stop_needs_the_state_folder_of_a_cluster_it_started(tmp_path):
    """stop.sh never guesses which cluster to stop: no folder, or a folder start.sh did not write, is refused."""
    if os.geteuid() != 0:
        pytest.skip("stop.sh runs as root only")
    stop = REPO / "slurm" / "cluster" / "stop.sh"
    env = {k: v for k, v in os.environ.items() if k != "LCM_SLURM_STATE"}
    nothing = subprocess.run(["bash", stop], capture_output=True, text=True, env=env)
    assert nothing.returncode == 2 and "which cluster?" in nothing.stderr
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "slurm.conf").write_text("ClusterName=somebody-elses\n")
    foreign = subprocess.run(["bash", stop, tmp_path], capture_output=True, text=True, env=env)
    assert foreign.returncode == 2 and "is not the state folder of a test cluster" in foreign.stderr
