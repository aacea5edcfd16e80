"""A compilation cache for the probe's numba kernels that loads only what this project wrote and signed.

numba's own on-disk cache stores compiled kernels as pickles in a folder next
to the source or in a shared one, and loads whatever it finds there. Here the
kernels' compiled code goes to a private folder of the user's (created 0700,
refused when it is a link, owned by someone else or open to others), each file
signed with HMAC-SHA256 under a random key kept in that folder (0600). A file is
unpickled only after its signature checks out against its own name and its
bytes; anything else (a foreign, damaged or truncated file, or one written for
another version of the source, numba, llvmlite, numpy or Python) is treated as
absent, and the kernel is compiled and the file written again. So a machine
pays the compilation once (docs/performance.md: ~5-8 s on a quiet 2-core VM,
much more under load), and every later process loads the kernels instead.

Folder: ``$LCM_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/learning-curve-maps/
compiled`` (``~/.cache/...``); ``LCM_COMPILE_CACHE=off`` turns it off. Writes
are atomic (a temporary file renamed into place), so concurrent workers of a
sweep never see half a file; each compiled signature has its own file, so no
shared index is read and rewritten.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import stat
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

MAGIC = b"LCMNB01\n"
KEY_BYTES = 32
SUFFIX = ".nbc"


def folder_setting() -> Path | None:
    """The configured folder, or None when the cache is turned off."""
    chosen = os.environ.get("LCM_COMPILE_CACHE", "")
    if chosen.lower() == "off":
        return None
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "learning-curve-maps" / "compiled"


def private_folder(path: Path) -> str | None:
    """Why ``path`` cannot hold the cache (None: it can), creating it 0700 where missing."""
    if not hasattr(os, "getuid"):
        return "the cache needs a POSIX system (file owners and modes)"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as error:
        return f"cannot create it ({error})"
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return "it is not a plain folder (a link or a file)"
    if info.st_uid != os.getuid():
        return f"it belongs to user id {info.st_uid}, not to this user ({os.getuid()})"
    if info.st_mode & 0o077:
        return f"others may read or write it (mode {stat.S_IMODE(info.st_mode):o}; chmod 700 makes it private)"
    return None


def signing_key(path: Path) -> bytes | None:
    """The folder's random key (created on first use, 0600), or None when the file is not this user's alone."""
    key_file = path / "key"
    if not key_file.exists():
        handle, temporary = tempfile.mkstemp(dir=path, prefix=".key.")  # mkstemp creates it 0600
        try:
            os.write(handle, os.urandom(KEY_BYTES))
        finally:
            os.close(handle)
        try:
            os.link(temporary, key_file)  # atomic: the first process's key wins, complete
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    info = os.lstat(key_file)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    key = key_file.read_bytes()
    return key if len(key) == KEY_BYTES else None


def source_stamp(source: Path) -> str:
    """What the compiled code depends on besides the CPU (which numba's key holds): the kernels' source
    file and the versions of the compiler stack and Python."""
    digest = hashlib.sha256(source.read_bytes())
    for package in ("numba", "llvmlite", "numpy"):
        digest.update(f"{package}={metadata.version(package)};".encode())
    digest.update(f"python={sys.version};".encode())
    return digest.hexdigest()[:24]


def holds_kernels(source: Path) -> bool:
    """Whether the cache (when on and private) has compiled kernels of this ``source`` file as it is now:
    a process would load them instead of compiling. Cheap: no numba import, no file read."""
    path = folder_setting()
    if path is None or not path.is_dir():
        return False
    stamp = source_stamp(source)
    return any(path.glob(f"{source.stem}.*-{stamp}-*{SUFFIX}"))


class SignedFiles:
    """One kernel's cache entries: a file per signature, named by its function, the source stamp and a hash
    of numba's key; contents MAGIC, HMAC-SHA256 tag, pickled (stamp, key, data)."""

    def __init__(self, path: Path, key: bytes, filename_base: str, kernel: str, stamp: str):
        self.path, self.key, self.base, self.kernel, self.stamp = path, key, filename_base, kernel, stamp

    def name(self, index_key) -> str:
        hashed = hashlib.sha256(repr(index_key).encode()).hexdigest()[:24]
        return f"{self.base}-{self.stamp}-{hashed}{SUFFIX}"

    def tag(self, name: str, payload: bytes) -> bytes:
        return hmac.new(self.key, name.encode() + b"\0" + payload, hashlib.sha256).digest()

    def load(self, index_key):
        name = self.name(index_key)
        try:
            blob = (self.path / name).read_bytes()
        except OSError:
            return None
        head, payload = blob[: len(MAGIC) + 32], blob[len(MAGIC) + 32 :]
        if head[: len(MAGIC)] != MAGIC or not hmac.compare_digest(head[len(MAGIC) :], self.tag(name, payload)):
            return None  # not signed by this folder's key: never unpickled
        stamp, stored_key, data = pickle.loads(payload)
        return data if stamp == self.stamp and stored_key == index_key else None

    def save(self, index_key, data) -> None:
        from numba.core.serialize import dumps  # numba's pickler for compiled code (cloudpickle-based)

        name = self.name(index_key)
        payload = dumps((self.stamp, index_key, data))
        handle, temporary = tempfile.mkstemp(dir=self.path, prefix=f".{name}.")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(MAGIC + self.tag(name, payload) + payload)
            os.replace(temporary, self.path / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        for stale in self.path.glob(f"{self.kernel}-*{SUFFIX}"):  # the same kernel for another source
            if f"-{self.stamp}-" not in stale.name:
                stale.unlink(missing_ok=True)

    def flush(self) -> None:
        for entry in self.path.glob(f"{self.kernel}-*{SUFFIX}"):
            entry.unlink(missing_ok=True)


def kernel_name(py_func) -> str:
    """module.function, the start of its files' names (numba's: then the line number and Python's version)."""
    return f"{Path(py_func.__code__.co_filename).stem}.{py_func.__qualname__}"


class _FolderLocator:
    """What numba's cache machinery asks of a locator, for the private folder."""

    def __init__(self, py_func, path: Path, stamp: str):
        self._py_file = py_func.__code__.co_filename
        self._lineno = py_func.__code__.co_firstlineno
        self.path, self.stamp = path, stamp

    def ensure_cache_path(self):
        pass  # made private by private_folder before any kernel is attached

    def get_cache_path(self):
        return str(self.path)

    def get_source_stamp(self):
        return self.stamp

    def get_disambiguator(self):
        return str(self._lineno)


def attach(dispatchers, source: Path) -> str | None:
    """Give numba ``dispatchers`` (the kernels of ``source``) the signed cache; why not, where it cannot."""
    path = folder_setting()
    if path is None:
        return "turned off (LCM_COMPILE_CACHE=off)"
    problem = private_folder(path)
    key = None if problem else signing_key(path)
    if problem or key is None:
        reason = problem or "its key file is not this user's alone (0600)"
        warnings.warn(
            f"compile cache {path} not used: {reason}; the probe's kernels compile in every process", stacklevel=3
        )
        return reason
    from numba.core.caching import CompileResultCacheImpl, FunctionCache

    stamp = source_stamp(source)
    folder: Path = path
    signing: bytes = key

    class Impl(CompileResultCacheImpl):
        def __init__(self, py_func):  # numba's looks for a locator among its own; this cache has one
            self._lineno = py_func.__code__.co_firstlineno
            self._locator = _FolderLocator(py_func, folder, stamp)
            self._filename_base = self.get_filename_base(kernel_name(py_func), "")

    class SignedCache(FunctionCache):
        def __init__(self, py_func):  # numba's Cache.__init__, with the signed files instead of its index
            self._name = repr(py_func)
            self._py_func = py_func
            self._impl = Impl(py_func)
            self._cache_path = str(folder)
            # numba's cache reads and writes its entries through this object's load, save and flush only
            files = SignedFiles(folder, signing, self._impl.filename_base, kernel_name(py_func), stamp)
            self._cache_file = files  # type: ignore[assignment]
            self.enable()

    for dispatcher in dispatchers:
        dispatcher._cache = SignedCache(dispatcher.py_func)  # what Dispatcher.enable_caching sets
    return None
