"""Shared test fixtures (helpers the tests call: tests/helpers.py).

Tests that need software outside the virtual environment (a real Slurm cluster; R with lme4 for the
live cross-checks) carry the ``system`` marker or skip where it is absent. ``LCM_TEST_SYSTEM``
decides: unset, they run where those pieces are installed (a private, temporary Slurm cluster: see
tests/slurm_cluster.py); ``1`` (``make test-system``, CI) installs what is missing first (apt-get,
as root) and fails instead of skipping; ``0`` skips the Slurm tests. ``-m "not system"`` deselects them.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.slurm_cluster import slurm_cluster  # noqa: F401  (the one-node Slurm fixture)

#: caches that libraries keep in the home folder (matplotlib's font list, numba's compiled code, any
#: XDG cache, the probe's signed compile cache): the tests and every process they start write them
#: under a temporary folder instead (set before collection: test modules import the probe's kernels,
#: which attach their cache at import)
HOME_CACHES = ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR", "NUMBA_CACHE_DIR", "LCM_COMPILE_CACHE")


def pytest_configure(config):
    # before any test imports matplotlib: `make test` writes nothing outside the clone and temporary folders
    scratch = Path(tempfile.mkdtemp(prefix="lcm-test-caches-"))
    saved = {name: os.environ.get(name) for name in HOME_CACHES}
    for name in HOME_CACHES:
        os.environ[name] = str(scratch / name.lower())

    def restore() -> None:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(scratch, ignore_errors=True)

    config.add_cleanup(restore)
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
