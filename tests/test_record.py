"""The run folder: atomic writes, status, and claims."""

import json
import os

import pandas as pd
import pytest

from pipeline.record import RunRecord
from pipeline.runfolder import atomic_write_json, claim_state, is_done, read_status, try_claim
from tests.helpers import dead_pid


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_status_lifecycle_and_failure_traceback(tmp_path):
    record = RunRecord(tmp_path / "r", "r")
    record.mark_running()
    assert read_status(tmp_path / "r")["state"] == "running" and not is_done(tmp_path / "r")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError as exc:
        record.mark_failed(exc)
    status = read_status(tmp_path / "r")
    assert status["state"] == "failed" and status["error"] == "ValueError: boom"
    assert "Traceback" in status["traceback"] and "second line" in status["traceback"]
    record.write_results(pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [2]}), {"c": 3})
    # every finished run has its config: a done status without it would be a record nobody can use
    with pytest.raises(RuntimeError, match="config.yaml"):
        record.mark_done()
    assert not is_done(tmp_path / "r")
    record.write_config("x: 1\n")
    record.mark_done()
    assert is_done(tmp_path / "r")


def test_a_live_claim_excludes_a_second_claimant(tmp_path):
    claim = try_claim(tmp_path / "r")
    assert claim is not None and claim_state(tmp_path / "r")["pid"] == os.getpid()
    assert try_claim(tmp_path / "r") is None
    claim.release()
    assert claim_state(tmp_path / "r") is None
    assert try_claim(tmp_path / "r") is not None


def test_a_claim_of_a_dead_process_is_taken_over(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    import socket

    (run_dir / "claim.json").write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid()}))
    assert claim_state(run_dir) is None
    claim = try_claim(run_dir)
    assert claim is not None and json.loads((run_dir / "claim.json").read_text())["pid"] == os.getpid()
