"""The analysis side of the KNN tie rule: the rule and mode per run, no pooling, the tie share and its report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from analysis import cli, collect, ties
from tests.analysis_fixtures import make_study, write_run


def _set_rule(folder, ties_rule: str, mode: str = "resubstitution", tie_map: np.ndarray | None = None) -> None:
    """Record a run as the current probe does: the rule in config.yaml and tie-share rows in curves.parquet."""
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["probe"]["knn"].update({"ties": ties_rule, "mode": mode})
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if tie_map is not None:
        table = pq.read_table(folder / "curves.parquet")
        epochs, slices = tie_map.shape
        extra = pa.table(
            {
                "probe": pa.array(["knn_tie_share"] * tie_map.size, pa.string()),
                "split": pa.array(["train"] * tie_map.size, pa.string()),
                "epoch": pa.array(np.repeat(np.arange(1, epochs + 1), slices).astype(np.int32), pa.int32()),
                "time_slice": pa.array(np.tile(np.arange(1, slices + 1), epochs).astype(np.int32), pa.int32()),
                "value": pa.array(tie_map.reshape(-1), pa.float64()),
            }
        )
        pq.write_table(pa.concat_tables([table, extra]), folder / "curves.parquet")


@pytest.fixture()
def study(tmp_path):
    s = make_study(
        tmp_path / "outputs", study="s1", pairs=(0, 1), replicates=2, shuffled_replicates=0, epochs=4, broken=False
    )
    rng = np.random.default_rng(0)
    for info in s["runs"].values():
        info["ties"] = np.round(rng.random(info["map"].shape), 3)
        _set_rule(info["folder"], "expected_random_order", tie_map=info["ties"])
    return s


def test_runs_without_the_keys_are_labelled_with_the_old_rule(tmp_path):
    s = make_study(tmp_path / "outputs", study="s1", pairs=(0,), replicates=2, shuffled_replicates=0, broken=False)
    c = collect.collect_runs(s["root"], progress=False)
    assert set(c.runs["knn_ties"]) == {"self_first_by_index"} and set(c.runs["knn_mode"]) == {"resubstitution"}
    assert not c.runs["knn_rule_recorded"].any() and not c.runs["has_tie_share"].any()
    assert any("computed under self_first_by_index / resubstitution" in note for note in c.notes)
    assert np.isnan(next(iter(c.tie_maps.values()))).all()


def test_tie_share_maps_are_read_and_cached(study, tmp_path):
    cache = tmp_path / "cache"
    for attempt in ("fresh", "cached"):
        c = collect.collect_runs(study["root"], cache_dir=cache, progress=False)
        assert (c.n_read, c.n_cached) == ((len(study["runs"]), 0) if attempt == "fresh" else (0, len(study["runs"])))
        assert set(c.runs["knn_ties"]) == {"expected_random_order"} and c.runs["has_tie_share"].all()
        for row in c.runs.itertuples():
            np.testing.assert_array_equal(c.tie_maps[row.shape][row.map_row], study["runs"][row.run_id]["ties"])
            np.testing.assert_array_equal(c.maps[row.shape][row.map_row], study["runs"][row.run_id]["map"])


def test_a_cache_of_the_earlier_layout_is_not_used(study, tmp_path):
    cache = tmp_path / "cache"
    collect.collect_runs(study["root"], cache_dir=cache, progress=False)
    meta = json.loads((cache / "meta.json").read_text())
    (cache / "meta.json").write_text(json.dumps({**meta, "version": 1}))
    again = collect.collect_runs(study["root"], cache_dir=cache, progress=False)
    assert again.n_read == len(study["runs"]) and again.n_cached == 0


def test_different_rules_are_never_pooled(study, tmp_path):
    old = list(study["runs"])[:3]
    for run_id in old:
        _set_rule(study["runs"][run_id]["folder"], "self_first_by_index")
    with pytest.raises(collect.MixedConditions) as err:
        collect.collect_runs(study["root"], progress=False)
    message = str(err.value)
    n_new = len(study["runs"]) - 3
    assert "3 run(s) under probe.knn.ties=self_first_by_index" in message
    assert f"{n_new} run(s) under probe.knn.ties=expected_random_order" in message
    assert "--knn-ties RULE" in message
    for rule, count in (("self_first_by_index", 3), ("expected_random_order", n_new)):
        c = collect.collect_runs(study["root"], progress=False, knn_ties=rule, cache_dir=tmp_path / "cache")
        assert len(c.runs) == count and set(c.runs["knn_ties"]) == {rule}
        assert sum("not selected" in s.reason for s in c.skipped) == len(study["runs"]) - count
        assert set(c.metrics["run_id"]) == set(c.runs["run_id"])
    # the command line says the same and stops before any statistics
    out = tmp_path / "analysis"
    assert cli.main(["--root", str(study["root"]), "--out", str(out), "--quiet"]) == 2
    assert not (out / "metrics.parquet").exists()


def test_different_modes_are_never_pooled(study):
    first = next(iter(study["runs"].values()))
    _set_rule(first["folder"], "expected_random_order", mode="leave_one_out")
    with pytest.raises(collect.MixedConditions, match="--knn-mode MODE"):
        collect.collect_runs(study["root"], progress=False)
    c = collect.collect_runs(study["root"], progress=False, knn_mode="leave_one_out")
    assert len(c.runs) == 1 and c.runs["knn_mode"].iloc[0] == "leave_one_out"


def test_tie_share_table_and_report_section(study):
    c = collect.collect_runs(study["root"], progress=False)
    table = ties.tie_share_table(c)
    assert len(table) == sum(info["ties"].shape[0] for info in study["runs"].values())
    for run_id, info in study["runs"].items():
        rows = table[table["run_id"] == run_id].sort_values("epoch")
        np.testing.assert_allclose(rows["tie_share_mean"], info["ties"].mean(1), rtol=1e-12)
        np.testing.assert_array_equal(rows["tie_share_max"], info["ties"].max(1))
        np.testing.assert_allclose(rows["slices_mostly_tied"], (info["ties"] > 0.5).mean(1), rtol=1e-12)
    summary = ties.tie_share_summary(table)
    for source in ("gesture", "sentence"):
        mine = [info["ties"] for info in study["runs"].values() if info["source"] == source]
        row = summary[summary["source"] == source].iloc[0]
        assert row["n_runs"] == len(mine)
        np.testing.assert_allclose(row["tie_share_mean"], np.mean([m.mean(1) for m in mine]), rtol=1e-12)
        np.testing.assert_allclose(row["tie_share_last_epoch"], np.mean([m[-1].mean() for m in mine]), rtol=1e-12)
    section = ties.tie_share_section(c)
    assert set(section) == {"title", "html", "tables", "figures"}
    assert "about 0.75" in section["html"] and "expected_random_order" in section["html"]
    assert section["figures"]["knn_tie_share.png"].startswith(b"\x89PNG")
    assert "data:image/png;base64," in section["html"]
    pd.testing.assert_frame_equal(section["tables"]["knn_tie_share"], table)


def test_section_without_tie_share_rows_says_so(tmp_path):
    root = tmp_path / "outputs"
    write_run(root, study="s1", source="gesture", pair=0, replicate=1)
    c = collect.collect_runs(root, progress=False)
    section = ties.tie_share_section(c)
    assert "No tie-share rows" in section["html"] and section["figures"] == {}
    assert section["tables"]["knn_tie_share"].empty


def test_a_real_run_record_gives_its_tie_share(tmp_path):
    from pipeline.run import execute
    from tests.helpers import run_plan

    outcome = execute(run_plan("trainer.epochs=2", f"paths.root={tmp_path}"))
    curves = pd.read_parquet(outcome.run_dir / "curves.parquet")
    c = collect.collect_runs(tmp_path, progress=False)
    row = c.runs.iloc[0]
    assert (row["knn_ties"], row["knn_mode"], row["knn_rule_recorded"]) == (
        "expected_random_order",
        "resubstitution",
        True,
    )
    share = curves[curves.probe == "knn_tie_share"].sort_values(["epoch", "time_slice"])
    np.testing.assert_array_equal(c.tie_maps[row["shape"]][row["map_row"]].reshape(-1), share["value"])
