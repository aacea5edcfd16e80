"""Shared test fixtures: composing run configs the way `python -m pipeline` does.

Tests that need software outside the virtual environment (a real Slurm cluster; R with lme4 for the
live cross-checks) carry the ``system`` marker or skip where it is absent. ``LCM_TEST_SYSTEM``
decides: unset, they run where those pieces are installed (a private, temporary Slurm cluster: see
tests/slurm_cluster.py); ``1`` (``make test-system``, CI) installs what is missing first (apt-get,
as root) and fails instead of skipping; ``0`` skips the Slurm tests. ``-m "not system"`` deselects them.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pipeline.planning import CONFIG_DIR, prepare
from tests.slurm_cluster import slurm_cluster  # noqa: F401  (the one-node Slurm fixture)

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "system: needs software outside the venv (a real Slurm cluster); runs where it is installed, "
        "LCM_TEST_SYSTEM=1 (make test-system) installs it",
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.system)


@pytest.fixture(autouse=True)
def _quiet_wandb(monkeypatch, tmp_path_factory):
    """W&B stays off unless a test turns it on, and never writes into ~/.cache."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cache = tmp_path_factory.getbasetemp() / "wandb-cache"
    monkeypatch.setenv("WANDB_CACHE_DIR", str(cache))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(cache))
    monkeypatch.setenv("WANDB_DATA_DIR", str(cache))


def run_config(*overrides: str):
    """The validated run config (with its design block) for command-line overrides."""
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
        return prepare(cfg, list(overrides), lambda o: compose("config", overrides=list(o)))


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
