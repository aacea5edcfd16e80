"""The run folder: its file names, atomic writes, status and claims.

Layout (docs/architecture.md): ``<root>/<study>/runs/<run_id>/`` holding
``config.yaml``, ``status.json``, ``curves.parquet``, ``readouts.parquet``,
``summary.json``, ``run.log`` and, while a process owns the run, ``claim.json``.

The one owner of these names and of the atomic writers used by pipeline/,
the study sweeper and analysis/ alike. Imports neither torch nor Hydra (the
analysis and ``pipeline.status`` import it).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

CONFIG = "config.yaml"
STATUS = "status.json"
CURVES = "curves.parquet"
READOUTS = "readouts.parquet"
SUMMARY = "summary.json"
LOG = "run.log"
CLAIM = "claim.json"

STATES = ("running", "done", "failed")
# A claim from another host counts as live while its heartbeat is younger than
# this (the owner refreshes it every epoch); on this host, the owner's pid decides.
CLAIM_STALE_SECONDS = 15 * 60


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------
# Atomic writes: a temporary file in the same folder, then os.replace (atomic
# on POSIX), so a reader never sees half a file.
# ---------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600; records get what a plain open() would give (run.log's mode)
FILE_MODE = 0o666 & ~_umask()


def _temp_beside(path: Path) -> tuple[int, Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, FILE_MODE)
    return fd, Path(tmp)


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_parquet(path, frame) -> None:
    path = Path(path)
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_csv(path, frame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


# ---------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------


def read_status(run_dir: Path) -> dict | None:
    """The run's status, or None when the folder has none (never started)."""
    try:
        return json.loads((Path(run_dir) / STATUS).read_text())
    except FileNotFoundError:
        return None


def is_done(run_dir: Path) -> bool:
    status = read_status(run_dir)
    return bool(status) and status.get("state") == "done"


# ---------------------------------------------------------------------------
# Claims: exclusive ownership of a run folder by one process
# ---------------------------------------------------------------------------


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
    path = Path(run_dir) / CLAIM
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
    path = run_dir / CLAIM
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
