"""W&B is a mirror: each way W&B fails costs at most the mirror, never the run (real wandb 0.31, offline files
read back with `wandb leet inspect`; the network W&B would need does not exist here, so online mode fails for
real: no login, a closed port, a server that accepts and never answers)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.collect import collect_runs, read_run
from pipeline import tracking, wandb_rebuild, wandb_state
from pipeline.run import execute
from pipeline.runfolder import is_done
from pipeline.schema import DONE
from tests.helpers import REPO, run_config, run_plan
from tests.wandb_records import exit_code, history, read_offline, summary, wandb_files

EPOCHS = 3
RUN = ("trainer.epochs=3", "dataset.time_slices=20", "logger.wandb.media_every=2")


@pytest.fixture(autouse=True)
def _fresh_process_memory():
    """Each test starts as a fresh process would: no online failure remembered, and W&B's process-wide
    settings (read from the environment once per process) read again."""
    import wandb

    wandb.teardown()
    wandb_state.forget_online_failure()
    yield
    wandb_state.forget_online_failure()
    wandb.teardown()


def _on_step_hook(monkeypatch, hook):
    """Call ``hook(step)`` after the tracker has logged each step of a run (the run's own code path)."""
    import pipeline.run as run_module

    real_context = run_module.RunContext

    def context(seed, on_step):
        def on_step_then_hook(step, readouts, curves):
            on_step(step, readouts, curves)
            hook(step)

        return real_context(seed, on_step_then_hook)

    monkeypatch.setattr(run_module, "RunContext", context)


def _mirror_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pipeline.tracking" and r.levelno >= logging.WARNING]


def _assert_recorded(run_dir: Path) -> dict:
    """The run is done with its whole record; its summary.json."""
    assert is_done(run_dir)
    _, lc_map = read_run(run_dir)
    assert lc_map.shape == (EPOCHS, 20)
    return json.loads((run_dir / "summary.json").read_text())


# ---------------------------------------------------------------------------
# Offline: the W&B folder lost, the disk full
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_whose_wandb_folder_is_deleted_mid_run_records_and_its_mirror_is_rebuilt(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_MODE", "offline")
    plan = run_plan(f"paths.root={tmp_path}", *RUN)
    run_dir = plan.run_dir
    _on_step_hook(monkeypatch, lambda step: step == 1 and shutil.rmtree(run_dir / "wandb"))
    with caplog.at_level(logging.INFO):
        outcome = execute(plan)
    assert outcome.state == DONE and outcome.computed
    entry = _assert_recorded(run_dir)["wandb"]
    assert entry["state"] == "failed" and entry["mode"] == "offline" and entry["id"] == run_dir.name
    assert entry["error"].startswith("epoch 2: ") and "rebuild" in entry  # the image of epoch 2 had nowhere to go
    (warning,) = _mirror_warnings(caplog)
    assert "lost at epoch 2" in warning and "wandb_sync.sh" in warning

    assert wandb_rebuild.needs_rebuild(run_dir)
    # the sync script rebuilds the lost mirror, then tries to upload it (no server here: it says so)
    elsewhere = tmp_path / "elsewhere"  # the script's working folder: it must write nothing there
    elsewhere.mkdir()
    out = subprocess.run(
        ["bash", str(REPO / "slurm" / "wandb_sync.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=elsewhere,
        env={
            **os.environ,
            "HOME": str(tmp_path / "home"),
            "WANDB_BASE_URL": _closed_port(),
            "WANDB_API_KEY": "x" * 40,
            "LCM_WANDB_TIMEOUT": "20",
        },
    )
    assert "wandb_rebuild: rebuilt 1, failed 0" in out.stdout, out.stdout + out.stderr
    assert out.returncode == 1 and "found 1, synced 0, already synced 0, failed 1" in out.stdout, out.stdout
    assert not list(elsewhere.iterdir()) and not (tmp_path / "home" / ".cache" / "wandb").exists()
    assert not wandb_rebuild.needs_rebuild(run_dir)
    assert json.loads((run_dir / "wandb" / wandb_rebuild.REBUILT).read_text())["wandb_id"] == run_dir.name
    records = read_offline(wandb_files(run_dir)[run_dir.name])
    rows = history(records)
    table = collect_runs(tmp_path, study="headline", use_cache=False, progress=False).metrics.sort_values("epoch")
    assert [row["epoch"] for row in rows] == [row["_step"] for row in rows] == [1, 2, 3]
    for row, (_, expected) in zip(rows, table.iterrows()):
        assert all(row[f"map/{m}"] == expected[m] for m in ("start", "end_minus_start", "max", "tmax"))
    readouts = pd.read_parquet(run_dir / "readouts.parquet")
    assert rows[0]["val/loss"] == readouts.query("epoch == 1 and split == 'val' and metric == 'loss'").value.item()
    assert [row["epoch"] for row in rows if "map/image._type" in row] == [2, 3]
    assert summary(records)["run/complete"] == 1 and exit_code(records) == 0
    assert is_done(run_dir)  # the record itself was left as it was


def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir(parents=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if out.returncode != 0:
        pytest.skip(f"a full disk needs a small tmpfs mount, which this machine refuses: {out.stderr.decode()[:120]}")


@pytest.mark.slow
@pytest.mark.parametrize("full_from", [0, 1], ids=["before the start", "after epoch 1"])
def test_a_full_disk_under_the_wandb_folder_costs_only_the_mirror(full_from, tmp_path, monkeypatch, caplog, capfd):
    """The run's W&B folder on its own 4 MB file system, filled to the last byte before the run or after
    epoch 1: the run records, one warning, and no logging tracebacks from W&B's own log on the console."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    plan = run_plan(f"paths.root={tmp_path}", *RUN)
    run_dir = plan.run_dir
    _mount_tmpfs(run_dir / "wandb", "4m")
    try:

        def fill(step):
            if step == full_from:
                subprocess.run(
                    ["dd", "if=/dev/zero", f"of={run_dir / 'wandb' / 'filler'}", "bs=64k"], capture_output=True
                )
                assert shutil.disk_usage(run_dir / "wandb").free == 0

        fill(0)
        _on_step_hook(monkeypatch, fill)
        with caplog.at_level(logging.INFO):
            outcome = execute(plan)
        assert outcome.state == DONE and outcome.computed
        entry = _assert_recorded(run_dir)["wandb"]
        assert entry["state"] == "failed" and "No space left on device" in entry["error"], entry
        assert entry["error"].startswith("start: " if full_from == 0 else "epoch 2: "), entry
        assert len(_mirror_warnings(caplog)) == 1
        assert "Logging error" not in capfd.readouterr().err
    finally:
        subprocess.run(["umount", "-l", str(run_dir / "wandb")], capture_output=True)


# ---------------------------------------------------------------------------
# Online with no W&B server to be had
# ---------------------------------------------------------------------------


class SilentServer:
    """A local socket that accepts connections and never answers (a server that hangs)."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.connections: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.connections.append(self.socket.accept())
            except OSError:
                return

    def close(self):
        self.socket.close()


class RefusingServer:
    """A local HTTP server that refuses every request as W&B's server refuses a wrong API key (401)."""

    def __init__(self):
        import http.server

        class Refuse(http.server.BaseHTTPRequestHandler):
            def _refuse(self):
                body = b'{"data":null,"errors":[{"message":"user is not logged in"}]}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _refuse

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


def _online(monkeypatch, tmp_path, base_url: str | None, api_key: str | None) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc: no stored login
    for name, value in (("WANDB_BASE_URL", base_url), ("WANDB_API_KEY", api_key)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def _synthetic_epochs(tracker, epochs: int = 2) -> None:
    rng = np.random.default_rng(1)
    for epoch in range(1, epochs + 1):
        curve = pd.DataFrame(
            {
                "probe": "knn",
                "split": "train",
                "epoch": epoch,
                "time_slice": np.arange(1, 13),
                "value": rng.uniform(0.5, 1, 12),
            }
        )
        tracker.log_epoch(epoch, {"train/loss": 1.0 / epoch}, curve)


def test_online_without_a_login_mirrors_offline_at_once(tmp_path, monkeypatch, caplog):
    _online(monkeypatch, tmp_path, _closed_port(), None)
    cfg = run_config(f"paths.root={tmp_path}", "trainer.epochs=2")
    t0 = time.perf_counter()
    with caplog.at_level(logging.INFO):
        tracker = tracking.Tracker(cfg, "gesture-p00-r000-nologin", tmp_path)
    assert time.perf_counter() - t0 < 30  # no server is asked: W&B refuses before any request
    _synthetic_epochs(tracker)
    entry = tracker.finish(None, {"test_accuracy": 0.5}, ok=True)
    assert entry["requested_mode"] == "online" and entry["mode"] == "offline" and entry["state"] == "complete"
    assert "UsageError" in entry["note"] and "wandb_sync.sh" in entry["note"]
    (warning,) = _mirror_warnings(caplog)
    assert "online start failed" in warning
    records = read_offline(wandb_files(tmp_path)["gesture-p00-r000-nologin"])
    assert [row["epoch"] for row in history(records)] == [1, 2] and summary(records)["run/complete"] == 1


@pytest.mark.slow
def test_online_with_a_refused_login_records_with_one_warning_and_an_offline_mirror(tmp_path):
    """`python -m pipeline` against a server that refuses the API key: the run records, mirrored offline at
    once, with one warning and nothing more from W&B on the console (not even its telemetry at exit)."""
    server = RefusingServer()
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}  # its own W&B service, as a user's
    env.update(WANDB_MODE="online", WANDB_BASE_URL=server.url, WANDB_API_KEY="x" * 40, HOME=str(tmp_path / "home"))
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pipeline", f"paths.root={tmp_path}", *RUN],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=600,
        )
    finally:
        server.close()
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "headline" / "runs").iterdir()
    entry = _assert_recorded(run_dir)["wandb"]
    assert (entry["requested_mode"], entry["mode"], entry["state"]) == ("online", "offline", "complete")
    assert "401" in entry["note"] and "wandb_sync.sh" in entry["note"]
    console = out.stdout + out.stderr
    assert console.count("online start failed") == 1, console[-3000:]
    assert "Failed to export" not in console and "Traceback" not in console, console[-3000:]
    assert summary(read_offline(wandb_files(run_dir)[run_dir.name]))["run/complete"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("server", ["closed port", "silent server"])
def test_online_with_no_answering_server_waits_a_bounded_time_once_per_process(server, tmp_path, monkeypatch, caplog):
    """The first run of a process waits logger.wandb.init_timeout at most, then mirrors offline; the next run
    of the process does not wait again."""
    silent = SilentServer() if server == "silent server" else None
    _online(monkeypatch, tmp_path, silent.url if silent else _closed_port(), "x" * 40)
    cfg = run_config(f"paths.root={tmp_path}", "trainer.epochs=2", "logger.wandb.init_timeout=3")
    try:
        waits, entries = [], []
        for rid in ("first-run", "second-run"):
            t0 = time.perf_counter()
            with caplog.at_level(logging.INFO):
                tracker = tracking.Tracker(cfg, rid, tmp_path / rid)
            waits.append(time.perf_counter() - t0)
            _synthetic_epochs(tracker)
            entries.append(tracker.finish(None, {}, ok=True))
    finally:
        if silent:
            silent.close()
    assert 2.5 < waits[0] < 3 + 20, waits  # init_timeout, plus the offline start (slow on a loaded machine)
    assert waits[1] < 3, waits
    assert [e["mode"] for e in entries] == ["offline", "offline"] and [e["state"] for e in entries] == ["complete"] * 2
    assert "CommError" in entries[0]["note"] and "earlier in this process" in entries[1]["note"]
    assert len(_mirror_warnings(caplog)) == 2  # one per run
    for rid in ("first-run", "second-run"):
        assert summary(read_offline(wandb_files(tmp_path / rid)[rid]))["run/complete"] == 1


@pytest.mark.slow
def test_an_online_run_without_a_server_records_and_the_sync_script_finds_its_mirror(tmp_path, monkeypatch):
    _online(monkeypatch, tmp_path, _closed_port(), "x" * 40)
    outcome = execute(run_plan(f"paths.root={tmp_path}", *RUN, "logger.wandb.init_timeout=3"))
    assert outcome.state == DONE and outcome.computed
    entry = _assert_recorded(outcome.run_dir)["wandb"]
    assert (entry["requested_mode"], entry["mode"], entry["state"]) == ("online", "offline", "complete")
    (offline,) = outcome.run_dir.glob("wandb/offline-run-*")
    out = subprocess.run(
        ["bash", str(REPO / "slurm" / "wandb_sync.sh"), "--dry-run", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert out.returncode == 0, out.stderr
    assert "0 run(s) to rebuild" in out.stdout and "1 to sync" in out.stdout and str(offline) in out.stdout


def test_which_runs_the_rebuild_takes(tmp_path, capsys):
    """Done runs whose mirror failed and was not rebuilt yet; with --all, done runs that had W&B off too;
    never a complete mirror, a rebuilt one, or a run that is not done."""
    from tests.analysis_fixtures import write_run

    folders = {}
    for replicate, kind in enumerate(("off", "complete", "failed", "rebuilt", "failed, running")):
        state = "running" if kind == "failed, running" else "done"
        _, folder, _ = write_run(tmp_path, study="s", source="gesture", pair=0, replicate=replicate, state=state)
        if kind != "off":
            summary = json.loads((folder / "summary.json").read_text())
            summary["wandb"] = {"state": "complete" if kind == "complete" else "failed", "id": folder.name}
            (folder / "summary.json").write_text(json.dumps(summary))
        if kind == "rebuilt":
            (folder / "wandb").mkdir()
            (folder / "wandb" / wandb_state.REBUILT).write_text(json.dumps({"wandb_id": folder.name}))
        folders[kind] = folder
    assert [k for k, f in folders.items() if wandb_rebuild.needs_rebuild(f)] == ["failed"]
    assert [k for k, f in folders.items() if wandb_rebuild.needs_rebuild(f, everything=True)] == ["off", "failed"]
    assert wandb_rebuild.run_folders(tmp_path) == sorted(folders.values())
    assert wandb_state.mirrored_as(folders["rebuilt"]) == folders["rebuilt"].name
    assert wandb_state.mirrored_as(folders["failed"]) is None and wandb_state.mirrored_as(folders["off"]) is None
    assert wandb_rebuild.main(["--dry-run", "--all", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 run(s) to rebuild" in out and str(folders["off"]) in out and str(folders["failed"]) in out


# ---------------------------------------------------------------------------
# The analysis' mirror (python -m analysis --wandb): written after the analysis, never costing it
# ---------------------------------------------------------------------------


def _small_analysis(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """A small study's metrics table and an analysis folder holding a report and one figure."""
    from PIL import Image

    from tests.analysis_fixtures import make_study

    make_study(tmp_path, study="jd", epochs=3, pairs=(0,), replicates=2, shuffled_replicates=1, broken=False)
    table = collect_runs(tmp_path, study="jd", use_cache=False, progress=False).metrics
    out = tmp_path / "analysis"
    (out / "figures").mkdir(parents=True)
    Image.new("RGB", (40, 30), "white").save(out / "figures" / "average_maps.png")
    (out / "report.html").write_text("<html></html>")
    return out, table


def _analysis_warnings(caplog) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "analysis.wandb_export" and r.levelno >= logging.WARNING
    ]


@pytest.mark.slow
def test_a_full_disk_under_the_analysis_wandb_folder_costs_only_the_mirror(tmp_path):
    """`python -m analysis --wandb` with its W&B folder on a full 4 MB file system: the analysis is written,
    exits 0 and says the mirror failed, with one warning."""
    from tests.analysis_fixtures import make_study

    make_study(tmp_path, study="jd", epochs=3, pairs=(0,), replicates=2, shuffled_replicates=1, broken=False)
    out = tmp_path / "analysis"
    _mount_tmpfs(out / "wandb", "4m")
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={out / 'wandb' / 'filler'}", "bs=64k"], capture_output=True)
        assert shutil.disk_usage(out / "wandb").free == 0
        result = subprocess.run(
            [sys.executable, "-m", "analysis", "--root", str(tmp_path), "--study", "jd", "--core-only", "--wandb"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=600,
            env={
                **{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"},  # its own W&B service
                "WANDB_MODE": "offline",
                "MPLBACKEND": "Agg",
                "HOME": str(tmp_path / "home"),
            },
        )
    finally:
        subprocess.run(["umount", "-l", str(out / "wandb")], capture_output=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "report.html").is_file() and (out / "metrics.parquet").is_file()
    assert "W&B: the mirror failed (" in result.stderr and f"the analysis in {out} is whole" in result.stderr
    assert result.stderr.count("W&B mirror of the analysis lost") == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_an_analysis_whose_wandb_folder_is_deleted_while_it_logs_reports_the_mirror_lost(tmp_path, monkeypatch, caplog):
    """W&B writes through the file handle it holds and does not notice; the export looks for its file."""
    from analysis import wandb_export

    monkeypatch.setenv("WANDB_MODE", "offline")
    out, table = _small_analysis(tmp_path)
    log_run = wandb_export._log_run

    def delete_then_log(*args, **kwargs):
        shutil.rmtree(out / "wandb")
        return log_run(*args, **kwargs)

    monkeypatch.setattr(wandb_export, "_log_run", delete_then_log)
    with caplog.at_level(logging.INFO):
        said = wandb_export.log_analysis(out, table, "jd", root=tmp_path)
    assert said.startswith("the mirror failed (FileNotFoundError: the offline W&B file "), said
    assert len(_analysis_warnings(caplog)) == 1


@pytest.mark.slow
@pytest.mark.parametrize("server", ["closed port", "silent server"])
def test_the_analysis_online_without_an_answering_server_mirrors_offline_after_a_bounded_wait(
    server, tmp_path, monkeypatch, caplog
):
    from analysis import wandb_export

    silent = SilentServer() if server == "silent server" else None
    _online(monkeypatch, tmp_path, silent.url if silent else _closed_port(), "x" * 40)
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "3")
    out, table = _small_analysis(tmp_path)
    try:
        t0 = time.perf_counter()
        with caplog.at_level(logging.INFO):
            said = wandb_export.log_analysis(out, table, "jd", root=tmp_path)
        seconds = time.perf_counter() - t0
    finally:
        if silent:
            silent.close()
    assert said.endswith(f"(offline in {out / 'wandb'}, upload with slurm/wandb_sync.sh)"), said
    assert seconds < 3 + 30, seconds  # the start's 3 s, then the offline mirror (slow on a loaded machine)
    (warning,) = _analysis_warnings(caplog)
    assert "online start failed" in warning and "CommError" in warning
    (wandb_file,) = out.glob("wandb/offline-run-*/run-*.wandb")
    logged = history(read_offline(wandb_file))[0]
    assert logged["figures/average_maps._type"] == "image-file" and "runs._type" in logged
    assert summary(read_offline(wandb_file))["runs/linked"] == 0  # the runs had W&B off
