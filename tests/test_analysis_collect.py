"""Reading run folders: done runs only, broken ones skipped and listed, the cache."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pandas as pd
import pytest

from analysis import collect
from pipeline.curve_metrics import map_metrics
from tests.analysis_fixtures import make_study, write_run, write_status


@pytest.fixture()
def study(tmp_path):
    return make_study(tmp_path / "outputs", study="s1", pairs=(0, 1), replicates=2, shuffled_replicates=1, epochs=5)


def test_reads_done_runs_and_lists_the_rest(study, tmp_path):
    c = collect.collect_runs(study["root"], cache_dir=None, progress=False)
    assert set(c.runs["run_id"]) == set(study["runs"])
    skipped = {s.run_id: s.reason for s in c.skipped}
    assert set(skipped) == set(study["broken"])
    expected = {
        "truncated_curves": "damaged record: curves.parquet truncated",
        "running": "status is 'running'",
        "failed": "status is 'failed'",
        "no_status": "no status.json",
        "incomplete_map": "missing",
    }
    for run_id, how in study["broken"].items():
        assert expected[how] in skipped[run_id], (how, skipped[run_id])
    frame = c.skipped_frame()
    assert list(frame.columns) == ["study", "run_id", "path", "reason"]


def test_metrics_equal_a_direct_computation(study):
    c = collect.collect_runs(study["root"], progress=False)
    m = c.metrics
    for column in (
        "source",
        "labels",
        "pair",
        "replicate",
        "run_id",
        "epoch",
        "start",
        "end",
        "end_minus_start",
        "max",
        "tmax",
        "pair_index",
        "study",
    ):
        assert column in m.columns
    for run_id, info in study["runs"].items():
        rows = m[m["run_id"] == run_id].sort_values("epoch")
        want = map_metrics(info["map"][None])
        assert rows["epoch"].tolist() == list(range(1, info["map"].shape[0] + 1))
        for name in ("start", "end", "max", "tmax"):
            assert np.array_equal(rows[name].to_numpy(), getattr(want, name)[0]), (run_id, name)
        assert rows["source"].iloc[0] == info["source"] and rows["labels"].iloc[0] == info["labels"]
        assert rows["replicate"].iloc[0] == info["replicate"] and rows["pair_index"].iloc[0] == info["pair"]
    # class pairs are named by their classes, as in the authors' tables
    assert set(m.loc[m["source"] == "gesture", "pair"]) == {"no gesture/body", "no gesture/head"}
    assert set(m.loc[m["source"] == "sentence", "pair"]) == {"sadness/joy", "sadness/love"}
    unsmoothed = collect.collect_runs(study["root"], smooth=False, progress=False).metrics
    assert not np.array_equal(unsmoothed["max"].to_numpy(), m["max"].to_numpy())


def test_rerun_reads_no_curves(study, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = collect.collect_runs(study["root"], cache_dir=cache, progress=False)
    assert first.n_read == len(study["runs"]) and first.n_cached == 0
    assert (cache / "meta.json").is_file()

    def no_reading(run_dir):
        raise AssertionError(f"curves read again: {run_dir}")

    monkeypatch.setattr(collect, "_learning_curve_map", no_reading)
    again = collect.collect_runs(study["root"], cache_dir=cache, progress=False)
    assert again.n_read == 0 and again.n_cached == len(study["runs"])
    pd.testing.assert_frame_equal(again.metrics, first.metrics)
    assert {s.run_id for s in again.skipped} == set(study["broken"])
    # the smoothing option changes the metrics but needs no curves either
    raw = collect.collect_runs(study["root"], cache_dir=cache, smooth=False, progress=False)
    assert raw.n_read == 0
    assert not raw.metrics["max"].equals(first.metrics["max"])


def test_changed_added_and_removed_runs_are_noticed(study, tmp_path):
    cache = tmp_path / "cache"
    collect.collect_runs(study["root"], cache_dir=cache, progress=False)
    run_id = sorted(study["runs"])[0]
    folder = study["runs"][run_id]["folder"]
    # a rerun of that run: a new map and a new status.json
    new_map = np.full_like(study["runs"][run_id]["map"], 0.75)
    write_run(
        study["root"],
        study="s1",
        source=study["runs"][run_id]["source"],
        pair=study["runs"][run_id]["pair"],
        replicate=study["runs"][run_id]["replicate"],
        labels=study["runs"][run_id]["labels"],
        lc_map=new_map,
    )
    st = folder / "status.json"
    os.utime(st, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    c = collect.collect_runs(study["root"], cache_dir=cache, progress=False)
    assert c.n_read == 1
    assert (c.metrics.loc[c.metrics["run_id"] == run_id, "max"] == 0.75).all()
    # a run that is now running again is skipped, not taken from the cache
    write_status(folder, "running")
    c = collect.collect_runs(study["root"], cache_dir=cache, progress=False)
    assert run_id not in set(c.runs["run_id"]) and run_id in {s.run_id for s in c.skipped}
    # a new run
    write_run(study["root"], study="s1", source="gesture", pair=1, replicate=77, epochs=5)  # the study's epochs
    c2 = collect.collect_runs(study["root"], cache_dir=cache, progress=False)
    assert c2.n_read == 1 and len(c2.runs) == len(c.runs) + 1


def test_a_damaged_cache_is_ignored(study, tmp_path):
    cache = tmp_path / "cache"
    collect.collect_runs(study["root"], cache_dir=cache, progress=False)
    (cache / "meta.json").write_text("{not json")
    c = collect.collect_runs(study["root"], cache_dir=cache, progress=False)
    assert c.n_read == len(study["runs"])
    meta = json.loads((cache / "meta.json").read_text())
    for shape in meta["shapes"]:  # maps are stored without pickles
        assert (cache / f"maps-{meta['token']}-{shape}.npy").is_file()
    np.load(cache / f"maps-{meta['token']}-{meta['shapes'][0]}.npy", allow_pickle=False)
    assert not list(cache.glob("*.tmp"))


def test_one_study_and_clear_errors(study, tmp_path):
    write_run(study["root"], study="other", source="gesture", pair=0, replicate=1, epochs=5)
    both = collect.collect_runs(study["root"], progress=False)
    assert set(both.runs["study"]) == {"s1", "other"} and both.notes
    one = collect.collect_runs(study["root"], study="other", progress=False)
    assert set(one.runs["study"]) == {"other"}
    with pytest.raises(collect.NoRunsFound, match="does not exist.*pipeline"):
        collect.collect_runs(tmp_path / "nowhere", progress=False)
    with pytest.raises(collect.NoRunsFound, match="missing-study"):
        collect.collect_runs(study["root"], study="missing-study", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(collect.NoRunsFound, match="no learning-curve-map run folders"):
        collect.collect_runs(tmp_path / "empty", progress=False)


def test_config_without_design_block(tmp_path):
    run_id, folder, _ = write_run(tmp_path, study="s", source="gesture", pair=0, replicate=1)
    (folder / "config.yaml").write_text("study:\n  name: s\n")
    with pytest.raises(collect.RunReadError, match="design block"):
        collect.read_run(folder)
    c = collect.collect_runs(tmp_path, progress=False)
    assert len(c.runs) == 0 and "design block" in c.skipped[0].reason


def test_companion_studies_are_left_out(study):
    """Runs of studies without a data source x class pair design (critical periods, ...) are not read."""
    folder = study["root"] / "critical_pathways" / "runs" / "critical_pathways-abc"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        "study:\n  name: critical_pathways\n  runner: critical_pathways\ndesign:\n  replicate: 0\n  labels: real\n"
    )
    (folder / "status.json").write_text('{"state": "done"}')
    c = collect.collect_runs(study["root"], progress=False)
    assert set(c.runs["study"]) == {"s1"}
    assert any("critical_pathways" in n and "runner critical_pathways" in n for n in c.notes)
    assert "critical_pathways-abc" not in {s.run_id for s in c.skipped}
    with pytest.raises(collect.NoRunsFound, match="no learning-curve maps"):
        collect.collect_runs(study["root"], study="critical_pathways", progress=False)
