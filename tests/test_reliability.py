"""Reliability of the run folder: race-free claims, verified done runs, exact failure counts, file modes."""

import json
import multiprocessing as mp
import os
import pickle
import socket
import stat
import subprocess
import sys
import time

import pandas as pd
import pytest

from pipeline import runfolder
from pipeline.packs import PackFailed
from pipeline.record import RunRecord
from pipeline.runfolder import (
    FILE_MODE,
    atomic_write_json,
    claim_state,
    damage,
    done_check,
    is_done,
    read_status,
    try_claim,
)
from pipeline.schema import CLAIM, CLAIM_LOCK, CONFIG, CURVES, STATUS, SUMMARY
from pipeline.status import collect, format_report
from tests.bad_inputs import BAD_DATA, BAD_INPUTS, write_bad_data_files
from tests.helpers import dead_pid

WORKERS = 4
TRIALS = 300


def _contend(folders, barrier, worker):
    """One racer: for every trial, claim the folder, re-check done, 'compute' (append to a log), mark done."""
    for folder in folders:
        barrier.wait()
        claim = try_claim(folder)
        if claim is None:
            continue
        try:
            if is_done(folder):
                continue
            with open(os.path.join(folder, "computed"), "a") as fh:
                fh.write(f"{worker}\n")
            record = RunRecord(folder, "r")
            record.write_config("design: {}\n")
            record.write_results(pd.DataFrame({"v": [worker]}), pd.DataFrame({"v": [0]}), {})
            record.mark_done()
        finally:
            claim.release()


def test_many_processes_race_for_one_run_folder_and_exactly_one_computes_it(tmp_path):
    """Hundreds of races of 4 processes, a third of them over a stale claim (dead owner) and a
    third over an unreadable old claim; plus races where a live process owns the folder."""
    dead = dead_pid()
    host = socket.gethostname()
    folders, live = [], []
    for trial in range(TRIALS):
        folder = tmp_path / f"t{trial:03d}"
        folder.mkdir()
        kind = trial % 3
        if kind == 1:
            (folder / CLAIM).write_text(json.dumps({"host": host, "pid": dead, "token": "old"}))
        elif kind == 2:
            (folder / CLAIM).write_text('{"host": ')  # damaged, long ago
            os.utime(folder / CLAIM, (time.time() - 3600,) * 2)
        folders.append(str(folder))
    for trial in range(20):  # owned by this (live) process: nobody may take it over
        folder = tmp_path / f"live{trial:02d}"
        (folder / CLAIM).parent.mkdir()
        (folder / CLAIM).write_text(json.dumps({"host": host, "pid": os.getpid(), "token": "mine"}))
        live.append(str(folder))
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(WORKERS)
    procs = [ctx.Process(target=_contend, args=(folders + live, barrier, w)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    computed = [len((tmp_path / f / "computed").read_text().splitlines()) for f in folders]
    assert computed == [1] * TRIALS
    assert all(is_done(f) and claim_state(f) is None for f in folders)
    assert all(not os.path.exists(os.path.join(f, "computed")) for f in live)
    assert all(json.loads((tmp_path / f / CLAIM).read_text())["token"] == "mine" for f in live)


def _lock_held_by_another_process(lock_file) -> bool:
    """Whether a POSIX lock on ``lock_file`` is held (asked from a fresh process: locks are per process)."""
    probe = (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR)\n"
        "try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(3)\n"
    )
    return subprocess.run([sys.executable, "-c", probe, str(lock_file)], timeout=60).returncode == 3


def test_the_claim_lock_stays_held_while_a_stale_claim_is_judged(tmp_path, monkeypatch):
    """Closing any descriptor of a file drops the process's POSIX locks on it: reading the file system's
    clock by opening the lock file again, inside a takeover, let a second claimant in (a run computed twice
    in one race of 300 on a loaded machine)."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / CLAIM).write_text('{"host": ')  # damaged, long ago: taken over
    os.utime(folder / CLAIM, (time.time() - 3600,) * 2)
    held = []
    clock = runfolder.file_system_now

    def clock_then_look(run_dir, *args):
        now = clock(run_dir, *args)
        held.append(_lock_held_by_another_process(folder / CLAIM_LOCK))
        return now

    monkeypatch.setattr(runfolder, "file_system_now", clock_then_look)
    assert try_claim(folder) is not None
    assert held == [True]


def test_a_claim_is_released_only_by_its_owner(tmp_path):
    mine = try_claim(tmp_path / "r")
    assert mine is not None
    # the folder was taken over (e.g. this process was thought dead) by a claim of another process
    (tmp_path / "r" / CLAIM).unlink()
    (tmp_path / "r" / CLAIM).write_text(json.dumps({"host": socket.gethostname(), "pid": 1, "token": "other"}))
    mine.release()
    mine.heartbeat()
    assert json.loads((tmp_path / "r" / CLAIM).read_text())["token"] == "other"


def _done_record(run_dir):
    record = RunRecord(run_dir, run_dir.name, cell="gesture/pair 0")
    record.write_config("design:\n  cell: gesture/pair 0\n  pair: 0\n")
    record.mark_running()
    record.write_results(pd.DataFrame({"probe": ["knn"], "value": [0.5]}), pd.DataFrame({"b": [2]}), {"c": 3})
    record.mark_done()
    return run_dir


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "fault,reason",
    [
        (lambda d: _truncate(d / CURVES), "curves.parquet has"),
        (lambda d: (d / CONFIG).write_text("design:\n  cell: gesture/pair 0\n  pair: 1\n"), "config.yaml changed"),
        (lambda d: (d / SUMMARY).unlink(), "summary.json missing"),
        (lambda d: (d / SUMMARY).write_text('{\n  "c": 4\n}\n'), "summary.json changed"),  # same size
        (lambda d: (d / STATUS).write_text('{"state": "do'), "status.json unreadable"),
        (lambda d: (d / STATUS).write_text("[1, 2]"), "status.json is not a JSON object"),
    ],
)
def test_a_damaged_done_run_is_found_reported_and_not_done(tmp_path, fault, reason):
    good = _done_record(tmp_path / "headline" / "runs" / "gesture-p00-r000-aaaaaaaaaa")
    bad = _done_record(tmp_path / "headline" / "runs" / "gesture-p00-r001-bbbbbbbbbb")
    assert done_check(good) == ("done", None) and is_done(bad)
    fault(bad)
    state, why = done_check(bad)
    assert state == "damaged" and reason in why and not is_done(bad) and is_done(good)
    report = collect(tmp_path)["headline"]
    assert report["cells"]["gesture/pair 0"] == {"done": 1, "missing": 1}
    (problem,) = report["problems"]
    assert problem["run_id"] == bad.name and reason in problem["detail"] and "relaunch" in problem["detail"]
    assert bad.name in format_report(collect(tmp_path))


def test_records_written_before_status_listed_files_are_checked_for_truncation(tmp_path):
    run_dir = _done_record(tmp_path / "r")
    status = read_status(run_dir)
    del status["files"]
    atomic_write_json(run_dir / STATUS, status)
    assert damage(run_dir, status) is None
    _truncate(run_dir / CURVES)
    assert damage(run_dir, status) == "curves.parquet truncated or not parquet"


def test_a_packs_failures_are_counted_one_by_one_across_processes():
    failures = [(f"gesture-p0{i}-r000-x", f"ValueError: bad; value {i}") for i in range(4)]
    error = pickle.loads(pickle.dumps(PackFailed(failures)))
    assert error.failures == failures and len(str(error).splitlines()) == 4


def test_record_files_are_group_readable_and_honour_the_umask(tmp_path):
    run_dir = _done_record(tmp_path / "r")
    assert FILE_MODE == 0o666 & ~_umask()
    for name in (CONFIG, CURVES, SUMMARY, STATUS):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == FILE_MODE
    assert FILE_MODE & stat.S_IRGRP  # the usual umasks (022, 002, 027) leave the group read bit


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- end to end: real sweeps on the local launcher ----------------------------------------------------------

FAST = ["trainer.epochs=1"]


def _sweep_env():
    return {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}


@pytest.mark.slow
def test_two_sweeps_started_at_once_on_one_root_each_compute_all_their_runs(tmp_path):
    import subprocess
    import sys

    from tests.helpers import REPO

    def start(seeds):
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline",
                "-m",
                "data_source=gesture",
                "pair=0",
                f"seed={seeds}",
                *FAST,
                f"paths.root={tmp_path}",
            ],
            cwd=REPO,
            env=_sweep_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    procs = [start("0,1,2"), start("3,4,5")]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    runs = tmp_path / "headline" / "runs"
    assert len(list(runs.iterdir())) == 6 and all(is_done(d) for d in runs.iterdir())
    sweeps = sorted((tmp_path / ".hydra" / "sweeps").iterdir())
    assert len(sweeps) == 2
    planned = [{row.split(",")[0] for row in (s / "plan.csv").read_text().splitlines()[1:]} for s in sweeps]
    assert sorted(len(p) for p in planned) == [3, 3] and not planned[0] & planned[1]
    assert len(list((tmp_path / "headline" / "plans").glob("*.csv"))) == 2


@pytest.mark.slow
def test_a_relaunch_redoes_damaged_done_runs_and_status_survives_them(tmp_path):
    from tests.helpers import run_cli

    args = ["-m", "data_source=gesture", "pair=0", "seed=0,1,2", *FAST, f"paths.root={tmp_path}"]
    first = run_cli(*args, env={"WANDB_MODE": "disabled"})
    assert first.returncode == 0, first.stderr[-3000:]
    runs = sorted((tmp_path / "headline" / "runs").iterdir())
    _truncate(runs[0] / CURVES)
    (runs[1] / STATUS).write_text("{")
    report = collect(tmp_path)["headline"]
    assert report["cells"]["gesture/pair 0"] == {"done": 1, "missing": 2}
    assert {p["run_id"] for p in report["problems"]} == {runs[0].name, runs[1].name}
    again = run_cli(*args, env={"WANDB_MODE": "disabled"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 to run (of which 2 damaged done runs, redone), 1 already done" in again.stderr
    assert all(is_done(d) for d in runs)


@pytest.mark.slow
def test_every_failed_run_of_every_pack_is_counted_and_listed(tmp_path):
    from tests.bad_inputs import diverging_watch_file
    from tests.helpers import run_cli

    # NaN in every PEN recording: the 4 runs (pairs 0 and 1 both hold PEN) fail while training, 2 per job
    data = diverging_watch_file(tmp_path / "nan" / "watch_dataset.npy")
    result = run_cli(
        "-m",
        "data_source=gesture",
        f"dataset.root={data}",
        "pair=0,1",
        "seed=0,1",
        *FAST,
        "hydra.sweeper.runs_per_job=2",
        f"paths.root={tmp_path / 'out'}",
        env={"WANDB_MODE": "disabled"},
    )
    assert result.returncode != 0
    assert "4 of 4 runs failed" in result.stderr, result.stderr[-3000:]
    folders = list((tmp_path / "out" / "headline" / "runs").iterdir())
    assert len(folders) == 4
    for run_dir in folders:
        assert f"  {run_dir.name}: " in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum", [15, 2])
def test_a_signal_marks_the_run_interrupted_and_frees_its_claim(tmp_path, signum):
    import subprocess
    import sys

    from tests.helpers import REPO

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "data_source=gesture",
            "pair=0",
            "trainer.epochs=500",
            f"paths.root={tmp_path}",
        ],
        cwd=REPO,
        env=_sweep_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = tmp_path / "headline" / "runs"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        folders = list(runs.iterdir()) if runs.is_dir() else []
        if folders and _state(folders[0]) == "running":
            break
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-2000:]
    (run_dir,) = runs.iterdir()
    status = read_status(run_dir)
    assert status["state"] == "interrupted" and status["error"].startswith("interrupted by SIG")
    assert not (run_dir / CLAIM).exists()
    (problem,) = collect(tmp_path)["headline"]["problems"]
    assert problem["state"] == "missing" and "interrupted by SIG" in problem["detail"]


def _start_sweep(tmp_path, *args):
    import subprocess
    import sys

    from tests.helpers import REPO

    command = [sys.executable, "-m", "pipeline", "-m", *args, f"paths.root={tmp_path}"]
    return command, subprocess.Popen(
        command, cwd=REPO, env=_sweep_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_until_running(runs, n, timeout=300):
    """The run folders once ``n`` of them say running (each owned by its job process, named in its claim)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        folders = sorted(runs.iterdir()) if runs.is_dir() else []
        if len(folders) == n and all(_state(f) == "running" and (f / CLAIM).exists() for f in folders):
            return folders
        time.sleep(0.2)
    raise AssertionError(f"{n} runs never ran at once under {runs}")


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGKILL", "SIGTERM"])
def test_a_killed_worker_loses_only_its_own_run_and_the_relaunch_computes_it(tmp_path, signame):
    import signal
    import subprocess

    from tests.helpers import REPO

    args = ["data_source=gesture", "pair=0,1", "seed=0", "trainer.epochs=3", "hydra.launcher.n_jobs=2"]
    command, proc = _start_sweep(tmp_path, *args)
    runs = tmp_path / "headline" / "runs"
    victim, survivor = _wait_until_running(runs, 2)
    os.kill(json.loads((victim / CLAIM).read_text())["pid"], getattr(signal, signame))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err[-3000:]
    assert _state(survivor) == "done" and is_done(survivor)
    # SIGKILL: the run could not say anything (its claim is stale); SIGTERM: it marked itself interrupted
    assert _state(victim) == ("running" if signame == "SIGKILL" else "interrupted")
    assert "1 of 2 runs failed" in err and f"  {victim.name}: WorkerDied" in err and signame in err
    assert "relaunch the same command" in err
    (problem,) = collect(tmp_path)["headline"]["problems"]
    assert problem["run_id"] == victim.name and problem["state"] == "missing"
    again = subprocess.run(command, cwd=REPO, env=_sweep_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 to run, 1 already done" in again.stderr and is_done(victim)


@pytest.mark.slow
def test_sigterm_to_the_sweep_driver_stops_its_workers_and_their_runs_say_interrupted(tmp_path):
    import signal

    _, proc = _start_sweep(tmp_path, "data_source=gesture", "pair=0,1", "seed=0", "trainer.epochs=50")
    folders = _wait_until_running(tmp_path / "headline" / "runs", 2)
    workers = [json.loads((f / CLAIM).read_text())["pid"] for f in folders]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "stopped by" in err and "relaunch" in err, err[-3000:]
    assert all(_state(f) == "interrupted" and not (f / CLAIM).exists() for f in folders)
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _state(run_dir):
    try:
        return (read_status(run_dir) or {}).get("state")
    except ValueError:
        return None


# --- the analysis reads each run once, from the root, and never pools different conditions --------------------


def _analysis_study(tmp_path):
    from tests.analysis_fixtures import make_study

    return make_study(tmp_path / "outputs", study="s1", pairs=(0, 1), replicates=2, shuffled_replicates=0, epochs=4)


def test_the_analysis_refuses_to_pool_runs_of_different_settings(tmp_path):
    import yaml

    from analysis import collect

    study = _analysis_study(tmp_path)
    folder = next(iter(study["runs"].values()))["folder"]
    config = yaml.safe_load((folder / CONFIG).read_text())
    config["trainer"]["lr"] = 0.05
    (folder / CONFIG).write_text(yaml.safe_dump(config))
    with pytest.raises(
        collect.MixedConditions,
        match=r"trainer\.lr=0\.05.*trainer\.lr=0\.001|trainer\.lr=0\.001.*"
        r"trainer\.lr=0\.05",
    ):
        collect.collect_runs(study["root"], progress=False)


def test_each_data_source_keeps_its_own_batch_size_but_not_two(tmp_path):
    """The study's sources train at batches of 128 and 256 (conf/data_source): that is the design, not two
    conditions (a `make run` study was refused for it); two batch sizes within one source are."""
    import yaml

    from analysis import collect

    study = _analysis_study(tmp_path)

    def set_batch(folder, size):
        config = yaml.safe_load((folder / CONFIG).read_text())
        config["trainer"]["batch_size"] = size
        (folder / CONFIG).write_text(yaml.safe_dump(config))

    for run in study["runs"].values():
        if run["folder"].name.startswith("sentence"):
            set_batch(run["folder"], 256)
    collection = collect.collect_runs(study["root"], progress=False, use_cache=False)
    assert set(collection.runs["source"]) == {"gesture", "sentence"}
    gesture = sorted(r["folder"] for r in study["runs"].values() if r["folder"].name.startswith("gesture"))
    set_batch(gesture[0], 64)
    with pytest.raises(collect.MixedConditions, match=r"data source gesture.*trainer\.batch_size=(64|128)"):
        collect.collect_runs(study["root"], progress=False, use_cache=False)


def test_a_copied_folder_a_link_outside_the_root_and_a_duplicate_are_not_counted(tmp_path):
    import shutil

    from analysis import collect

    study = _analysis_study(tmp_path)
    n = len(collect.collect_runs(study["root"], progress=False).runs)
    runs_dir = study["root"] / "s1" / "runs"
    original = sorted(runs_dir.iterdir())[0]
    shutil.copytree(original, runs_dir / f"{original.name} copy")
    outside = tmp_path / "elsewhere" / "gesture-p09-r009-x"
    shutil.copytree(original, outside)
    (outside / STATUS).write_text(json.dumps({"state": "done", "run_id": outside.name}))
    (runs_dir / outside.name).symlink_to(outside)
    shutil.copytree(original, study["root"] / "s2" / "runs" / original.name)  # the same run id in another study
    c = collect.collect_runs(study["root"], progress=False)
    assert len(c.runs) == n
    reasons = {(s.study, s.run_id): s.reason for s in c.skipped}
    assert "a copy?" in reasons[("s1", f"{original.name} copy")]
    assert "outside the outputs root" in reasons[("s1", outside.name)]
    assert "duplicate of run" in reasons[("s2", original.name)]


def test_class_names_with_dollar_signs_are_drawn_as_text(tmp_path):
    """A class name that is broken mathtext (``$\\undefinedcmd{$``) must not crash the figures."""
    from analysis import collect, figures
    from tests.analysis_fixtures import write_run

    root = tmp_path / "outputs"
    for replicate in range(2):
        _, folder, _ = write_run(root, study="s", source="gesture", pair=0, replicate=replicate, epochs=4)
        import yaml

        config = yaml.safe_load((folder / CONFIG).read_text())
        config["design"]["class_names"] = ["$\\undefinedcmd{$", "b"]
        (folder / CONFIG).write_text(yaml.safe_dump(config))
    c = collect.collect_runs(root, progress=False)
    assert set(c.runs["pair"]) == {"$\\undefinedcmd{$/b"}
    out = figures.map_figures(c.mean_maps(), folder=tmp_path / "fig")
    assert out and all(data[:4] == b"\x89PNG" for data in out.values())
    table = collect.metrics_for_statistics(c)
    assert figures.metric_figures(table, ["max"]) and figures.trajectory_figures(table)


# --- bad input is refused before anything runs, naming the key ---------------------------------------------

ALL_BAD = [(o, k, None) for o, k in BAD_INPUTS] + BAD_DATA


@pytest.mark.parametrize("overrides,key,hint", ALL_BAD, ids=[" ".join(o) for o, _, _ in ALL_BAD])
def test_a_bad_value_is_refused_before_running_naming_the_key(overrides, key, hint, tmp_path, monkeypatch):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from pipeline.config import ConfigError
    from tests.helpers import run_config

    write_bad_data_files(tmp_path / "files")
    monkeypatch.chdir(tmp_path)  # no data/ folder here: the default data paths do not exist
    overrides = [o.format(files=tmp_path / "files") for o in overrides]
    with pytest.raises(Exception) as err:
        run_config(*overrides, f"paths.root={tmp_path / 'out'}" if "paths.root" not in key else overrides[0])
    # the project's ConfigError, or Hydra's own refusal of a key or group it does not know: never a deep error
    assert isinstance(err.value, (ConfigError, HydraException, OmegaConfBaseException)), repr(err.value)
    assert key in str(err.value)
    assert hint is None or hint in str(err.value), str(err.value)
    assert not (tmp_path / "out").exists()


def test_the_tiny_emotion_corpus_is_accepted_for_a_pair_it_can_split(tmp_path, monkeypatch):
    """The single-sample refusal above is about the class, not the corpus: pair 5 (joy/love) plans."""
    from tests.helpers import run_config

    write_bad_data_files(tmp_path / "files")
    files = tmp_path / "files"
    cfg = run_config(
        "data_source=sentence",
        "dataset=emotion",
        f"dataset.root={files / 'tiny_emotion'}",
        f"dataset.embeddings={files / 'glove.txt'}",
        "pair=5",
        f"paths.root={tmp_path / 'out'}",
    )
    assert list(cfg.design.class_names) == ["joy", "love"]


def test_enough_bad_inputs_are_tried():
    assert len(ALL_BAD) >= 100 and len(BAD_DATA) >= 15


def test_forcing_an_existing_key_is_allowed(tmp_path):
    from tests.helpers import run_config

    assert run_config("++trainer.lr=0.01", f"paths.root={tmp_path}").trainer.lr == 0.01


def test_a_bad_wandb_mode_is_refused_before_running(monkeypatch, tmp_path):
    from tests.helpers import run_config

    monkeypatch.setenv("WANDB_MODE", "bogus")
    with pytest.raises(Exception, match="WANDB_MODE"):
        run_config(f"paths.root={tmp_path}")


@pytest.mark.slow
@pytest.mark.parametrize("multirun", [False, True])
@pytest.mark.parametrize("bad", ["model.hidden_size=0", "dataset=imigue"])
def test_the_command_leaves_no_folder_behind_for_a_bad_value(tmp_path, multirun, bad):
    from tests.helpers import run_cli

    args = ["-m", "seed=0,1"] if multirun else []
    if bad == "dataset=imigue":  # the iMiGUE files are not there
        args.append(f"dataset.root={tmp_path / 'imigue'}")
    result = run_cli(*args, bad, f"paths.root={tmp_path / 'out'}", timeout=120)
    assert result.returncode == 1 and bad in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
