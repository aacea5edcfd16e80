"""Shared test fixtures: composing run configs the way `python -m pipeline` does."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pipeline.planning import CONFIG_DIR, prepare
from tests.slurm_cluster import slurm_cluster  # noqa: F401  (the one-node Slurm fixture)

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    """The probe's compiled kernels are cached in a temporary folder of this test session, never in
    ~/.cache (set before collection: test modules import the kernels, which attach the cache)."""
    if "LCM_COMPILE_CACHE" not in os.environ:
        config._lcm_compile_cache = tempfile.mkdtemp(prefix="lcm-compile-cache-")
        os.environ["LCM_COMPILE_CACHE"] = config._lcm_compile_cache


def pytest_unconfigure(config):
    folder = getattr(config, "_lcm_compile_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


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
