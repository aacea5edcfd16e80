"""The training-health table (analysis/health.py, `python -m analysis.health`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.collect import collect_runs
from analysis.health import (
    ACCEPTANCE,
    authors_performance,
    default_performance_csv,
    health_from_collection,
    health_section,
    health_summary,
    health_table,
    map_movement,
    run_health,
    updates_per_epoch,
)
from tests.analysis_fixtures import make_study, write_run

REPO = Path(__file__).resolve().parents[1]
PERFORMANCE = REPO.parent / "shared" / "reference" / "jiang_dale_2025" / "performance.csv"


def test_map_movement_by_hand():
    m = np.array([[0.5, 0.5, 0.6, 1.0], [0.7, 0.5, 0.9, 0.8], [0.9, 0.4, 0.6, 0.9]])
    # |last - first| = 0.4, 0.1, 0.0, 0.1 -> mean 0.15 (middle epochs do not count)
    assert map_movement(m) == pytest.approx(0.15)
    assert map_movement(m[:1]) == 0.0
    with pytest.raises(ValueError, match="epochs x time slices"):
        map_movement(np.zeros(4))


def _set_summary(folder: Path, **values) -> None:
    summary = json.loads((folder / "summary.json").read_text())
    summary.update(values)
    (folder / "summary.json").write_text(json.dumps(summary))


def test_run_health_reads_the_record(tmp_path):
    lc = np.tile(np.linspace(0.5, 0.9, 5)[:, None], (1, 7))  # each slice rises by 0.4
    _, folder, _ = write_run(tmp_path, study="s", source="gesture", pair=2, replicate=1, lc_map=lc)
    _set_summary(
        folder,
        n_train=1664,
        batch_size=256,
        updates_per_epoch=7,
        test_accuracy=0.91,
        seconds_total=12.5,
        dataset="watch",
    )
    row = run_health(folder)
    assert row["map_movement"] == pytest.approx(0.4)
    assert (row["n_train"], row["updates_per_epoch"], row["test_accuracy"]) == (1664, 7, 0.91)
    assert (
        row["epochs"] == 5 and row["dataset"] == "watch" and row["pair"] == "no gesture/hand"
    )  # pair 2 = classes (0, 3)
    # a record from before updates_per_epoch was stored: counted from n_train and config's batch size (128)
    summary = json.loads((folder / "summary.json").read_text())
    del summary["updates_per_epoch"], summary["batch_size"]
    (folder / "summary.json").write_text(json.dumps(summary))
    assert run_health(folder)["updates_per_epoch"] == updates_per_epoch(1664, 128) == 13


def test_summary_per_source_and_the_bar(tmp_path):
    study = make_study(tmp_path, study="st", pairs=(0, 1, 2, 3, 4), replicates=1, shuffled_replicates=0, broken=True)
    runs, skipped = health_table(tmp_path, "st")
    # the broken folders: truncated / incomplete maps are listed; running, failed, no status are not done
    assert len(skipped) == 2 and len(runs) == 10
    accuracies = {"gesture": [0.9, 0.85, 0.75, 0.65, 0.95], "sentence": [0.6, 0.65, 0.9, 0.95, 0.97]}
    for _run_id, info in study["runs"].items():
        acc = accuracies[info["source"]][info["pair"]]
        _set_summary(info["folder"], test_accuracy=acc, n_train=1000 + info["pair"], batch_size=128)
    runs, _ = health_table(tmp_path, "st")
    summary = health_summary(runs).set_index("source")
    g, s = summary.loc["gesture"], summary.loc["sentence"]
    assert g["median_test_accuracy"] == pytest.approx(0.85) and s["median_test_accuracy"] == pytest.approx(0.9)
    assert g["share_pairs_ge_070"] == pytest.approx(0.8) and s["share_pairs_ge_070"] == pytest.approx(0.6)
    assert g["median_n_train"] == 1002 and g["min_updates_per_epoch"] == 8
    expected_movement = {
        src: np.median([map_movement(i["map"]) for i in study["runs"].values() if i["source"] == src])
        for src in ("gesture", "sentence")
    }
    assert g["median_map_movement"] == pytest.approx(expected_movement["gesture"])
    assert g["meets_bar"] == (expected_movement["gesture"] >= ACCEPTANCE["median_map_movement"])
    assert not s["meets_bar"]  # 3 of 5 pairs at 0.70 or above


def test_share_of_pairs_uses_the_median_over_replicates(tmp_path):
    for rep, acc in enumerate([0.6, 0.72, 0.74], start=1):  # median 0.72 -> the pair counts
        _, folder, _ = write_run(tmp_path, study="s", source="gesture", pair=0, replicate=rep)
        _set_summary(folder, test_accuracy=acc)
    runs, _ = health_table(tmp_path)
    assert health_summary(runs)["share_pairs_ge_070"].item() == 1.0


@pytest.mark.skipif(not PERFORMANCE.is_file(), reason=f"authors' performance.csv absent ({PERFORMANCE})")
def test_authors_figures_from_performance_csv():
    assert default_performance_csv() == PERFORMANCE
    authors = authors_performance().set_index(["source", "epochs"])
    perf = pd.read_csv(PERFORMANCE)
    for (source, epochs), row in authors.iterrows():
        g = perf[(perf.source == source) & (perf.epochs == epochs)]
        assert row["runs"] == len(g)
        assert row["median_updates_per_epoch"] == g.updates_per_epoch.median()
        assert row["median_test_accuracy"] == pytest.approx(g.test_accuracy.median())
    # docs/science.md's figures: updates per epoch median 43 (gesture) and 24 (sentence); 15 gesture pairs
    assert authors.loc[("gesture", 50), "median_updates_per_epoch"] == 43
    assert authors.loc[("sentence", 50), "median_updates_per_epoch"] == 24
    assert authors.loc[("gesture", 50), "pairs"] == 15
    assert authors.loc[("gesture", 50), "median_test_accuracy"] == pytest.approx(0.837, abs=5e-4)


def test_absent_performance_csv_is_said(tmp_path):
    write_run(tmp_path, study="s", source="sentence", pair=1, replicate=1)
    assert authors_performance(tmp_path / "nope.csv") is None
    section = health_section(collect_runs(tmp_path, progress=False), performance_csv=tmp_path / "nope.csv")
    assert set(section) == {"title", "html", "tables"}
    assert "not found" in section["html"] and str(tmp_path / "nope.csv") in section["html"]
    assert set(section["tables"]) == {"health_runs", "health_summary"}
    assert section["tables"]["health_runs"].shape[0] == 1


@pytest.mark.skipif(not PERFORMANCE.is_file(), reason=f"authors' performance.csv absent ({PERFORMANCE})")
def test_section_for_the_report(tmp_path):
    make_study(tmp_path, study="st", pairs=(0, 1), replicates=2, shuffled_replicates=1, broken=False)
    section = health_section(collect_runs(tmp_path, progress=False))
    assert section["title"] == "Training health"
    summary = section["tables"]["health_summary"]
    assert set(summary["labels"]) == {"real", "shuffled"} and not summary[summary.labels == "shuffled"].meets_bar.any()
    assert "<table" in section["html"] and "performance.csv" in section["html"]
    assert {"gesture", "sentence"} <= set(section["tables"]["health_authors"]["source"])


def test_health_command(tmp_path):
    make_study(tmp_path, study="st", pairs=(0, 1), replicates=1, shuffled_replicates=0, broken=False)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis.health",
            "--root",
            str(tmp_path),
            "--per-run",
            "--performance-csv",
            str(tmp_path / "absent.csv"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "training health" in out.stdout and "median_map_movement" in out.stdout
    assert "not found" in out.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "analysis.health", "--root", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    report = json.loads(as_json.stdout)
    assert {r["source"] for r in report["summary"]} == {"gesture", "sentence"}
    # the health command is torch-free, like the rest of the analysis
    code = (
        "import sys; from analysis import health; health.main(['--root', sys.argv[1]]); "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True).returncode == 0
    # a study that is not there is said, not a traceback
    missing = subprocess.run(
        [sys.executable, "-m", "analysis.health", "--root", str(tmp_path), "--study", "nope"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert missing.returncode == 2 and "No runs found" in missing.stderr and "Traceback" not in missing.stderr
    # pipeline.status (the training side) points at it instead of computing it
    moved = subprocess.run(
        [sys.executable, "-m", "pipeline.status", "--root", str(tmp_path), "--health"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert moved.returncode == 2 and "python -m analysis.health" in moved.stderr


def test_the_report_section_reuses_the_collection(tmp_path):
    """Same rows as reading the run folders, without reading a curves.parquet again."""
    study = make_study(tmp_path, study="st", pairs=(0, 1), replicates=2, shuffled_replicates=1, broken=True)
    for i, info in enumerate(study["runs"].values()):
        _set_summary(info["folder"], test_accuracy=0.5 + i / 100, n_train=1000 + i, batch_size=128)
    from_folders, skipped = health_table(tmp_path, "st")
    collection = collect_runs(tmp_path, "st", progress=False)
    for info in study["runs"].values():
        (Path(info["folder"]) / "curves.parquet").unlink()
    reused, none = health_from_collection(collection)
    pd.testing.assert_frame_equal(reused, from_folders)
    assert len(reused) == len(study["runs"]) and len(skipped) == 2 and none == []
    section = health_section(collection)
    pd.testing.assert_frame_equal(section["tables"]["health_runs"], from_folders)
    # a done run whose summary.json went missing since the collection read it is said, not fatal
    (Path(next(iter(study["runs"].values()))["folder"]) / "summary.json").unlink()
    rows, skipped = health_from_collection(collection)
    assert len(rows) == len(study["runs"]) - 1 and "summary.json unreadable" in skipped[0][1]


# ----------------------------------------------------------------------------- the probe regime and collapses

REFERENCE = PERFORMANCE.parent


def _set_train_accuracy(folder: Path, accuracies) -> None:
    """readouts.parquet with these train accuracies per epoch (and validation rows beside them)."""
    rows = [(e, "train", "accuracy", a) for e, a in enumerate(accuracies, 1)]
    rows += [(e, "val", "accuracy", 0.5) for e in range(1, len(accuracies) + 1)]
    frame = pd.DataFrame(rows, columns=["epoch", "split", "metric", "value"]).astype({"epoch": np.int32})
    frame.to_parquet(folder / "readouts.parquet", index=False)


def test_late_collapse_is_flagged_from_the_train_accuracy(tmp_path):
    courses = {0: [0.6, 0.8, 0.935, 0.9, 0.78], 1: [0.6, 0.8, 0.9, 0.85, 0.82], 2: [0.5, 0.6, 0.7, 0.8, 0.9]}
    for pair, course in courses.items():
        _, folder, _ = write_run(tmp_path, study="s", source="gesture", pair=pair, replicate=1, epochs=5)
        _set_train_accuracy(folder, course)
    _, no_train_rows, _ = write_run(tmp_path, study="s", source="gesture", pair=3, replicate=1, epochs=5)
    only_val = pd.DataFrame({"epoch": np.arange(1, 6, dtype=np.int32), "split": "val", "metric": "accuracy"})
    only_val.assign(value=0.5).to_parquet(no_train_rows / "readouts.parquet", index=False)  # no train accuracy
    runs, _ = health_table(tmp_path)
    by_pair = runs.set_index("pair_index")
    # best 0.935, final 0.78: a drop of 0.155 > 0.1; 0.9 -> 0.82 is 0.08, not a collapse; rising is not
    assert by_pair.loc[0, "collapsed"] and by_pair.loc[0, "train_accuracy_best"] == 0.935
    assert by_pair.loc[0, "train_accuracy_final"] == 0.78
    assert not by_pair.loc[1, "collapsed"] and not by_pair.loc[2, "collapsed"]
    assert by_pair.loc[3, "collapsed"] is None and np.isnan(by_pair.loc[3, "train_accuracy_best"])
    assert health_summary(runs)["collapsed_runs"].item() == 1


def test_start_and_max_are_the_smoothed_metrics(tmp_path):
    """start at epoch 1 and max at the last epoch, from the single-curve smoother (checked against R)."""
    from pipeline.curve_metrics import smooth_3rs3r

    rng = np.random.default_rng(4)
    lc = np.clip(0.5 + np.cumsum(rng.normal(0.01, 0.05, size=(6, 11)), axis=1), 0, 1)
    _, folder, _ = write_run(tmp_path, study="s", source="sentence", pair=0, replicate=1, lc_map=lc)
    row = run_health(folder)
    assert row["start_epoch1"] == pytest.approx(smooth_3rs3r(lc[0])[0], abs=1e-12)
    assert row["max_last"] == pytest.approx(smooth_3rs3r(lc[-1]).max(), abs=1e-12)


@pytest.mark.skipif(not (REFERENCE / "metrics_50epoch.csv").is_file(), reason=f"authors' tables absent ({REFERENCE})")
def test_the_authors_regime_figures_and_the_verdict(tmp_path):
    from analysis.health import authors_regime, regime_reference, regime_verdict

    regime = authors_regime().set_index(["source", "epoch"])
    table = pd.read_csv(REFERENCE / "metrics_50epoch.csv")
    first = table[(table.source == "gesture") & (table.epoch == 1)]["start"]
    assert regime.loc[("gesture", 1), "start_p05"] == pytest.approx(first.quantile(0.05))
    assert regime.loc[("gesture", 1), "start_p95"] == pytest.approx(first.quantile(0.95))
    last = table[(table.source == "sentence") & (table.epoch == 50)]["max"]
    assert regime.loc[("sentence", 50), "max_p50"] == pytest.approx(last.median())
    null = pd.read_csv(REFERENCE / "metrics_null_50epoch.csv")
    assert regime.loc[("gesture", 1), "null_start_p50"] == pytest.approx(
        null[(null.source == "gesture") & (null.epoch == 1)]["start"].median()
    )
    # docs/data.md's band: gesture start at epoch 1 between 0.776 and 0.878
    assert (round(regime.loc[("gesture", 1), "start_p05"], 3), round(regime.loc[("gesture", 1), "start_p95"], 3)) == (
        0.776,
        0.878,
    )
    frame = authors_regime()
    real = {"labels": "real", "source": "gesture", "median_max_last": 0.95}
    assert regime_verdict({**real, "median_start_epoch1": 0.85}, frame) is True
    assert regime_verdict({**real, "median_start_epoch1": 0.99}, frame) is False  # the watch maps before
    assert regime_verdict({**real, "median_start_epoch1": 0.85, "median_max_last": 0.995}, frame) is False
    assert regime_verdict({**real, "median_start_epoch1": 0.85}, None) is None
    shuffled = {"labels": "shuffled", "source": "gesture"}
    assert regime_verdict({**shuffled, "median_start_epoch1": 0.79}, frame) is True
    assert regime_verdict({**shuffled, "median_start_epoch1": 0.92}, frame) is False
    summary = pd.DataFrame([{"source": "gesture", "epochs": 20}, {"source": "sentence", "epochs": 20}])
    reference = regime_reference(summary).set_index("source")
    assert (reference["at_epoch"] == 20).all()
    assert reference.loc["sentence", "max_p50"] == pytest.approx(regime.loc[("sentence", 20), "max_p50"])
