"""The version: every summary.json carries it, CHANGELOG.md describes it, and it changes whenever the run ids
or the record schema change (this test knows both for the current version and fails until it is bumped)."""

from __future__ import annotations

import hashlib
import json
import re

from pipeline import schema
from pipeline.run import execute
from tests.helpers import REPO, run_plan

# Run ids of a few plans of every runner, as this version names them.
RUN_IDS = {
    (): "gesture-p00-r000-87d1ae4793",
    ("data_source=sentence", "pair=3", "seed=2"): "sentence-p03-r002-3917cd3bcd",
    ("probe.knn.mode=leave_one_out", "seed=3"): "gesture-p03-r000-7d3588cdff",
    ("labels=shuffled", "seed=40"): "sentence-p00-r001-30c8e16196",
    ("study=critical_pathways", "seed=0"): "critical_pathways-depth1-deficit_onset0-deficit_length20-r000-8cdb7fe936",
    (
        "study=critical_matrix_completion",
        "seed=5",
    ): "critical_matrix_completion-depth1-deficit_steps1000-r000-5a78261448",
    ("study=multitask", "seed=1"): "multitask-initlarge-r000-28ee1d9244",
    ("study=dense_sample", "seed=0"): "dense_sample-train_per_class500-r000-64d3e3a90f",
}
# SHA-256 (first 12 hex digits) of the record schema's names below, as this version writes them.
SCHEMA_DIGEST = "79156753e4e6"
BUMP = (
    "bump pipeline/schema.py VERSION (its minor number), say what changed in CHANGELOG.md, then update "
    "RUN_IDS / SCHEMA_DIGEST here"
)


def schema_names() -> dict:
    return {
        "layout": [schema.RUNS, schema.PLANS],
        "files": [schema.CONFIG, schema.STATUS, schema.CURVES, schema.READOUTS, schema.SUMMARY, schema.LOG],
        "bookkeeping": [schema.CLAIM, schema.CLAIM_LOCK, schema.STATUS_RESERVE],
        "tables": sorted(schema.RECORD_TABLES),
        "curve_columns": list(schema.CURVE_COLUMNS),
        "readout_columns": list(schema.READOUT_COLUMNS),
        "probe_rows": [schema.KNN, schema.KNN_TIE_SHARE, schema.TRAIN],
        "knn": [list(schema.KNN_TIE_RULES), list(schema.KNN_MODES)],
        "states": list(schema.RUN_STATES),
    }


def test_run_ids_and_the_schema_are_this_versions(tmp_path):
    ids = {overrides: run_plan(*overrides, f"paths.root={tmp_path}").run_id for overrides in RUN_IDS}
    assert ids == RUN_IDS, f"run ids changed: {BUMP}"
    digest = hashlib.sha256(json.dumps(schema_names(), sort_keys=True).encode()).hexdigest()[:12]
    assert digest == SCHEMA_DIGEST, f"the record schema changed ({digest}): {BUMP}"


def test_the_changelog_describes_this_version():
    text = (REPO / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## (\S+)", text, re.MULTILINE)
    assert headings and headings[0] == schema.VERSION, headings[:3]
    assert len(headings) == len(set(headings))


def test_summary_json_carries_the_version(tmp_path):
    outcome = execute(run_plan("study=critical_pathways", "seed=0", "trainer.steps=60", f"paths.root={tmp_path}"))
    summary = json.loads((outcome.run_dir / schema.SUMMARY).read_text())
    assert summary["version"] == schema.VERSION
