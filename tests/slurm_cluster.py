"""A real one-node Slurm cluster for tests (pytest fixture ``slurm_cluster``).

The session-scoped fixture starts a private cluster with ``slurm/cluster/start.sh``
(munge, MariaDB + slurmdbd accounting, slurmctld, slurmd on this machine) in a
fresh temporary state folder, on ports found free at start, points this process's
clients at it (``SLURM_CONF``), yields a :class:`SlurmCluster`, and always stops it
with ``slurm/cluster/stop.sh`` at the end of the session, also when tests fail,
then removes the folder. Nothing is written outside that folder, and stop.sh ends
only this cluster's daemons and jobs, so a Slurm or another test session on the
same machine is left alone.

When it runs (``LCM_TEST_SYSTEM``, see tests/conftest.py):

- unset: where Slurm's daemons are installed and the tests run as root; otherwise
  the Slurm tests skip, saying what is missing and how to opt in;
- ``1`` (``make test-system``, CI): ``slurm/cluster/install.sh`` first installs what
  is missing (apt-get, root), and a cluster that cannot start fails the tests;
- ``0``: never (the Slurm tests skip).

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
import tempfile
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

#: the commands of the one-node cluster; all of them must be on PATH for it to start
DAEMONS = ("munged", "mungekey", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")

#: the environment variable that opts in to (1) or out of (0) the tests needing system software
OPT_IN = "LCM_TEST_SYSTEM"


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


def system_tests() -> str:
    """``"auto"`` (run where the pieces are present), ``"install"`` (opted in) or ``"off"``."""
    value = os.environ.get(OPT_IN, "").strip().lower()
    if value in ("1", "true", "yes"):
        return "install"
    if value in ("0", "false", "no"):
        return "off"
    return "auto"


def missing_pieces() -> str | None:
    """Why the cluster cannot start here without installing anything, or None."""
    if not sys.platform.startswith("linux"):
        return f"the test Slurm cluster needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the test Slurm cluster needs root (slurmd runs jobs as their users)"
    absent = [c for c in DAEMONS if shutil.which(c) is None]
    if absent:
        return f"Slurm's daemons are not installed ({', '.join(absent)} not on PATH)"
    return None


def _skip_or_fail(reason: str) -> None:
    if system_tests() == "install":
        pytest.fail(f"{OPT_IN}=1 but {reason}", pytrace=False)
    pytest.skip(
        f"{reason}; `make test-system` (root, Debian: installs Slurm, munge and MariaDB with apt) "
        f"or {OPT_IN}=1 runs these tests"
    )


def _run_script(name: str, timeout: float, *args: str) -> tuple[float, str]:
    """Run slurm/cluster/<name>; return (seconds, output). Raise on failure."""
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(CLUSTER_DIR / name), *args],
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


def _install_if_opted_in(timings: dict[str, float]) -> None:
    """Skip (or, opted in, fail) where the cluster cannot start; opted in, install what is missing first."""
    reason = missing_pieces()
    if reason is None:
        return
    if system_tests() != "install":
        _skip_or_fail(reason)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        _skip_or_fail(f"{reason}, and installing them needs root and apt-get (Debian 12)")
    timings["install_s"], _ = _run_script("install.sh", INSTALL_TIMEOUT_S)
    reason = missing_pieces()
    if reason is not None:
        _skip_or_fail(f"after slurm/cluster/install.sh: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    if system_tests() == "off":
        pytest.skip(f"{OPT_IN}=0: the tests that need a real Slurm are turned off")
    timings: dict[str, float] = {}
    _install_if_opted_in(timings)
    state = Path(tempfile.mkdtemp(prefix="lcm-slurm-"))
    saved_conf = os.environ.get("SLURM_CONF")
    try:
        timings["start_s"], out = _run_script("start.sh", START_TIMEOUT_S, str(state))
        sys.stderr.write(out)
        # this process's clients (sbatch, squeue, sacct, submitit) and every process it starts
        os.environ["SLURM_CONF"] = str(state / "etc" / "slurm.conf")
        yield SlurmCluster(
            partition=os.environ.get("LCM_SLURM_PARTITION", "debug"),
            cluster=os.environ.get("LCM_SLURM_CLUSTER", "lcm"),
            state_dir=state,
            slurm_conf=state / "etc" / "slurm.conf",
            repo_root=REPO_ROOT,
            conf_dir=CONF_DIR,
            timings=timings,
        )
    finally:
        if saved_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved_conf
        # Always stop, also after a failed start (stop.sh is idempotent), then leave no trace.
        try:
            if (state / "etc" / "slurm.conf").exists():
                _run_script("stop.sh", STOP_TIMEOUT_S, str(state))
            shutil.rmtree(state, ignore_errors=True)
        except Exception as exc:  # never mask the test's own error
            sys.stderr.write(f"slurm_cluster: stop.sh failed (state kept in {state}): {exc}\n")


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
