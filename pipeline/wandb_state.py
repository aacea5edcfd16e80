"""What a run's W&B mirror may cost it, and what became of the mirror (torch-free; see docs/wandb.md).

W&B is a mirror of the run folder: any W&B failure costs at most the mirror. This module holds the
pieces every W&B user of the project shares (the runs' tracker, the analysis' export, the rebuild):

- the mode, from ``WANDB_MODE`` only (pipeline/config.py);
- where W&B keeps the files it writes outside a run's own W&B folder (its artifact staging area
  and its cache, service logs included): inside the folder the caller names, unless the user set
  ``WANDB_DATA_DIR`` / ``WANDB_CACHE_DIR`` (then there), never in ``~/.local/share`` or ``~/.cache``;
- a process-wide memory of an online start that failed (no network, no answer, no login): later
  runs of the process go offline at once instead of waiting again;
- ``MirrorState``: the mirror's mode and outcome, written to the run's summary.json as ``wandb``, and
  how a reader finds a run folder's W&B run (``mirror_entry``, ``mirrored_as``).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from .schema import SUMMARY

COMPLETE, FAILED = "complete", "failed"
# the W&B variables that move W&B's staging area and cache, and the subfolders they get by default
_FOLDER_VARIABLES = (("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"))
MIN_FREE_BYTES = 1 << 20  # a mirror's start and first epochs (a 50-epoch run's whole mirror is about 1 MB)
_set_here: dict[str, str] = {}  # the values this module put into the environment (any other is the user's)
_online_failure: str | None = None
REBUILT = (
    "rebuilt.json"  # in a run's W&B folder: its lost mirror was rebuilt (pipeline/wandb_rebuild.py), as which W&B run
)


def keep_wandb_files_in(folder: Path) -> dict[str, str]:
    """Point W&B's staging area and cache into ``folder`` (``data/``, ``cache/``) unless the user set them.

    W&B reads both variables when it stages a file or starts its service process, so setting them
    before each ``wandb.init`` is enough. Returns the folders in force, by variable.
    """
    for variable, sub in _FOLDER_VARIABLES:
        current = os.environ.get(variable)
        if current and _set_here.get(variable) != current:
            continue  # the user's own choice stands
        _set_here[variable] = os.environ[variable] = str(Path(folder) / sub)
    return {variable: os.environ[variable] for variable, _ in _FOLDER_VARIABLES}


def check_room(folder: Path) -> None:
    """Refuse to start a mirror where the disk under ``folder`` is (nearly) full: W&B would fail at its
    first write after printing a logging traceback for each of its own log lines."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise OSError(
            errno.ENOSPC, f"No space left on device: {free} bytes free under {folder}, a mirror needs {MIN_FREE_BYTES}"
        )


def _drop(record: logging.LogRecord) -> bool:
    return False


def quiet_wandb_log(folder: Path) -> None:
    """Stop W&B's own log of a run (``debug.log``, a handler of the ``wandb`` logger) from writing into a lost
    W&B folder: on a full disk every message would print a "Logging error" traceback to the console. The
    messages are dropped (the run's own log says what happened); W&B closes the handler at its teardown."""
    folder = Path(folder).resolve()
    for handler in logging.getLogger("wandb").handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve().is_relative_to(folder):
            handler.addFilter(_drop)


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` (W&B's messages run to several lines of advice)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def online_failure() -> str | None:
    """Why an online start failed earlier in this process (None if none did)."""
    return _online_failure


def remember_online_failure(reason: str) -> None:
    """Later runs of this process mirror offline at once; W&B's telemetry, which would wait for the
    same server at process exit (up to 10 s a request), is turned off for the process, and the errors
    its exporters log at exit when that server refuses them (the failure is reported once already)
    are not shown."""
    global _online_failure
    _online_failure = reason
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
    try:
        from wandb.analytics.opentelemetry import opentelemetry_proxy

        opentelemetry_proxy.disable()
    except (ImportError, AttributeError):  # another wandb version: it only costs time at exit
        pass


def forget_online_failure() -> None:
    """For tests and long-lived processes whose network came back."""
    global _online_failure
    _online_failure = None


@dataclass
class MirrorState:
    """The W&B mirror of one attempt at a run, as summary.json records it (key ``wandb``).

    ``state`` is ``complete`` when W&B holds the whole mirror (online) or the run folder holds it for
    ``slurm/wandb_sync.sh`` to upload (offline, and online runs that fell back to offline), and
    ``failed`` when the mirror was lost; ``error`` then says where and why, and the sync script
    rebuilds the mirror from the run folder before it uploads.
    """

    requested_mode: str
    id: str
    project: str | None = None
    entity: str | None = None
    mode: str | None = None  # the mode the mirror ran in: offline after an online start failed
    state: str | None = None
    note: str | None = None
    error: str | None = None

    def fail(self, reason: str) -> None:
        if self.state != FAILED:
            self.state, self.error = FAILED, reason

    def record(self, expected: str | None = None) -> dict:
        """The ``wandb`` entry of summary.json; ``expected`` stands in for a state not known yet."""
        out = asdict(self)
        out["state"] = self.state or expected
        if out["state"] == FAILED:
            out["rebuild"] = "slurm/wandb_sync.sh rebuilds this mirror from the run folder"
        return {key: value for key, value in out.items() if value is not None}


def mirror_entry(run_dir: Path) -> dict | None:
    """summary.json's ``wandb`` entry (None when the run had W&B off, or summary.json is unreadable)."""
    try:
        entry = json.loads((Path(run_dir) / SUMMARY).read_text()).get("wandb")
    except (OSError, ValueError, AttributeError):
        return None
    return entry if isinstance(entry, dict) else None


def mirrored_as(run_dir: Path) -> str | None:
    """The W&B run that mirrors a run folder whole: its rebuilt mirror, else its own complete one (else None)."""
    try:
        return json.loads((Path(run_dir) / "wandb" / REBUILT).read_text())["wandb_id"]
    except (OSError, ValueError, KeyError, TypeError):
        entry = mirror_entry(run_dir) or {}
        return entry.get("id") if entry.get("state") == COMPLETE else None
