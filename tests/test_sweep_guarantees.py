"""What a command guarantees, end to end with real Hydra multiruns on the local launcher: bad sweeper,
launcher, path and Hydra-folder values are refused before anything is written; a sweep exits 0 only when
every planned run verifies as done; claims dated by a skewed clock, links, loops and crafted checksum
lists neither block nor hang nor crash a sweep; a full disk leaves a status that says so; the outputs tree
keeps the launchers' pickles private."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.runfolder import done_check, file_system_now, is_done, read_status
from pipeline.schema import CLAIM, STATUS
from pipeline.status import collect
from tests.bad_inputs import BAD_LAUNCHES, EMPTY_ENV
from tests.helpers import REPO, fill_disk, run_cli, run_config

FAST = ["data_source=gesture", "trainer.epochs=1", "dataset.time_slices=8"]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("args,env,key", BAD_LAUNCHES, ids=[" ".join(a) for a, _, _ in BAD_LAUNCHES])
def test_a_bad_launch_value_is_refused_before_anything_is_written(tmp_path, args, env, key):
    root = tmp_path / "out"
    elsewhere = Path("/tmp/lcm-elsewhere")
    shutil.rmtree(elsewhere, ignore_errors=True)
    result = run_cli(*args, f"paths.root={root}", env={"WANDB_MODE": "disabled", **env}, cwd=tmp_path, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert key in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert not root.exists(), _tree(root)  # no .hydra folder, no run folder, no plan
    assert not elsewhere.exists() and _tree(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("args,env,key", EMPTY_ENV, ids=[" ".join(a) or "single" for a, _, _ in EMPTY_ENV])
def test_an_empty_outputs_variable_is_refused_before_anything_is_written(tmp_path, args, env, key):
    result = run_cli(*args, env={"WANDB_MODE": "disabled", **env}, cwd=tmp_path, timeout=300)
    assert result.returncode == 1 and key in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert _tree(tmp_path) == [] and not Path("/debug").exists()


@pytest.mark.slow
def test_a_tilde_root_puts_runs_and_hydras_folders_in_one_place(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli(*FAST, "paths.root='~/outs'", env={"WANDB_MODE": "disabled", "HOME": str(home)}, cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _tree(work) == []  # no literal ./~ folder
    assert (home / "outs" / ".hydra" / "single").is_dir()
    (run_dir,) = (home / "outs" / "headline" / "runs").iterdir()
    assert is_done(run_dir)


def _planned_run_dir(root: Path, *overrides: str) -> Path:
    """The folder a run of these overrides gets (planned in this process: nothing is written)."""
    from pipeline.identity import run_id

    return root / "headline" / "runs" / run_id(run_config(*FAST, *overrides, f"paths.root={root}"))


def _start(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args, f"paths.root={root}"],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_a_sweep_waits_for_runs_computed_elsewhere_and_fails_if_they_do_not_finish(tmp_path):
    """seed 0's folder is owned by a live process (this test): the sweep computes seed 1, waits for seed 0,
    and, when its owner lets go without finishing it, says so and exits 1 (it used to exit 0)."""
    root = tmp_path / "out"
    owned = _planned_run_dir(root, "pair=0", "seed=0")
    owned.mkdir(parents=True)
    (owned / CLAIM).write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid(), "token": "test"}))
    proc = _start(root, "-m", *FAST, "pair=0", "seed=0,1")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 600
    while not any("waiting for 1 run that other processes are computing" in line for line in lines):
        assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)[-3000:]
        time.sleep(0.5)
    assert is_done(_planned_run_dir(root, "pair=0", "seed=1"))
    time.sleep(3)
    assert proc.poll() is None  # still waiting for the owned run
    (owned / CLAIM).unlink()
    proc.wait(timeout=120)
    reader.join(10)
    err = "".join(lines)
    assert proc.returncode == 1, err[-3000:]
    assert "1 of the 2 planned runs are not done" in err and f"  {owned.name}: no status.json" in err
    assert "all 2 runs done" not in err


@pytest.mark.slow
def test_a_claim_dated_a_day_ahead_by_a_skewed_clock_does_not_block_its_run(tmp_path):
    """Another node's claim with an mtime a day in the future used to block its run forever while the sweep
    exited 0; it is stale now, taken over and computed."""
    root = tmp_path / "out"
    run_dir = _planned_run_dir(root, "pair=0", "seed=0")
    run_dir.mkdir(parents=True)
    claim = run_dir / CLAIM
    claim.write_text(json.dumps({"host": "node-with-a-fast-clock", "pid": 4242, "token": "theirs"}))
    ahead = file_system_now(run_dir) + 86400
    os.utime(claim, (ahead, ahead))
    result = run_cli("-m", *FAST, "pair=0", "seed=0", f"paths.root={root}", env={"WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 to run" in result.stderr and is_done(run_dir) and not claim.exists()


@pytest.mark.slow
def test_crafted_folders_neither_hang_nor_crash_the_sweep_status_or_the_analysis(tmp_path):
    """A status.json whose checksum list names /dev/zero and a symbolic-link loop named as a planned run:
    status and the analysis answer; the sweep redoes the first, refuses to write through the loop and
    says so (exit 1) instead of hanging or crashing."""
    from analysis.collect import collect_runs

    root = tmp_path / "out"
    first = run_cli("-m", *FAST, "pair=0", "seed=0,1", f"paths.root={root}", env={"WANDB_MODE": "disabled"})
    assert first.returncode == 0, first.stderr[-3000:]
    crafted, done = sorted((root / "headline" / "runs").iterdir())
    status = read_status(crafted)
    status["files"]["/dev/zero"] = {
        "bytes": 0,
        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }
    (crafted / STATUS).write_text(json.dumps(status))
    loop = _planned_run_dir(root, "pair=0", "seed=2")
    loop.symlink_to(loop)
    report = collect(root)["headline"]
    # the loop was never planned and its record is not read: its cell is unknown
    assert report["cells"] == {"gesture/pair 0": {"done": 1, "missing": 1}, "?": {"missing": 1}}
    analysis = collect_runs(root, progress=False)
    assert len(analysis.runs) == 1 and {s.run_id for s in analysis.skipped} == {crafted.name, loop.name}
    again = subprocess.run(
        [sys.executable, "-m", "pipeline", "-m", *FAST, "pair=0", "seed=0,1,2", f"paths.root={root}"],
        cwd=REPO,
        env={**os.environ, "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 1, again.stderr[-3000:]
    assert "2 to run (of which 2 damaged done runs, redone), 1 already done" in again.stderr
    assert f"  {loop.name}: NotReadable: the run folder" in again.stderr and "symbolic link" in again.stderr
    assert done_check(crafted) == ("done", None) and is_done(done) and loop.is_symlink()


@pytest.mark.slow
def test_a_sweep_under_a_group_umask_keeps_its_pickles_private(tmp_path):
    root = tmp_path / "out"
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f'umask 002 && exec "$0" -m pipeline -m {" ".join(FAST)} pair=0,1 seed=0 paths.root={root}',
            sys.executable,
        ],
        cwd=REPO,
        env={**os.environ, "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "all 2 runs done (verified)" in proc.stderr
    hydra = root / ".hydra"
    assert stat.S_IMODE(hydra.stat().st_mode) == 0o700
    assert root.stat().st_mode & stat.S_ISVTX  # group-writable root: nobody else can rename .hydra
    for folder in (hydra / "sweeps", *(hydra / "sweeps").iterdir()):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not list(hydra.rglob("*.pkl"))  # the launch context and results are gone
    run_dir = next((root / "headline" / "runs").iterdir())
    assert stat.S_IMODE((run_dir / STATUS).stat().st_mode) == 0o664  # records stay readable by the group


# --- a full disk -----------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A real, small file system (tmpfs): needs the superuser and mount; skipped (saying why) elsewhere."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a small file system to fill needs the superuser and mount")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"mount refused here: {made.stderr.decode()[:200]}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_run_failing_on_a_full_disk_leaves_a_status_that_says_so(small_disk):
    import pandas as pd

    from pipeline.record import RunRecord
    from pipeline.schema import STATUS_RESERVE

    record = RunRecord(small_disk / "r", "r")
    record.write_config("x: 1\n")
    record.mark_running()
    fill_disk(small_disk)
    with pytest.raises(OSError) as err:
        record.write_results(pd.DataFrame({"v": range(100_000)}), pd.DataFrame({"v": [1]}), {"a": 1})
    record.mark_failed(err.value)
    status = read_status(small_disk / "r")
    assert status["state"] == "failed" and "No space left on device" in status["error"]
    assert "full disk" in status["note"] and "Traceback" in status["traceback"]
    assert not (small_disk / "r" / STATUS_RESERVE).exists()


@pytest.mark.slow
def test_a_run_whose_disk_fills_mid_run_is_recorded_failed_not_died(small_disk):
    root = small_disk / "out"
    proc = _start(root, *FAST, "trainer.epochs=6", "pair=0")
    runs = root / "headline" / "runs"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        folders = list(runs.iterdir()) if runs.is_dir() else []
        if folders and (read_status(folders[0]) or {}).get("state") == "running":
            break
        time.sleep(0.1)
    fill_disk(small_disk)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    (problem,) = collect(root)["headline"]["problems"]
    assert problem["state"] == "failed" and "No space left on device" in problem["detail"], (problem, err[-2000:])
