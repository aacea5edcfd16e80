"""A real one-node Slurm cluster for tests (pytest fixture ``slurm_cluster``).

The session-scoped fixture runs ``slurm/cluster/install.sh`` and
``slurm/cluster/start.sh`` (munge, MariaDB + slurmdbd accounting, slurmctld,
slurmd on this machine), yields a :class:`SlurmCluster`, and always runs
``slurm/cluster/stop.sh`` at the end of the session, also when tests fail.

Needs root and apt (Debian 12). Outside CI it skips, with the reason, when
either is missing; in CI (``CI=true``) it fails instead, so a broken runner
cannot hide the Slurm tests.

Register it once for the whole suite, in ``tests/conftest.py``::

    pytest_plugins = ["tests.slurm_cluster"]

(or import the fixture into a test module:
``from tests.slurm_cluster import slurm_cluster``). The helpers below
(:func:`sbatch`, :func:`wait_for_jobs`, :func:`sacct_states`) are for tests
that submit jobs by hand.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_DIR = REPO_ROOT / "slurm" / "cluster"
CONF_DIR = REPO_ROOT / "conf"  # for hydra.searchpath in test apps

INSTALL_TIMEOUT_S = 900
START_TIMEOUT_S = 180
STOP_TIMEOUT_S = 180


@dataclasses.dataclass(frozen=True)
class SlurmCluster:
    """What a test needs to know about the running test cluster."""

    partition: str
    cluster: str
    state_dir: Path
    slurm_conf: Path
    repo_root: Path
    conf_dir: Path
    timings: dict[str, float]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _unavailable_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"the test Slurm cluster needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the test Slurm cluster needs root (it installs packages and starts daemons)"
    if shutil.which("apt-get") is None:
        return "the test Slurm cluster needs apt-get (Debian 12)"
    return None


def _run_script(name: str, timeout: float) -> tuple[float, str]:
    """Run slurm/cluster/<name>; return (seconds, output). Raise on failure."""
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(CLUSTER_DIR / name)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    dt = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"slurm/cluster/{name} failed (exit {proc.returncode}) after {dt:.1f}s:\n{proc.stdout}")
    return dt, proc.stdout


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    reason = _unavailable_reason()
    if reason is not None:
        if _in_ci():
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)

    timings: dict[str, float] = {}
    try:
        timings["install_s"], _ = _run_script("install.sh", INSTALL_TIMEOUT_S)
        timings["start_s"], out = _run_script("start.sh", START_TIMEOUT_S)
        sys.stderr.write(out)
        yield SlurmCluster(
            partition=os.environ.get("LCM_SLURM_PARTITION", "debug"),
            cluster=os.environ.get("LCM_SLURM_CLUSTER", "lcm"),
            state_dir=Path(os.environ.get("LCM_SLURM_STATE", "/tmp/lcm-slurm")),
            slurm_conf=Path("/etc/slurm/slurm.conf"),
            repo_root=REPO_ROOT,
            conf_dir=CONF_DIR,
            timings=timings,
        )
    finally:
        # Always stop, also after a failed start (stop.sh is idempotent).
        try:
            _run_script("stop.sh", STOP_TIMEOUT_S)
        except Exception as exc:  # never mask the test's own error
            sys.stderr.write(f"slurm_cluster: stop.sh failed: {exc}\n")


# ----------------------------------------------------------------- helpers


def _check(args: list[str], timeout: float = 30) -> str:
    proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def sbatch(*args: str) -> str:
    """Submit with sbatch; return the job id (for an array: the array job id)."""
    out = _check(["sbatch", "--parsable", *args])
    return out.strip().split(";")[0]


def sacct_states(job_id: str) -> dict[str, str]:
    """{job id (e.g. '12_0'): state (e.g. 'COMPLETED', 'CANCELLED')} of a job's
    allocations (no steps), as the accounting DB has them."""
    out = _check(["sacct", "-j", str(job_id), "-X", "-n", "-P", "-o", "JobID,State"])
    states = {}
    for line in out.splitlines():
        if "|" in line:
            jid, state = line.split("|", 1)
            states[jid.strip()] = state.strip().split()[0]  # 'CANCELLED by 0' -> 'CANCELLED'
    return states


def wait_for_jobs(job_id: str, n: int = 1, timeout: float = 60.0) -> dict[str, str]:
    """Wait until job_id left the queue and sacct records n allocations for it,
    all in a final state; return sacct_states(job_id)."""
    final = {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
    }
    end = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < end:
        queued = _check(["squeue", "-h", "-j", str(job_id), "-o", "%i"])
        states = sacct_states(job_id)
        expanded = {k: v for k, v in states.items() if "[" not in k}  # skip '12_[1-2]' pending rows
        if not queued.strip() and len(expanded) >= n and set(expanded.values()) <= final:
            return expanded
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id}: not finished after {timeout}s; sacct says {states}")
