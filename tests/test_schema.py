"""The record schema (pipeline/schema.py): the layout every reader walks, one vocabulary for a run's state,
the tables a record may hold, and the studies that must never load torch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from pipeline import schema
from pipeline.record import RunRecord
from pipeline.runfolder import run_state, try_claim
from pipeline.status import collect
from tests.helpers import REPO, dead_pid


def test_the_layout_lists_studies_and_runs_never_dot_folders(tmp_path):
    for name in ("b-run", "a-run", ".cache"):
        (schema.run_folder(tmp_path, "headline", name)).mkdir(parents=True)
    (schema.runs_folder(tmp_path / "headline") / "a-file").write_text("not a run")
    schema.plans_folder(tmp_path / "planned-only").mkdir(parents=True)
    (tmp_path / ".hydra" / "runs").mkdir(parents=True)
    assert [p.name for p in schema.run_folders(tmp_path / "headline")] == ["a-run", "b-run"]
    assert schema.run_folders(tmp_path / "nowhere") == []
    assert [p.name for p in schema.study_folders(tmp_path)] == ["headline"]
    assert [p.name for p in schema.study_folders(tmp_path, with_plans=True)] == ["headline", "planned-only"]
    run = schema.run_folder(tmp_path, "headline", "a-run")
    assert run == tmp_path / "headline" / "runs" / "a-run" and schema.study_of(run) == tmp_path / "headline"


def test_empty_curves_has_the_curve_columns_typed():
    frame = schema.empty_curves()
    assert tuple(frame.columns) == schema.CURVE_COLUMNS and len(frame) == 0
    assert str(frame["epoch"].dtype) == "int32" and str(frame["value"].dtype) == "float64"


def _status(run_dir, state, **extra):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / schema.STATUS).write_text(json.dumps({"state": state, **extra}))


def _done(run_dir, cell="gesture/pair 0"):
    record = RunRecord(run_dir, run_dir.name, cell=cell)
    record.write_config(f"design:\n  cell: {cell}\n")
    record.mark_running()
    record.write_results(schema.empty_curves(), pd.DataFrame({"epoch": [1]}), {"run_id": run_dir.name})
    record.mark_done()
    return run_dir


def test_one_judgement_of_a_run_state_in_the_schema_words(tmp_path):
    assert run_state(tmp_path / "never") == (schema.ABSENT, None)
    assert run_state(_done(tmp_path / "done")) == (schema.DONE, None)
    damaged = _done(tmp_path / "damaged")
    (damaged / schema.SUMMARY).unlink()
    assert run_state(damaged) == (schema.DAMAGED, "summary.json missing")
    _status(tmp_path / "failed", schema.FAILED, error="ValueError: bad")
    assert run_state(tmp_path / "failed") == (schema.FAILED, "ValueError: bad")
    _status(tmp_path / "stopped", schema.INTERRUPTED, error="interrupted by SIGTERM")
    assert run_state(tmp_path / "stopped") == (schema.INTERRUPTED, "interrupted by SIGTERM")
    # status.json says running, but its process is gone (no claim): interrupted
    _status(tmp_path / "died", schema.RUNNING)
    state, why = run_state(tmp_path / "died")
    assert state == schema.INTERRUPTED and "died" in why
    # a live claim (this process) makes any run that is not done a running one
    for name in ("never", "failed", "died", "damaged"):
        claim = try_claim(tmp_path / name)
        assert run_state(tmp_path / name) == (schema.RUNNING, None)
        claim.release()
    # a claim of a dead process does not
    (tmp_path / "failed" / schema.CLAIM).write_text(
        json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "token": "x"})
    )
    assert run_state(tmp_path / "failed")[0] == schema.FAILED
    assert {run_state(tmp_path / n)[0] for n in os.listdir(tmp_path)} <= set(schema.RUN_STATES)


def test_status_takes_the_cell_from_the_record_never_from_the_run_id(tmp_path):
    study = schema.study_folder(tmp_path, "headline")
    # a folder named like a gesture pair-3 run whose record says otherwise
    _done(schema.runs_folder(study) / "gesture-p03-r000-aaaaaaaaaa", cell="sentence/pair 1")
    # status.json unreadable: the cell comes from config.yaml
    run = _done(schema.runs_folder(study) / "gesture-p04-r000-bbbbbbbbbb", cell="sentence/pair 2")
    (run / schema.STATUS).write_text('{"state": "do')
    # nothing recorded says the cell
    (schema.runs_folder(study) / "gesture-p05-r000-cccccccccc").mkdir()
    report = collect(tmp_path)["headline"]
    assert report["cells"] == {"?": {"missing": 1}, "sentence/pair 1": {"done": 1}, "sentence/pair 2": {"missing": 1}}


def test_a_record_refuses_a_table_the_schema_does_not_name(tmp_path):
    record = RunRecord(tmp_path / "r", "r")
    with pytest.raises(ValueError, match="not in the record schema"):
        record.write_results(schema.empty_curves(), pd.DataFrame(), {}, {"my_table": pd.DataFrame()})
    assert not (tmp_path / "r" / schema.table_file("my_table")).exists()


NUMPY_ONLY = (
    "pipeline.schema",
    "pipeline.runfolder",
    "pipeline.record",
    "pipeline.status",
    "pipeline.studies.critical",
    "pipeline.studies.multitask",
)


def test_the_numpy_only_studies_and_the_record_readers_never_import_torch():
    """With any torch import made to fail, the companion studies that compute with numpy alone (critical
    periods, multitask) import, and their runners are registered."""
    code = textwrap.dedent(f"""
        import importlib, sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError(f"imported {{name}}")
                return None

        sys.meta_path.insert(0, NoTorch())
        for name in {NUMPY_ONLY!r}:
            importlib.import_module(name)
        from pipeline.studies import RUNNERS
        assert {{"critical_pathways", "critical_matrix_completion", "multitask"}} <= set(RUNNERS), RUNNERS
        assert "torch" not in sys.modules
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stdout + result.stderr
