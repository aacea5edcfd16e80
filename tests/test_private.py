"""No process loads a pickle from a path another user or group member can write (pipeline/private.py):
<root>/.hydra is made 0700 and checked, the local launcher's pickles are sealed with a per-launch key, and
a folder or file someone else could have written is refused before anything in it is unpickled."""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys

import pytest

from pipeline.private import (
    KEY_ENV,
    NotPrivate,
    ensure_private_tree,
    new_key,
    read_private,
    seal,
    unseal,
    write_private,
)
from tests.helpers import REPO

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user owns needs the superuser")


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0o002)  # the umask that made the launcher's context group-writable
    yield
    os.umask(old)


def test_the_private_tree_is_made_0700_whatever_the_umask(tmp_path, loose_umask):
    root = tmp_path / "out"
    base, leaf = root / ".hydra", root / ".hydra" / "sweeps" / "s1" / ".local_launcher"
    ensure_private_tree(base, leaf)
    for folder in (base, base / "sweeps", base / "sweeps" / "s1", leaf):
        assert _mode(folder) == 0o700, folder
    # the root, made group-writable by the umask, gets the sticky bit: nobody else can rename .hydra away
    assert os.stat(root).st_mode & stat.S_ISVTX and _mode(root) & stat.S_IWGRP
    write_private(leaf / "x.pkl", b"data")
    assert _mode(leaf / "x.pkl") == 0o600 and read_private(base, leaf / "x.pkl") == b"data"


def test_a_folder_of_yours_that_others_could_write_is_tightened(tmp_path):
    base = tmp_path / ".hydra"
    (base / "sweeps").mkdir(parents=True)
    os.chmod(base / "sweeps", 0o777)  # as an older version left it under umask 000
    ensure_private_tree(base, base / "sweeps" / "s")
    assert _mode(base / "sweeps") == 0o700


@as_root
def test_another_users_folder_on_the_way_is_refused(tmp_path):
    base = tmp_path / ".hydra"
    (base / "sweeps").mkdir(parents=True)
    os.chown(base / "sweeps", NOBODY, NOBODY)
    with pytest.raises(NotPrivate, match="belongs to"):
        ensure_private_tree(base, base / "sweeps" / "s")
    assert not (base / "sweeps" / "s").exists()


@as_root
def test_another_users_writable_root_without_the_sticky_bit_is_refused(tmp_path):
    root = tmp_path / "shared"
    root.mkdir()
    os.chown(root, NOBODY, NOBODY)
    os.chmod(root, 0o777)
    with pytest.raises(NotPrivate, match="sticky bit"):
        ensure_private_tree(root / ".hydra", root / ".hydra")
    os.chmod(root, 0o1777)  # like /tmp: others cannot rename what is yours
    ensure_private_tree(root / ".hydra", root / ".hydra")


def test_a_link_in_the_tree_is_refused(tmp_path):
    base = tmp_path / ".hydra"
    base.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (base / "sweeps").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NotPrivate, match="symbolic link|not a folder"):
        ensure_private_tree(base, base / "sweeps" / "s")
    with pytest.raises(NotPrivate):
        read_private(base, base / "sweeps" / "x.pkl")


def _private_file(tmp_path, data=b"payload"):
    base = tmp_path / ".hydra"
    ensure_private_tree(base, base / "w")
    write_private(base / "w" / "f.pkl", data)
    return base, base / "w" / "f.pkl"


def test_a_group_writable_pickle_is_refused(tmp_path):
    base, path = _private_file(tmp_path)
    os.chmod(path, 0o664)
    with pytest.raises(NotPrivate, match="can be written by its group"):
        read_private(base, path)


def test_a_pickle_in_a_folder_others_can_write_is_refused(tmp_path):
    base, path = _private_file(tmp_path)
    os.chmod(path.parent, 0o777)
    with pytest.raises(NotPrivate, match="can be written by anyone"):
        read_private(base, path)


@as_root
def test_a_pickle_another_user_owns_is_refused(tmp_path):
    base, path = _private_file(tmp_path)
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(NotPrivate, match="belongs to"):
        read_private(base, path)


def test_a_pickle_replaced_by_a_link_is_refused(tmp_path):
    base, path = _private_file(tmp_path)
    (tmp_path / "evil.pkl").write_bytes(b"x")
    path.unlink()
    path.symlink_to(tmp_path / "evil.pkl")
    with pytest.raises(NotPrivate, match="symbolic link"):
        read_private(base, path)


def test_a_seal_binds_the_data_to_the_launch_key():
    key = new_key()
    blob = seal(b"context", key)
    assert unseal(blob, key, "ctx") == b"context"
    with pytest.raises(NotPrivate, match="does not match"):
        unseal(blob[:-1] + b"X", key, "ctx")
    with pytest.raises(NotPrivate, match="does not match"):
        unseal(blob, new_key(), "ctx")
    with pytest.raises(NotPrivate, match="no seal"):
        unseal(pickle.dumps("context"), key, "ctx")


class _Marker:
    """Unpickling this runs code: it makes a file (what an attacker's pickle would do, harmlessly)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _start_worker(base, context, result, env_key):
    """The local launcher's job process, started as the launcher starts it."""
    from hydra_plugins.lcm_study.local_launcher import WORKER_ENTRY

    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    if env_key:
        env[KEY_ENV] = env_key
    args = [json.dumps(sys.path), str(base), str(context), "0", json.dumps(["seed=0"]), str(result)]
    return subprocess.run(
        [sys.executable, "-c", WORKER_ENTRY, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("attack", ["replaced", "group_writable", "unsealed"])
def test_a_job_process_refuses_a_context_someone_else_wrote_and_runs_none_of_it(tmp_path, attack):
    """The red team's reproduction: a group member swaps the launch context for a pickle of their own."""
    key = new_key()
    base = tmp_path / "out" / ".hydra"
    work = base / "sweeps" / "s" / ".local_launcher"
    ensure_private_tree(base, work)
    context, marker = work / "context-0.pkl", tmp_path / "pwned"
    evil = pickle.dumps(_Marker(str(marker)))
    if attack == "replaced":  # sealed with a key the attacker guessed
        write_private(context, seal(evil, new_key()))
    elif attack == "unsealed":
        write_private(context, evil)
    else:  # the launch's own sealed bytes, but the file left writable by the group
        write_private(context, seal(evil, key))
        os.chmod(context, 0o666)
    done = _start_worker(base, context, work / "job-0.result.pkl", key)
    assert done.returncode != 0 and "NotPrivate" in done.stderr, done.stderr[-2000:]
    assert not marker.exists()
    assert not (work / "job-0.result.pkl").exists()


def test_a_job_process_without_the_launch_key_loads_nothing(tmp_path):
    base = tmp_path / ".hydra"
    ensure_private_tree(base, base / "w")
    marker = tmp_path / "pwned"
    write_private(base / "w" / "c.pkl", seal(pickle.dumps(_Marker(str(marker))), new_key()))
    done = _start_worker(base, base / "w" / "c.pkl", base / "w" / "r.pkl", None)
    assert done.returncode != 0 and f"no launch key in {KEY_ENV}" in done.stderr
    assert not marker.exists()


def test_the_launcher_refuses_a_forged_result(tmp_path):
    """A result pickle not sealed by the job process is not unpickled: the job counts as failed."""
    from hydra_plugins.lcm_study.local_launcher import WorkerDied, job_return

    key = new_key()
    base = tmp_path / ".hydra"
    ensure_private_tree(base, base / "w")
    marker = tmp_path / "pwned"
    result = base / "w" / "job-0.result.pkl"
    write_private(result, seal(pickle.dumps(_Marker(str(marker))), new_key()))
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    ret = job_return(proc, base, result, key, ["seed=0"])
    assert isinstance(ret._return_value, WorkerDied) and "seal does not match" in str(ret._return_value)
    assert not marker.exists()
