"""The probe's compilation cache (pipeline/probes/compile_cache.py): a later process loads the kernels a first
one compiled; a file this folder's key did not sign is never unpickled; the folder must be the user's alone."""

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.probes import compile_cache, knn

REPO = Path(__file__).resolve().parent.parent

# A fresh process: one small kernel of the probe, called once; prints numba's compile and cache-load counts.
ONE_KERNEL = """
import json, numpy as np
from pipeline.probes import knn_compiled
first, weight, counts = knn_compiled.group_tables(np.array([0, 1, 0]), 2, np.array([1, 0, 1]), 2)
assert first.tolist() == [0, 1] and counts.tolist() == [[0.0, 2.0], [1.0, 0.0]]
stats = knn_compiled.group_tables.stats
print(json.dumps([sum(stats.cache_misses.values()), sum(stats.cache_hits.values()), knn_compiled.CACHE_PROBLEM]))
"""


def kernel_process(folder) -> tuple[int, int, str | None]:
    env = {**os.environ, "LCM_COMPILE_CACHE": str(folder)}
    out = subprocess.run([sys.executable, "-c", ONE_KERNEL], env=env, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


class Marker:
    """Unpickling it creates a file: proof that a pickle was loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """A cache folder into which a first process compiled the kernel (read-only to the tests: they copy it)."""
    folder = tmp_path_factory.mktemp("compiled") / "cache"
    assert kernel_process(folder) == (1, 0, None)
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "cache"))


def test_a_later_process_loads_what_the_first_compiled(compiled, tmp_path):
    assert oct(compiled.stat().st_mode & 0o777) == "0o700"
    assert oct((compiled / "key").stat().st_mode & 0o777) == "0o600"
    written = sorted(compiled.glob("knn_compiled.group_tables-*.nbc"))
    assert len(written) == 1 and oct(written[0].stat().st_mode & 0o777) == "0o600"
    assert kernel_process(copy_of(compiled, tmp_path))[:2] == (0, 1)  # loaded, not compiled


def flipped(blob: bytes) -> bytes:
    middle = len(blob) // 2
    return blob[:middle] + bytes([blob[middle] ^ 1]) + blob[middle + 1 :]


def test_a_file_not_signed_by_the_folders_key_is_never_unpickled(compiled, tmp_path):
    folder = copy_of(compiled, tmp_path)
    (written,) = folder.glob("knn_compiled.group_tables-*.nbc")
    files = compile_cache.SignedFiles(folder, (folder / "key").read_bytes(), "", "", "")
    files.stamp, index_key = pickle.loads(written.read_bytes()[len(compile_cache.MAGIC) + 32 :])[:2]
    assert files.name(index_key) != written.name  # the name carries numba's file base, the test's files none
    marker = tmp_path / "unpickled"
    planted = pickle.dumps(Marker(marker))
    original = written.read_bytes()
    for blob in (
        planted,  # a plain pickle under the expected name
        compile_cache.MAGIC + b"\0" * 32 + planted,  # our header, a wrong tag
        flipped(original),  # one bit changed
        original[:100],  # truncated
    ):
        (folder / files.name(index_key)).write_bytes(blob)
        assert files.load(index_key) is None and not marker.exists()
    # signed under another folder's key: absent here too
    other = compile_cache.SignedFiles(folder, os.urandom(32), "", "", files.stamp)
    other.save(index_key, {"planted": True})
    assert files.load(index_key) is None
    # through numba: the plain pickle planted under the kernel's own file is never loaded; the kernel is
    # compiled again and its file written again, signed
    written.write_bytes(planted)
    assert kernel_process(folder)[:2] == (1, 0) and not marker.exists()
    assert kernel_process(folder)[:2] == (0, 1)


def test_a_signed_file_of_another_signature_or_source_is_absent(tmp_path):
    path = tmp_path / "cache"
    assert compile_cache.private_folder(path) is None
    key = compile_cache.signing_key(path)
    files = compile_cache.SignedFiles(path, key, "m.f-1.py311", "m.f", "stamp1")
    signature = ("a", "signature")
    files.save(signature, {"code": 1})
    assert files.load(signature) == {"code": 1}
    name = files.name(signature)
    other = files.name(("another", "signature"))
    os.replace(path / name, path / other)  # signed for its own name: renamed, it no longer checks out
    assert files.load(("another", "signature")) is None
    newer = compile_cache.SignedFiles(path, key, "m.f-1.py311", "m.f", "stamp2")
    newer.save(signature, {"code": 2})
    assert not (path / other).exists(), "the same kernel's files of an older source are removed"
    assert files.load(signature) is None and newer.load(signature) == {"code": 2}


def test_the_folder_must_be_the_users_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o775)
    assert "others may read or write it" in compile_cache.private_folder(shared)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    assert "not a plain folder" in compile_cache.private_folder(link)
    fresh = tmp_path / "a" / "b"
    assert compile_cache.private_folder(fresh) is None and oct(fresh.stat().st_mode & 0o777) == "0o700"
    key = compile_cache.signing_key(fresh)
    assert len(key) == 32 and compile_cache.signing_key(fresh) == key
    (fresh / "key").chmod(0o644)
    assert compile_cache.signing_key(fresh) is None


def test_an_unusable_folder_leaves_the_kernels_uncached(tmp_path, monkeypatch):
    import numba

    @numba.njit(cache=False)
    def double(x):
        return 2 * x

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("LCM_COMPILE_CACHE", str(shared))
    with pytest.warns(UserWarning, match="not used: others may read or write it"):
        assert compile_cache.attach([double], Path(__file__)) is not None
    assert double(2) == 4 and not list(shared.iterdir())
    monkeypatch.setenv("LCM_COMPILE_CACHE", "off")
    assert compile_cache.folder_setting() is None
    assert "turned off" in compile_cache.attach([double], Path(__file__))


def test_holds_kernels_only_for_the_source_as_it_is(compiled, tmp_path, monkeypatch):
    monkeypatch.setenv("LCM_COMPILE_CACHE", str(compiled))
    assert compile_cache.holds_kernels(knn.COMPILED_SOURCE)
    changed = tmp_path / "knn_compiled.py"
    changed.write_text(knn.COMPILED_SOURCE.read_text() + "\n# changed\n")
    assert not compile_cache.holds_kernels(changed)
    monkeypatch.setenv("LCM_COMPILE_CACHE", str(tmp_path / "empty"))
    assert not compile_cache.holds_kernels(knn.COMPILED_SOURCE)
