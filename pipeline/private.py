"""Files that only this user may have written: Hydra's bookkeeping under ``<paths.root>/.hydra`` and the
launchers' pickles (the local launcher's job context and results, submitit's job and result files).

A pickle runs code when it is loaded, so a pickle that another user or group member could write would let
them run code as you. The trust model (docs/reliability.md, "Who can change what a job runs"):

- ``<paths.root>/.hydra`` and every folder the project makes under it are created ``0700`` (whatever the
  umask) and checked before anything is written there: owned by you, no symbolic link, writable by nobody
  else (your own folders left looser by an older version are tightened; another user's are refused).
- The folder that holds ``.hydra`` (the outputs root) must not let others rename ``.hydra`` away and put
  their own in its place: it is yours (or the superuser's) and writable by nobody else, or has the sticky
  bit. A root of yours that your group may write gets the sticky bit (others keep creating their own
  entries, but cannot rename or delete yours); another user's such root is refused.
- The local launcher's pickles are also sealed: an HMAC-SHA256 with a key made for each launch and handed
  to its job processes in their environment (which only you and the superuser can read), checked before
  anything is unpickled. Every pickle the project reads itself is opened folder by folder from ``.hydra``
  down without following links, checked (owner, mode, a regular file) on the open descriptors, so what is
  checked is what is read.

Torch-free and Hydra-free.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
KEY_ENV = "LCM_LAUNCH_KEY"
_SEAL = b"LCM-SEALED-1\n"
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


class NotPrivate(PermissionError):
    """A folder or file that someone other than this user could have written (or a seal that does not
    match): refused before anything in it is trusted. The message says which and what to do."""


def _me() -> int:
    return os.geteuid()


def _who(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"


def _problem(info: os.stat_result, what: str, *, file: bool = False) -> str | None:
    """Why ``info`` is not private to this user, or None."""
    if file and not stat.S_ISREG(info.st_mode):
        return f"{what} is not a regular file"
    if not file and not stat.S_ISDIR(info.st_mode):
        return f"{what} is not a folder"
    if info.st_uid != _me():
        return f"{what} belongs to {_who(info.st_uid)}, not to you ({_who(_me())})"
    if info.st_mode & _OTHERS_WRITE:
        return f"{what} can be written by {'anyone' if info.st_mode & stat.S_IWOTH else 'its group'}"
    return None


# ---------------------------------------------------------------------------
# The private tree
# ---------------------------------------------------------------------------


def check_holder(holder: Path) -> None:
    """The folder that holds ``.hydra`` lets nobody else rename ``.hydra``: adds the sticky bit to a folder of
    yours that others may write; NotPrivate for another user's folder that others may write."""
    info = os.stat(holder)
    if not info.st_mode & _OTHERS_WRITE or info.st_mode & stat.S_ISVTX:
        return
    if info.st_uid == _me():
        # others may create entries here, but no longer rename or delete yours (.hydra among them)
        os.chmod(holder, stat.S_IMODE(info.st_mode) | stat.S_ISVTX)
        return
    raise NotPrivate(
        f"{holder} belongs to {_who(info.st_uid)} and others may write to it without the sticky bit, so anyone "
        f"could replace its .hydra folder, where the launchers keep the jobs' pickles: use an outputs root "
        f"(paths.root) of your own, or ask its owner for `chmod +t {holder}`"
    )


def _tighten_or_refuse(fd: int, path: Path) -> None:
    info = os.fstat(fd)
    problem = _problem(info, str(path))
    if problem is None:
        return
    if stat.S_ISDIR(info.st_mode) and info.st_uid == _me():
        os.fchmod(fd, PRIVATE_DIR_MODE)  # a folder of yours, left writable by others: made private
        return
    raise NotPrivate(f"{problem}: it holds the launchers' pickles, so it must be yours alone; remove it")


def _open_dir(name: str | Path, dir_fd: int | None, path: Path) -> int:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except NotADirectoryError:
        raise NotPrivate(f"{path} is not a folder (a symbolic link?): remove it") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link
            raise NotPrivate(f"{path} is a symbolic link: remove it") from None
        raise


def ensure_private_tree(base: Path, leaf: Path) -> None:
    """``base`` (``<root>/.hydra``) and every folder from it down to ``leaf``: made ``0700`` where missing,
    checked where present (yours, no link, writable by nobody else), walking open descriptors."""
    base, leaf = Path(base), Path(leaf)
    parts = leaf.relative_to(base).parts  # ValueError when leaf is not under base
    base.parent.mkdir(parents=True, exist_ok=True)
    check_holder(base.parent)
    # the root itself may be a link of yours (outputs -> /scratch/...); from .hydra down, nothing is followed
    holder = os.open(base.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = _make_or_open(holder, base.name, base)
    finally:
        os.close(holder)
    path = base
    try:
        for part in parts:
            path = path / part
            child = _make_or_open(fd, part, path)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def _make_or_open(parent_fd: int, name: str, path: Path) -> int:
    try:
        os.mkdir(name, PRIVATE_DIR_MODE, dir_fd=parent_fd)
    except FileExistsError:
        pass
    fd = _open_dir(name, parent_fd, path)
    try:
        _tighten_or_refuse(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private(base: Path, path: Path, limit: int = 1 << 30) -> bytes:
    """The bytes of ``path`` (under ``base``), opened folder by folder from ``base`` without following links;
    NotPrivate unless every folder and the file are yours and writable by nobody else."""
    base, path = Path(base), Path(path)
    parts = path.relative_to(base).parts
    fd = _open_dir(base, None, base)
    try:
        where = base
        problem = _problem(os.fstat(fd), str(base))
        for part in parts[:-1]:
            if problem:
                break
            where = where / part
            child = _open_dir(part, fd, where)
            os.close(fd)
            fd = child
            problem = _problem(os.fstat(fd), str(where))
        if problem:
            raise NotPrivate(f"{problem}: {path} is not loaded")
        try:
            ffd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise NotPrivate(f"{path} is a symbolic link: not loaded") from None
            raise
    finally:
        os.close(fd)
    try:
        info = os.fstat(ffd)
        problem = _problem(info, str(path), file=True)
        if problem:
            raise NotPrivate(f"{problem}: not loaded")
        if info.st_size > limit:
            raise NotPrivate(f"{path} has {info.st_size} bytes, more than any such file: not loaded")
        with os.fdopen(ffd, "rb", closefd=False) as fh:
            return fh.read(limit + 1)
    finally:
        os.close(ffd)


def write_private(path: Path, data: bytes) -> None:
    """``data`` to ``path`` atomically, readable and writable by this user only (``0600``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # made 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------
# Seals: what a launch writes for its own job processes, and what they write back
# ---------------------------------------------------------------------------


def new_key() -> str:
    """A fresh launch key (256 random bits, hex)."""
    return secrets.token_hex(32)


def seal(data: bytes, key: str) -> bytes:
    tag = hmac.new(bytes.fromhex(key), data, hashlib.sha256).digest()
    return _SEAL + tag + data


def unseal(blob: bytes, key: str, what: str) -> bytes:
    """The data ``seal`` sealed with ``key``; NotPrivate when ``blob`` was not sealed with it."""
    head = len(_SEAL) + hashlib.sha256().digest_size
    if not blob.startswith(_SEAL) or len(blob) < head:
        raise NotPrivate(f"{what} was not written by this launch (no seal): not loaded")
    tag, data = blob[len(_SEAL) : head], blob[head:]
    if not hmac.compare_digest(tag, hmac.new(bytes.fromhex(key), data, hashlib.sha256).digest()):
        raise NotPrivate(f"{what} was not written by this launch (its seal does not match): not loaded")
    return data
