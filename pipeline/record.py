"""Writing one run's folder (its layout and names: pipeline/schema.py; writers, claims: pipeline/runfolder.py).

Every file is written atomically; ``status.json`` with ``state == "done"`` is
written last: a folder without it is not a finished run.
"""

from __future__ import annotations

import os
import socket
import traceback as tb
from pathlib import Path
from typing import Any

import pandas as pd

from .runfolder import atomic_write_json, atomic_write_parquet, atomic_write_text, file_digest, utc_now
from .schema import (
    CONFIG,
    CURVES,
    DONE,
    FAILED,
    INTERRUPTED,
    READOUTS,
    RECORD_TABLES,
    RECORDED_STATES,
    RUNNING,
    STATUS,
    SUMMARY,
    table_file,
)


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
        atomic_write_json(
            self.dir / STATUS,
            {
                "state": state,
                "run_id": self.run_id,
                "cell": self.cell,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": self._started,
                "ended": None if state == RUNNING else utc_now(),
                "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                **extra,
            },
        )

    def write_config(self, resolved_yaml: str) -> None:
        atomic_write_text(self.dir / CONFIG, resolved_yaml)
        self._written.append(CONFIG)

    def mark_running(self) -> None:
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

    def mark_done(self, **extra: Any) -> None:
        # what was written, so that a later reader can tell a damaged record from a done one
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
