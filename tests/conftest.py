"""Shared test fixtures (helpers the tests call: tests/helpers.py)."""

import os
import shutil
import tempfile

import pytest

from tests.slurm_cluster import slurm_cluster  # noqa: F401  (the one-node Slurm fixture)


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
