"""The run folder: the source of truth for one run.

Layout (docs/architecture.md): ``<root>/<study>/runs/<run_id>/`` holding
``config.yaml``, ``status.json``, ``curves.parquet``, ``readouts.parquet``,
``summary.json``, ``run.log`` and, while a process owns the run, ``claim.json``.

Every file that another process may read is written to a temporary name in the
same folder and renamed over the final name (``os.replace`` is atomic on POSIX),
so a reader never sees half a file. ``status.json`` with ``state == "done"`` is
written last: a folder without it is not a finished run.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import traceback as tb
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

STATES = ("running", "done", "failed")
# A claim from another host counts as live while its heartbeat is younger than
# this (the owner refreshes it every epoch); on this host, the owner's pid decides.
CLAIM_STALE_SECONDS = 15 * 60


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    with _atomic_target(Path(path)) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    with _atomic_target(Path(path)) as tmp:
        frame.to_parquet(tmp, index=False)


def read_status(run_dir: Path) -> dict | None:
    """The run's status, or None when the folder has none (never started)."""
    try:
        return json.loads((Path(run_dir) / "status.json").read_text())
    except FileNotFoundError:
        return None


def is_done(run_dir: Path) -> bool:
    status = read_status(run_dir)
    return bool(status) and status.get("state") == "done"


@dataclass
class Claim:
    """Exclusive ownership of a run folder by one process.

    Created with O_CREAT | O_EXCL so that two processes racing for the same run
    cannot both win. A claim left behind by a dead process is stale and may be
    taken over.
    """

    path: Path

    def heartbeat(self) -> None:
        os.utime(self.path)

    def release(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def _slurm_job_alive(job_id: str) -> bool | None:
    """True/False when squeue can tell whether a Slurm job still exists, else None."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        # squeue errors with "Invalid job id" once a finished job has left its memory
        return False if "Invalid job id" in out.stderr else None
    return bool(out.stdout.strip())


def _claim_is_live(info: dict, mtime: float) -> bool:
    if info.get("slurm_job_id"):
        # a claim made inside a Slurm job lives exactly as long as that job,
        # on whatever node it ran
        alive = _slurm_job_alive(info["slurm_job_id"])
        if alive is not None:
            return alive
    if info.get("host") == socket.gethostname():
        pid = int(info.get("pid", -1))
        if pid <= 0:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return (time.time() - mtime) < CLAIM_STALE_SECONDS


def claim_state(run_dir: Path) -> dict | None:
    """The live claim on a run folder, or None when nobody owns it."""
    path = Path(run_dir) / "claim.json"
    try:
        info = json.loads(path.read_text())
        mtime = path.stat().st_mtime
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return info if _claim_is_live(info, mtime) else None


def try_claim(run_dir: Path) -> Claim | None:
    """Claim a run folder for this process; None when another live process owns it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "claim.json"
    payload = json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "since": utc_now(),
         "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
    ).encode()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if claim_state(run_dir) is not None:
                return None
            # Stale: move it aside under a unique name first, so that of two
            # processes taking over the same stale claim only one removes it.
            try:
                os.replace(path, run_dir / f".claim.stale.{os.getpid()}")
                (run_dir / f".claim.stale.{os.getpid()}").unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        return Claim(path)
    return None


class RunRecord:
    """Writes one run's folder."""

    def __init__(self, run_dir: Path, run_id: str, cell: str | None = None):
        self.dir = Path(run_dir)
        self.run_id = run_id
        self.cell = cell
        self.dir.mkdir(parents=True, exist_ok=True)
        self._started = utc_now()

    def _status(self, state: str, **extra: Any) -> None:
        assert state in STATES
        atomic_write_json(
            self.dir / "status.json",
            {"state": state, "run_id": self.run_id, "cell": self.cell, "host": socket.gethostname(),
             "pid": os.getpid(), "started": self._started,
             "ended": None if state == "running" else utc_now(),
             "slurm_job_id": os.environ.get("SLURM_JOB_ID"), **extra},
        )

    def write_config(self, resolved_yaml: str) -> None:
        atomic_write_text(self.dir / "config.yaml", resolved_yaml)

    def mark_running(self) -> None:
        self._status("running")

    def write_results(self, curves: pd.DataFrame, readouts: pd.DataFrame, summary: dict,
                      tables: dict[str, pd.DataFrame] | None = None) -> None:
        for name, frame in (tables or {}).items():
            atomic_write_parquet(self.dir / f"{name}.parquet", frame)
        atomic_write_parquet(self.dir / "curves.parquet", curves)
        atomic_write_parquet(self.dir / "readouts.parquet", readouts)
        atomic_write_json(self.dir / "summary.json", summary)

    def mark_done(self, **extra: Any) -> None:
        self._status("done", **extra)

    def mark_failed(self, exc: BaseException) -> None:
        self._status(
            "failed",
            error=f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__,
            traceback="".join(tb.format_exception(type(exc), exc, exc.__traceback__)),
        )
