"""The run folder: atomic writes, status, claims and the done-check.

Its layout and file names are the record schema's (pipeline/schema.py). The
one owner of the atomic writers used by pipeline/, the study sweeper and
analysis/ alike. Imports neither torch nor Hydra (the analysis and
``pipeline.status`` import it).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .schema import ABSENT, CLAIM, CLAIM_LOCK, CORE_FILES, DAMAGED, DONE, FAILED, INTERRUPTED, RUNNING, STATUS

# A claim from another host counts as live while its heartbeat is younger than
# this (the owner refreshes it every epoch); on this host, the owner's pid decides.
CLAIM_STALE_SECONDS = 15 * 60
UNREADABLE_CLAIM_GRACE_SECONDS = 10


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


def _written_temp(path: Path, data: bytes) -> Path:
    """``data`` in a fresh temporary file beside ``path``, on disk (fsync) before anyone can see it."""
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    tmp = _written_temp(path, data)
    try:
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


class StatusUnreadable(ValueError):
    """A status.json that exists but cannot be read (truncated, corrupt, not an object)."""


def read_status(run_dir: Path) -> dict | None:
    """The run's status, or None when the folder has none (never started); StatusUnreadable if damaged."""
    path = Path(run_dir) / STATUS
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        status = json.loads(raw)
    except ValueError as exc:
        raise StatusUnreadable(f"{STATUS} unreadable ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(status, dict):
        raise StatusUnreadable(f"{STATUS} is not a JSON object")
    return status


def file_digest(path: Path) -> dict:
    """What a done run's status.json records of each record file: its size and SHA-256."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return {"bytes": size, "sha256": digest.hexdigest()}


def damage(run_dir: Path, status: dict) -> str | None:
    """Why a run whose status says done cannot be trusted (a record file missing, truncated or changed), or None."""
    run_dir = Path(run_dir)
    files = status.get("files")
    if not isinstance(files, dict):
        # a record from before status.json listed its files: the core files must exist and parse as far
        # as their ends (a parquet file starts and ends with PAR1, so truncation shows)
        for name in CORE_FILES:
            path = run_dir / name
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return f"{name} missing"
            if name.endswith(".parquet"):
                with open(path, "rb") as fh:
                    head = fh.read(4)
                    fh.seek(max(0, size - 4))
                    tail = fh.read(4)
                if head != b"PAR1" or tail != b"PAR1":
                    return f"{name} truncated or not parquet"
            elif name.endswith(".json"):
                try:
                    json.loads(path.read_bytes())
                except ValueError:
                    return f"{name} unreadable"
        return None
    for name, want in sorted(files.items()):
        path = run_dir / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return f"{name} missing"
        if not isinstance(want, dict) or size != want.get("bytes"):
            return (
                f"{name} has {size} bytes, status.json recorded {want.get('bytes') if isinstance(want, dict) else '?'}"
            )
        if file_digest(path)["sha256"] != want.get("sha256"):
            return f"{name} changed since the run wrote it (SHA-256 differs)"
    return None


def done_check(run_dir: Path) -> tuple[str, str | None]:
    """(DONE, None), (DAMAGED, why) for a done run whose records fail their check or whose status.json is
    unreadable, or (state, None) otherwise (ABSENT when there is no status.json); states: pipeline/schema.py."""
    try:
        status = read_status(run_dir)
    except StatusUnreadable as exc:
        return DAMAGED, str(exc)
    if status is None:
        return ABSENT, None
    state = status.get("state")
    if state != DONE:
        return str(state), None
    why = damage(run_dir, status)
    return (DAMAGED, why) if why else (DONE, None)


def is_done(run_dir: Path) -> bool:
    """Done and verified: status.json says done and every record file it lists is as it was written."""
    return done_check(run_dir)[0] == DONE


def run_state(run_dir: Path) -> tuple[str, str | None]:
    """A run's state from its folder and its claim, in the schema's words, with what a reader should know:
    DONE (verified), RUNNING (a live process owns it), DAMAGED (why), FAILED (its error), INTERRUPTED (by
    what, or that its process died), ABSENT. The one judgement pipeline.status and the sweeper share."""
    state, why = done_check(run_dir)
    if state == DONE:
        return DONE, None
    if claim_state(run_dir):
        return RUNNING, None
    if state in (ABSENT, DAMAGED):
        return state, why
    try:
        status = read_status(run_dir) or {}
    except StatusUnreadable as exc:  # replaced by a damaged one since done_check read it
        return DAMAGED, str(exc)
    if state == FAILED:
        return FAILED, str(status.get("error") or "(no error message)")
    if state == INTERRUPTED:
        return INTERRUPTED, str(status.get("error") or "interrupted")
    # status.json says running (or something unknown) and nobody owns the run
    return INTERRUPTED, "interrupted: the process that ran it died"


# ---------------------------------------------------------------------------
# Claims: exclusive ownership of a run folder by one process
# ---------------------------------------------------------------------------


@dataclass
class Claim:
    """Exclusive ownership of a run folder by one process.

    ``token`` is written into the claim file, so that heartbeats and release
    touch this process's own claim only, never one that replaced it.
    """

    path: Path
    token: str = ""

    def owned(self) -> bool:
        info, _ = _read_claim(self.path)
        return isinstance(info, dict) and info.get("token") == self.token

    def heartbeat(self) -> None:
        if self.owned():
            os.utime(self.path)

    def release(self) -> None:
        with _claim_lock(self.path.parent):
            if self.owned():
                self.path.unlink(missing_ok=True)


@contextmanager
def _claim_lock(run_dir: Path) -> Iterator[None]:
    """Serialises claiming, takeover and release on one run folder (released by the kernel if its holder dies).

    Where the file system has no working POSIX locks (some NFS mounts) claims
    still never clobber each other (link), and a takeover checks what it moved.
    """
    try:
        fd = os.open(Path(run_dir) / CLAIM_LOCK, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _read_claim(path: Path) -> tuple[dict | None | bool, float]:
    """(claim info, mtime); info None when there is no claim, False when the file is unreadable."""
    try:
        raw = path.read_bytes()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None, 0.0
    return _read_claim_bytes(raw)[0], mtime


def _slurm_job_alive(job_id: str) -> bool | None:
    """True/False when squeue can tell whether a Slurm job still exists, else None."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        # squeue errors with "Invalid job id" once a finished job has left its memory
        return False if "Invalid job id" in out.stderr else None
    return bool(out.stdout.strip())


def _claim_is_live(info: dict | bool, mtime: float) -> bool:
    if info is False:
        # claims are complete when they appear; an unreadable one is damaged
        # (or from an older version mid-write): give it a moment, then take it over
        return (time.time() - mtime) < UNREADABLE_CLAIM_GRACE_SECONDS
    if info.get("slurm_job_id"):
        # a claim made inside a Slurm job lives exactly as long as that job,
        # on whatever node it ran
        alive = _slurm_job_alive(info["slurm_job_id"])
        if alive is not None:
            return alive
    if info.get("host") == socket.gethostname():
        try:
            pid = int(info.get("pid", -1))
        except (TypeError, ValueError):
            return False
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
    info, mtime = _read_claim(Path(run_dir) / CLAIM)
    if info is None or not _claim_is_live(info, mtime):
        return None
    return info if info else {"unreadable": True}


def try_claim(run_dir: Path) -> Claim | None:
    """Claim a run folder for this process; None when another live process owns it.

    The claim's content is written to a temporary file first and linked to
    ``claim.json`` (link never replaces an existing file), so a claim is
    complete when it becomes visible and two claimants cannot both win. A
    stale claim (its owner is dead) is moved aside and checked to be the one
    judged stale before the folder is claimed anew.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM
    token = uuid.uuid4().hex
    payload = json.dumps(
        {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": utc_now(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "token": token,
        }
    ).encode()
    tmp = _written_temp(path, payload)
    try:
        with _claim_lock(run_dir):
            for _ in range(3):
                try:
                    os.link(tmp, path)
                    return Claim(path, token)
                except FileExistsError:
                    pass
                try:
                    judged = path.read_bytes()
                    mtime = path.stat().st_mtime
                except FileNotFoundError:
                    continue
                info, _ = _read_claim_bytes(judged)
                if _claim_is_live(info, mtime):
                    return None
                aside = run_dir / f".claim.stale.{token}"
                try:
                    os.rename(path, aside)
                except FileNotFoundError:
                    continue
                if aside.read_bytes() != judged:
                    # another claimant replaced the stale claim meanwhile (possible only
                    # without working locks): put its claim back and leave the run to it
                    try:
                        os.link(aside, path)
                    except FileExistsError:
                        pass
                    aside.unlink(missing_ok=True)
                    return None
                aside.unlink(missing_ok=True)
            return None
    finally:
        tmp.unlink(missing_ok=True)


def _read_claim_bytes(raw: bytes) -> tuple[dict | bool, None]:
    try:
        info = json.loads(raw)
    except ValueError:
        return False, None
    return (info if isinstance(info, dict) else False), None
