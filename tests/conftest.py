"""Shared test fixtures (helpers the tests call: tests/helpers.py)."""

import pytest

from tests.slurm_cluster import slurm_cluster  # noqa: F401  (the one-node Slurm fixture)


@pytest.fixture(autouse=True)
def _quiet_wandb(monkeypatch, tmp_path_factory):
    """W&B stays off unless a test turns it on, and never writes into ~/.cache."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cache = tmp_path_factory.getbasetemp() / "wandb-cache"
    monkeypatch.setenv("WANDB_CACHE_DIR", str(cache))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(cache))
    monkeypatch.setenv("WANDB_DATA_DIR", str(cache))
