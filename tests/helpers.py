"""Helpers the tests share: composing run configs and running the commands the way a user does.

Test modules import helpers from here (or from the fixture modules analysis_fixtures.py, fixtures_data.py,
slurm_cluster.py), never from one another or from conftest.py (tests/test_codebase.py checks it).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from pipeline.planning import CONFIG_DIR, Plan, Planner

REPO = Path(__file__).resolve().parent.parent


def run_plan(*overrides: str) -> Plan:
    """The plan of a run (what ``pipeline.run.execute`` computes) for command-line overrides."""
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
        return Planner(lambda o: compose("config", overrides=list(o))).plan(cfg, list(overrides))


def run_config(*overrides: str):
    """The validated run config (with its design block) for command-line overrides."""
    return run_plan(*overrides).cfg


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 300):
    """`python -m pipeline ...` in a subprocess, as a user runs it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO,
        timeout=timeout,
    )


def dead_pid() -> int:
    """The id of a process that has exited (for claims whose owner is gone)."""
    proc = mp.get_context("spawn").Process(target=int)
    proc.start()
    proc.join()
    return proc.pid


def fill_disk(folder: Path) -> None:
    """Write zeros into ``folder / "filler"`` until its file system is full (ENOSPC ends it)."""
    with open(folder / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (64 << 10))
                fh.flush()
        except OSError:
            pass
