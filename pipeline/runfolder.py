"""The run folder: atomic writes, status, claims and the done-check.

Its layout and file names are the record schema's (pipeline/schema.py). The
one owner of the atomic writers used by pipeline/, the study sweeper and
analysis/ alike. Imports neither torch nor Hydra (the analysis and
``pipeline.status`` import it).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import stat
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

# A claim from another host (outside Slurm) counts as live while its heartbeat is younger than this
# (the owner refreshes it every epoch), the age measured on the file system's own clock; on this host the
# owner's process decides, inside Slurm its job.
CLAIM_STALE_SECONDS = 15 * 60
# A heartbeat dated this far ahead of the file system's clock was stamped by a clock that is off (or by
# hand): it is stale, not live forever.
CLAIM_FUTURE_SECONDS = 15 * 60
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
# Reading a run folder: confined to it (names of its own files only, no symbolic
# links, no special files) and bounded, so that a crafted or damaged folder can
# neither hang nor crash a reader nor lead it elsewhere.
# ---------------------------------------------------------------------------

# status.json holds at most a traceback; claim.json a few fields; config.yaml and a
# sweep's plan are text of a few MB at most; record files are parquet/JSON tables
MAX_STATUS_BYTES = 4 << 20
MAX_CLAIM_BYTES = 64 << 10
MAX_TEXT_BYTES = 64 << 20
MAX_RECORD_BYTES = 4 << 30


class NotReadable(ValueError):
    """A run folder entry that is not read: a symbolic link, not a regular file (a FIFO, a device, a
    folder), larger than any record, or a name that leads outside the folder. The message says which."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _in_folder(name: object) -> bool:
    """Whether ``name`` names an entry directly inside a folder (no path, not the folder or its parent)."""
    return isinstance(name, str) and bool(name) and name not in (".", "..") and "/" not in name and "\x00" not in name


def check_entry_name(name: object) -> str:
    """``name`` if it can name a record file (an entry of the run folder, not hidden), else NotReadable."""
    if not isinstance(name, str) or not _in_folder(name) or name.startswith("."):
        raise NotReadable(f"{name!r} is not the name of a file of the run folder: not read")
    return name


def _folder_fd(folder: Path) -> int:
    """An open descriptor of ``folder`` itself (never of a link's target)."""
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        try:
            mode = os.lstat(folder).st_mode
        except OSError:
            raise exc from None
        raise NotReadable(f"the folder {folder} is {_kind(mode)}, not a folder: not read") from None


def open_entry(folder: Path, name: str, limit: int) -> tuple[int, os.stat_result]:
    """(descriptor, stat) of the regular file ``name`` directly inside ``folder``, at most ``limit`` bytes.

    FileNotFoundError when it is absent; NotReadable for a link, a special file (a FIFO would block
    its reader forever), a name outside the folder or a file over ``limit``."""
    if not _in_folder(name):
        raise NotReadable(f"{name!r} is not the name of a file inside {folder}: not read")
    dfd = _folder_fd(Path(folder))
    try:
        before = os.lstat(name, dir_fd=dfd)
        if not stat.S_ISREG(before.st_mode):
            raise NotReadable(f"{name} is {_kind(before.st_mode)}: not read")
        # O_NOFOLLOW and O_NONBLOCK: a file swapped for a link or a FIFO since the lstat neither leads
        # elsewhere nor blocks; fstat then says what was opened
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotReadable(f"{name} is a symbolic link: not read") from None
        raise
    finally:
        os.close(dfd)
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = f"{name} is {_kind(info.st_mode)}: not read"
    elif info.st_size > limit:
        problem = f"{name} has {info.st_size} bytes, more than any such file holds ({limit}): not read"
    if problem:
        os.close(fd)
        raise NotReadable(problem)
    return fd, info


def read_entry(folder: Path, name: str, limit: int) -> tuple[bytes, os.stat_result]:
    """The bytes (at most ``limit``) and stat of the regular file ``name`` inside ``folder`` (``open_entry``)."""
    fd, info = open_entry(folder, name, limit)
    try:
        chunks, left = [], limit + 1
        while left > 0:
            block = os.read(fd, min(left, 1 << 20))
            if not block:
                break
            chunks.append(block)
            left -= len(block)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise NotReadable(f"{name} grew past {limit} bytes while read: not read")
    return data, info


def read_text_entry(folder: Path, name: str, limit: int = MAX_TEXT_BYTES) -> str:
    """A text file of the folder, read as ``read_entry`` reads (UTF-8, undecodable bytes replaced)."""
    return read_entry(folder, name, limit)[0].decode("utf-8", errors="replace")


def is_link(path: Path) -> bool:
    """Whether ``path`` is a symbolic link (a loop included), without following it."""
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


# ---------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------


class StatusUnreadable(ValueError):
    """A status.json that exists but cannot be read (truncated, corrupt, not an object, a link, too large)."""


def read_status(run_dir: Path) -> dict | None:
    """The run's status, or None when the folder has none (never started); StatusUnreadable if damaged."""
    try:
        raw, _ = read_entry(Path(run_dir), STATUS, MAX_STATUS_BYTES)
    except FileNotFoundError:
        return None
    except NotReadable as exc:
        raise StatusUnreadable(str(exc)) from None
    except OSError as exc:
        raise StatusUnreadable(f"{STATUS} unreadable ({exc.strerror or type(exc).__name__})") from None
    try:
        status = json.loads(raw)
    except ValueError as exc:
        raise StatusUnreadable(f"{STATUS} unreadable ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(status, dict):
        raise StatusUnreadable(f"{STATUS} is not a JSON object")
    return status


def _digest_fd(fd: int, size: int) -> str:
    """SHA-256 of the first ``size`` bytes of an open file."""
    digest = hashlib.sha256()
    left = size
    while left > 0:
        block = os.read(fd, min(left, 1 << 20))
        if not block:
            break
        digest.update(block)
        left -= len(block)
    return digest.hexdigest()


def file_digest(path: Path) -> dict:
    """What a done run's status.json records of each record file: its size and SHA-256."""
    path = Path(path)
    fd, info = open_entry(path.parent, path.name, MAX_RECORD_BYTES)
    try:
        return {"bytes": info.st_size, "sha256": _digest_fd(fd, info.st_size)}
    finally:
        os.close(fd)


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _legacy_damage(run_dir: Path) -> str | None:
    """A record from before status.json listed its files: the core files must exist and parse as far as
    their ends (a parquet file starts and ends with PAR1, so truncation shows)."""
    for name in CORE_FILES:
        try:
            if name.endswith(".parquet"):
                fd, info = open_entry(run_dir, name, MAX_RECORD_BYTES)
                try:
                    head = os.pread(fd, 4, 0)
                    tail = os.pread(fd, 4, max(0, info.st_size - 4))
                finally:
                    os.close(fd)
                if head != b"PAR1" or tail != b"PAR1":
                    return f"{name} truncated or not parquet"
            else:
                raw, _ = read_entry(run_dir, name, MAX_TEXT_BYTES)
                if name.endswith(".json"):
                    json.loads(raw)
        except FileNotFoundError:
            return f"{name} missing"
        except NotReadable as exc:
            return str(exc)
        except ValueError:
            return f"{name} unreadable"
        except OSError as exc:
            return f"{name} unreadable ({exc.strerror or type(exc).__name__})"
    return None


def _listing_problem(files: dict) -> str | None:
    """Why a done status's ``files`` listing cannot be checked (a name outside the folder, a core file not
    listed, an entry without size and digest), or None."""
    for name, want in files.items():
        try:
            check_entry_name(name)
        except NotReadable:
            return f"{STATUS} lists {name!r}, which is not a file of the run folder: not read"
        if (
            not isinstance(want, dict)
            or isinstance(want.get("bytes"), bool)
            or not isinstance(want.get("bytes"), int)
            or want["bytes"] < 0
            or not isinstance(want.get("sha256"), str)
            or not _SHA256.fullmatch(want["sha256"])
        ):
            return f"{STATUS} lists {name} without its size and SHA-256"
    unlisted = [name for name in CORE_FILES if name not in files]
    if unlisted:
        return f"{STATUS} does not list {', '.join(unlisted)}, which every finished run writes"
    return None


def _file_damage(run_dir: Path, name: str, want: dict) -> str | None:
    try:
        fd, info = open_entry(run_dir, name, MAX_RECORD_BYTES)
    except FileNotFoundError:
        return f"{name} missing"
    except NotReadable as exc:
        return str(exc)
    except OSError as exc:
        return f"{name} unreadable ({exc.strerror or type(exc).__name__})"
    try:
        if info.st_size != want["bytes"]:
            return f"{name} has {info.st_size} bytes, status.json recorded {want['bytes']}"
        if _digest_fd(fd, info.st_size) != want["sha256"]:
            return f"{name} changed since the run wrote it (SHA-256 differs)"
    finally:
        os.close(fd)
    return None


def damage(run_dir: Path, status: dict) -> str | None:
    """Why a run whose status says done cannot be trusted (a record file missing, truncated or changed; a
    listing that names files outside the folder or leaves core files out; a link or special file in
    place of a record file), or None. Reads only regular files inside the run folder, each at most as
    long as status.json recorded."""
    run_dir = Path(run_dir)
    files = status.get("files")
    if files is None:
        return _legacy_damage(run_dir)
    if not isinstance(files, dict):
        return f"{STATUS} lists its files in an unknown form"
    problem = _listing_problem(files)
    if problem:
        return problem
    for name, want in sorted(files.items()):
        why = _file_damage(run_dir, name, want)
        if why:
            return why
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
def _claim_lock(run_dir: Path) -> Iterator[int | None]:
    """Serialises claiming, takeover and release on one run folder (released by the kernel if its holder dies);
    yields the lock file's descriptor (None without one).

    Where the file system has no working POSIX locks (some NFS mounts) claims
    still never clobber each other (link), and a takeover checks what it moved.
    While the lock is held, this process must not open and close the lock file
    again: closing any descriptor of a file drops all of the process's POSIX
    locks on it (``file_system_now`` takes the held descriptor for that reason).
    """
    try:
        fd = os.open(Path(run_dir) / CLAIM_LOCK, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError:
        yield None
        return
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield fd
    finally:
        os.close(fd)  # closing drops the lock


def _read_claim(path: Path) -> tuple[dict | None | bool, float]:
    """(claim info, mtime); info None when there is no claim, False when it is unreadable (damaged, a link,
    a special file, too large)."""
    try:
        raw, info = read_entry(path.parent, path.name, MAX_CLAIM_BYTES)
    except FileNotFoundError:
        return None, 0.0
    except (NotReadable, OSError):
        try:
            return False, os.lstat(path).st_mtime
        except OSError:
            return None, 0.0
    return _read_claim_bytes(raw)[0], info.st_mtime


def file_system_now(run_dir: Path, lock_fd: int | None = None) -> float:
    """The time on the clock that stamps the run folder's files (the file server's on NFS, where a heartbeat
    stamps the server's time too), read by touching the folder's lock file: a heartbeat's age is measured
    on that one clock, whatever this machine's clock says. This machine's clock where the folder is
    read-only here. ``lock_fd``: the lock file's descriptor while ``_claim_lock`` holds it (opening and
    closing the file again would drop the lock)."""
    if lock_fd is not None:
        return _touched_mtime(lock_fd)
    lock = Path(run_dir) / CLAIM_LOCK
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError:
        return time.time()
    try:
        return _touched_mtime(fd)
    finally:
        os.close(fd)


def _touched_mtime(fd: int) -> float:
    """Stamp the open file with the file system's now and read it back (this machine's clock if refused)."""
    try:
        os.utime(fd)
        return os.fstat(fd).st_mtime
    except OSError:
        return time.time()


def _process_identity(pid: int) -> dict:
    """What tells a process apart from a later one with the same pid: the boot and its start time."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return {"boot_id": boot, "pid_start": int(fields[19])}
    except (OSError, IndexError, ValueError):
        return {}


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


def _has_exited(pid: int) -> bool:
    """Whether the process has ended but is still listed, unreaped by its parent (a zombie: state Z or X
    in /proc). Signal 0 reaches it, yet it will neither finish its run nor release its claim."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def _same_host_owner_alive(info: dict) -> bool:
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
        pass
    if _has_exited(pid):
        return False
    if info.get("pid_start") is not None:
        # the pid may have been reused since by an unrelated process (or the host rebooted)
        now = _process_identity(pid)
        if now and (now["boot_id"] != info.get("boot_id") or now["pid_start"] != info.get("pid_start")):
            return False
    return True


def _heartbeat_fresh(age: float, stale_after: float) -> bool:
    """A heartbeat ``age`` seconds old on the file system's clock; negative: dated in its future."""
    return -CLAIM_FUTURE_SECONDS <= age < stale_after


def _claim_is_live(info: dict | bool, mtime: float, now: float) -> bool:
    """Liveness by owner first (this host: its process; inside Slurm: its job), by heartbeat age otherwise;
    ``now`` on the same clock as ``mtime`` (``file_system_now``)."""
    if not isinstance(info, dict):  # False: unreadable
        # claims are complete when they appear; an unreadable one is damaged
        # (or from an older version mid-write): give it a moment, then take it over
        return abs(now - mtime) < UNREADABLE_CLAIM_GRACE_SECONDS
    if info.get("slurm_job_id"):
        # a claim made inside a Slurm job lives exactly as long as that job,
        # on whatever node it ran
        alive = _slurm_job_alive(info["slurm_job_id"])
        if alive is not None:
            return alive
    if info.get("host") == socket.gethostname():
        return _same_host_owner_alive(info)
    return _heartbeat_fresh(now - mtime, CLAIM_STALE_SECONDS)


def claim_state(run_dir: Path) -> dict | None:
    """The live claim on a run folder, or None when nobody owns it."""
    info, mtime = _read_claim(Path(run_dir) / CLAIM)
    if info is None or not _claim_is_live(info, mtime, file_system_now(run_dir)):
        return None
    return info if isinstance(info, dict) and info else {"unreadable": True}


def try_claim(run_dir: Path) -> Claim | None:
    """Claim a run folder for this process; None when another live process owns it.

    The claim's content is written to a temporary file first and linked to
    ``claim.json`` (link never replaces an existing file), so a claim is
    complete when it becomes visible and two claimants cannot both win. A
    stale claim (its owner is dead) is moved aside and checked to be the one
    judged stale before the folder is claimed anew.
    """
    run_dir = Path(run_dir)
    if is_link(run_dir):
        raise NotReadable(f"the run folder {run_dir} is a symbolic link: the run is not computed through it")
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
            **_process_identity(os.getpid()),
        }
    ).encode()
    tmp = _written_temp(path, payload)
    try:
        with _claim_lock(run_dir) as lock_fd:
            for _ in range(3):
                try:
                    os.link(tmp, path)
                    return Claim(path, token)
                except FileExistsError:
                    pass
                try:
                    judged, judged_stat = read_entry(run_dir, CLAIM, MAX_CLAIM_BYTES)
                except FileNotFoundError:
                    continue
                except (NotReadable, OSError):
                    # a link or special file in place of a claim: judged as an unreadable claim
                    try:
                        judged, judged_stat = None, os.lstat(path)
                    except FileNotFoundError:
                        continue
                info, _ = _read_claim_bytes(judged) if judged is not None else (False, None)
                if _claim_is_live(info, judged_stat.st_mtime, file_system_now(run_dir, lock_fd)):
                    return None
                aside = run_dir / f".claim.stale.{token}"
                try:
                    os.rename(path, aside)
                except FileNotFoundError:
                    continue
                moved = _entry_bytes(aside) if judged is not None else _inode(aside)
                if moved != (judged if judged is not None else (judged_stat.st_dev, judged_stat.st_ino)):
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


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _entry_bytes(path: Path) -> bytes | None:
    try:
        return read_entry(path.parent, path.name, MAX_CLAIM_BYTES)[0]
    except (NotReadable, OSError):
        return None


def _read_claim_bytes(raw: bytes) -> tuple[dict | bool, None]:
    try:
        info = json.loads(raw)
    except ValueError:
        return False, None
    return (info if isinstance(info, dict) else False), None
