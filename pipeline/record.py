"""Writing one run's folder (its layout and names: pipeline/schema.py; writers, claims: pipeline/runfolder.py).

Every file is written atomically; ``status.json`` with ``state == "done"`` is
written last: a folder without it is not a finished run. A run that starts sets
disk space aside (``.status.reserve``), so that on a full disk its folder can
still say that it failed, and why, instead of "running" with a dead owner.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import traceback as tb
from pathlib import Path
from typing import Any

import pandas as pd

from .runfolder import FILE_MODE, atomic_write_json, atomic_write_parquet, atomic_write_text, file_digest, utc_now
from .schema import (
    CONFIG,
    CORE_FILES,
    CURVES,
    DONE,
    FAILED,
    INTERRUPTED,
    READOUTS,
    RECORD_TABLES,
    RECORDED_STATES,
    RUNNING,
    STATUS,
    STATUS_RESERVE,
    SUMMARY,
    table_file,
)

# space set aside (schema.STATUS_RESERVE) for the last status of a run that fails on a full disk (a traceback
# takes a few KB)
RESERVE_BYTES = 64 << 10


class RunRecord:
    """Writes one run's folder."""

    def __init__(self, run_dir: Path, run_id: str, cell: str | None = None):
        self.dir = Path(run_dir)
        self.run_id = run_id
        self.cell = cell
        self.dir.mkdir(parents=True, exist_ok=True)
        self._started = utc_now()
        self._written: list[str] = []

    def _status(self, state: str, **extra: Any) -> None:
        assert state in RECORDED_STATES
        status = {
            "state": state,
            "run_id": self.run_id,
            "cell": self.cell,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self._started,
            "ended": None if state == RUNNING else utc_now(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            **extra,
        }
        try:
            atomic_write_json(self.dir / STATUS, status)
        except OSError as exc:
            if state in (DONE, RUNNING) or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._status_in_reserve(status)
        if state != RUNNING:
            (self.dir / STATUS_RESERVE).unlink(missing_ok=True)

    def _set_aside(self) -> None:
        """Disk space for the last status (allocated now, while there is space)."""
        fd = os.open(self.dir / STATUS_RESERVE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            except OSError:  # file systems without fallocate: blocks written out
                os.pwrite(fd, b" " * RESERVE_BYTES, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _status_in_reserve(self, status: dict) -> None:
        """The status written into the space set aside (no new blocks needed), then renamed into place."""
        status = {**status, "note": "written on a full disk, in the space the run set aside"}
        text = json.dumps(status, indent=2, sort_keys=True, default=str) + "\n"
        if len(text.encode()) > RESERVE_BYTES:
            status["traceback"] = str(status.get("traceback", ""))[-RESERVE_BYTES // 2 :]
            text = json.dumps(status, indent=2, sort_keys=True, default=str)[: RESERVE_BYTES - 1] + "\n"
        data = text.encode()
        reserve = self.dir / STATUS_RESERVE
        fd = os.open(reserve, os.O_WRONLY | os.O_CLOEXEC)  # FileNotFoundError: nothing was set aside
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            os.fchmod(fd, FILE_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(reserve, self.dir / STATUS)

    def write_config(self, resolved_yaml: str) -> None:
        atomic_write_text(self.dir / CONFIG, resolved_yaml)
        self._written.append(CONFIG)

    def mark_running(self) -> None:
        self._set_aside()
        self._status(RUNNING)

    def write_results(
        self, curves: pd.DataFrame, readouts: pd.DataFrame, summary: dict, tables: dict[str, pd.DataFrame] | None = None
    ) -> None:
        unknown = sorted(set(tables or {}) - set(RECORD_TABLES))
        if unknown:
            raise ValueError(f"record tables {unknown} are not in the record schema (pipeline/schema.py RECORD_TABLES)")
        for name, frame in (tables or {}).items():
            atomic_write_parquet(self.dir / table_file(name), frame)
        atomic_write_parquet(self.dir / CURVES, curves)
        atomic_write_parquet(self.dir / READOUTS, readouts)
        atomic_write_json(self.dir / SUMMARY, summary)
        self._written.extend([*(table_file(name) for name in tables or {}), CURVES, READOUTS, SUMMARY])

    def write_summary(self, summary: dict) -> None:
        """Rewrite summary.json (before ``mark_done``, which checksums it)."""
        atomic_write_json(self.dir / SUMMARY, summary)

    def mark_done(self, **extra: Any) -> None:
        # what was written, so that a later reader can tell a damaged record from a done one
        unwritten = [name for name in CORE_FILES if name not in self._written]
        if unwritten:
            raise RuntimeError(f"run {self.run_id}: cannot be done without {', '.join(unwritten)}")
        files = {name: file_digest(self.dir / name) for name in dict.fromkeys(self._written)}
        self._status(DONE, files=files, **extra)

    def mark_interrupted(self, signal_name: str) -> None:
        self._status(INTERRUPTED, error=f"interrupted by {signal_name}")

    def mark_failed(self, exc: BaseException) -> None:
        self._status(
            FAILED,
            error=f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__,
            traceback="".join(tb.format_exception(type(exc), exc, exc.__traceback__)),
        )
