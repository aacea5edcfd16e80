"""The run record's schema and layout: where a study's runs and plans live, what a run folder holds, the
columns of its tables, the names of the probes' rows and the words for a run's state.

The one place these names are spelled. The training side writes records with them; ``pipeline.status``,
the study sweeper, the W&B mirror and the analysis read records with them. Imports neither torch nor
Hydra, and pandas only when a table is made, so that every reader can afford it.

Layout (docs/architecture.md)::

    <root>/<study>/runs/<run_id>/   config.yaml status.json curves.parquet readouts.parquet summary.json
                                    run.log [<table>.parquet ...] [claim.json while a process owns the run]
    <root>/<study>/plans/*.csv      the sweeps' plans (run id, cell, state, overrides, condition)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# The project's version, written into every summary.json. Its minor number changes whenever the record
# format or the run ids change (what a reader of older records must know: CHANGELOG.md), its patch
# number for any other release; tests/test_version.py fails when run ids or the schema change without it.
VERSION = "0.4.0"

# ---------------------------------------------------------------------------
# Layout: <root>/<study>/runs/<run_id>/ and <root>/<study>/plans/
# ---------------------------------------------------------------------------

RUNS = "runs"
PLANS = "plans"


def study_folder(root: str | os.PathLike, study: str) -> Path:
    return Path(root) / study


def runs_folder(study: str | os.PathLike) -> Path:
    """``<study folder>/runs``: the run folders of one study."""
    return Path(study) / RUNS


def plans_folder(study: str | os.PathLike) -> Path:
    """``<study folder>/plans``: the plan of every sweep of the study (read by ``pipeline.status``)."""
    return Path(study) / PLANS


def run_folder(root: str | os.PathLike, study: str, run_id: str) -> Path:
    """``<root>/<study>/runs/<run_id>``."""
    return runs_folder(study_folder(root, study)) / run_id


def study_of(run: str | os.PathLike) -> Path:
    """The study folder a run folder belongs to."""
    return Path(run).parent.parent


def is_listed(name: str) -> bool:
    """Whether a folder name is part of the layout: dot-folders (``.hydra``, a cache) never are."""
    return not name.startswith(".")


def run_folders(study: str | os.PathLike) -> list[Path]:
    """The run folders of a study, sorted by name (none when it has no runs/)."""
    return sorted(iter_run_folders(study))


def iter_run_folders(study: str | os.PathLike, *, links: bool = False) -> Iterator[Path]:
    """The run folders of a study, in the file system's order (a scan of a large study, unsorted). A
    symbolic link is never taken for a run folder (a loop would not even say whether it is one); with
    ``links``, links are yielded too, for a reader that reports them (never follows them)."""
    folder = runs_folder(study)
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if is_listed(entry.name) and (entry.is_dir(follow_symlinks=False) or (links and entry.is_symlink())):
                    yield folder / entry.name
    except (FileNotFoundError, NotADirectoryError):
        return


def has_runs(study: str | os.PathLike) -> bool:
    return runs_folder(study).is_dir()


def study_folders(root: str | os.PathLike, *, with_plans: bool = False) -> list[Path]:
    """The study folders under an outputs root, sorted by name: those with runs/ (or, ``with_plans``, plans/);
    never a dot-folder such as ``.hydra``."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if is_listed(p.name) and (has_runs(p) or (with_plans and plans_folder(p).is_dir()))
    )


# ---------------------------------------------------------------------------
# The files of a run folder
# ---------------------------------------------------------------------------

CONFIG = "config.yaml"  # the resolved config with its design block
STATUS = "status.json"  # the run's state (below), written last when done
CURVES = "curves.parquet"  # long-format probe rows (CURVE_COLUMNS)
READOUTS = "readouts.parquet"  # developmental readouts (READOUT_COLUMNS)
SUMMARY = "summary.json"  # identity, final figures, durations, record version
LOG = "run.log"
CLAIM = "claim.json"  # present while a process owns the run
CLAIM_LOCK = ".claim.lock"  # never removed: removing a lock file races with its next user
STATUS_RESERVE = ".status.reserve"  # disk space set aside while the run runs: its last status on a full disk
# written by every run before it is done (records older than status.json's "files" are checked for these)
CORE_FILES = (CONFIG, CURVES, READOUTS, SUMMARY)

# Further tables a runner or probe writes as <name>.parquet beside curves.parquet (its columns: the
# writer's docstring and docs/companion_*.md). RunRecord refuses a table not named here.
RECORD_TABLES = {
    # probes (pipeline/probes/), in any study that enables them
    "gradient_spectrum": "gradient spectra of the hidden layers (probe gradient_spectrum)",
    "category_structure": "category structure of the representations (probe category_structure)",
    # critical learning periods (pipeline/studies/critical/)
    "pathway_shares": "critical_pathways: the pathways' shares of each mode, by step",
    "pathway_loss": "critical_pathways: training loss, by step",
    "pathway_analytic": "critical_pathways: the analytic reference trajectory",
    "test_error": "critical_matrix_completion: test error, by step",
    "singular_values": "critical_matrix_completion: singular values of the product, by step",
    # the pseudo-kernel study (pipeline/studies/multitask/)
    "loss_curves": "multitask: loss by task and epoch",
    "kernel_prediction": "multitask: the pseudo-kernel's predictions against the network's",
    "kernel_eigen": "multitask: eigen-decomposition of the pseudo-kernel",
    "kernel_output_eigen": "multitask: eigen-decomposition of the output kernel",
    "representation_sharing": "multitask: similarity of the tasks' representations",
    "kernel_along_training": "multitask: kernel prediction correlation along training",
    # dense-sample category structure (pipeline/studies/dense_sample/)
    "learning_curve": "dense_sample: accuracy by step (batch and probe set)",
    "curve_fits": "dense_sample: fitted learning-curve models",
}


def table_file(name: str) -> str:
    """The file name of a record table (``curves`` -> ``curves.parquet``)."""
    return f"{name}.parquet"


# ---------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------

# curves.parquet: one row per measured value
CURVE_COLUMNS = ("probe", "split", "epoch", "time_slice", "value")
# readouts.parquet
READOUT_COLUMNS = ("epoch", "split", "metric", "value")


def empty_curves(text_dtype: type = str) -> pd.DataFrame:
    """A curves table without rows, its columns typed (a study whose probes write no curves records this)."""
    import numpy as np
    import pandas as pd

    dtypes = (text_dtype, text_dtype, np.int32, np.int32, np.float64)
    return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in zip(CURVE_COLUMNS, dtypes)})


# ---------------------------------------------------------------------------
# Probe rows of curves.parquet and the KNN probe's settings
# ---------------------------------------------------------------------------

# The learning-curve map: rows probe == KNN, split == TRAIN (readers select these, never all rows).
KNN = "knn"
# Per epoch and time slice, the share of training samples whose k nearest neighbours ties decided.
KNN_TIE_SHARE = "knn_tie_share"
TRAIN = "train"
# probe.knn.ties and probe.knn.mode (both part of the run id)
KNN_TIE_RULES = ("expected_random_order", "self_first_by_index")
KNN_MODES = ("resubstitution", "leave_one_out")
# what runs recorded before probe.knn.ties / probe.knn.mode existed were computed under
LEGACY_KNN_TIES, LEGACY_KNN_MODE = "self_first_by_index", "resubstitution"


# ---------------------------------------------------------------------------
# A run's state: one vocabulary for the run itself, pipeline.status, the sweeper and the analysis
# ---------------------------------------------------------------------------

# What status.json says (the run writes these).
RUNNING = "running"  # a process computes it (as status.json: said so when it started)
DONE = "done"  # finished; every record file is as status.json lists it
FAILED = "failed"  # the run raised; status.json holds the error and its traceback
INTERRUPTED = "interrupted"  # a signal stopped it, or (concluded by a reader) its process died
RECORDED_STATES = (RUNNING, DONE, FAILED, INTERRUPTED)
# What a reader concludes besides, from the folder, its records and its claim.
ABSENT = "absent"  # no status.json and no live claim: never started
DAMAGED = "damaged"  # status.json unreadable, or said done but a record file is missing, truncated or changed
RUN_STATES = (ABSENT, RUNNING, DONE, FAILED, INTERRUPTED, DAMAGED)
# The states a relaunch computes again (all but done and running); of them, those pipeline.status
# counts as missing (a failed run is shown as failed).
TO_COMPUTE = (ABSENT, FAILED, INTERRUPTED, DAMAGED)
MISSING = (ABSENT, INTERRUPTED, DAMAGED)
