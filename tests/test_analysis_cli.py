"""`python -m analysis` end to end, on synthetic run folders and on metrics tables."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from tests.analysis_fixtures import make_study

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "jiang_dale_2025"
METRICS = {"start", "end_minus_start", "max", "tmax"}


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "analysis", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout
    )


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """One study (2 sources x 3 pairs x 3 replicates + shuffled runs + 5 broken folders), analysed once."""
    root = tmp_path_factory.mktemp("outputs")
    study = make_study(root, study="jd", epochs=6)
    result = _run("--root", str(root))
    assert result.returncode == 0, result.stderr
    return {"root": root, "study": study, "out": root / "analysis", "result": result}


def test_writes_every_table(analysed):
    out = analysed["out"]
    metrics = pd.read_parquet(out / "metrics.parquet")
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
    ):
        assert column in metrics.columns
    assert set(metrics["labels"]) == {"real", "shuffled"}
    assert metrics["run_id"].nunique() == len(analysed["study"]["runs"])
    assert len(metrics) == 6 * len(analysed["study"]["runs"])

    me = pd.read_csv(out / "mixed_effects.csv")
    assert {"metric", "model", "term", "estimate", "std_error", "p_value"} <= set(me.columns)
    assert set(me["metric"]) == METRICS
    key = {"source_pairs", "pair_gesture_slope", "pair_sentence_slope", "labels_gesture_slope", "labels_sentence_slope"}
    assert key | {"source", "pair_gesture", "pair_sentence"} <= set(me["model"])
    lrt = pd.read_csv(out / "lrt.csv")
    assert {"metric", "model", "chisq", "df", "p_value", "singular"} <= set(lrt.columns)
    assert key <= set(lrt["model"]) and set(lrt["metric"]) == METRICS
    rep = pd.read_csv(out / "replication.csv", dtype={"claim": str})
    assert {
        "claim",
        "statement",
        "metric",
        "source",
        "authors_test",
        "our_test",
        "estimate",
        "ci_low",
        "ci_high",
        "p_value",
        "p_holm",
        "verdict",
    } <= set(rep.columns)
    assert set(rep["claim"]) == {"1", "2", "2b", "3", "4a", "4b", "5"}
    kinds = rep["verdict"].str.replace(r" \(.*", "", regex=True)
    assert set(kinds) <= {"replicates", "does not replicate", "not testable here", "underpowered", "secondary"}
    assert {"test", "unit", "n", "p_floor_holm", "role"} <= set(rep.columns)
    # 3 replicates per class pair: the class-pair test (k groups of 3) can decide, claims 4a/4b over
    # 2 x 3 pairs x 5 steps cannot (Holm x 36 over a floor of 2/2^3)
    assert rep.loc[rep["claim"] == "4b", "verdict"].str.startswith("underpowered").all()
    rule = pd.read_csv(out / "replicate_rule.csv")
    assert {"family", "smallest_p_after_holm", "n_needed_to_reach_0.05"} <= set(rule.columns)
    assert (out / "regime.csv").is_file()
    ols = pd.read_csv(out / "ols.csv")
    assert {"metric", "model", "adj_r2", "f", "p_value"} <= set(ols.columns)
    assert {"source", "labels_gesture", "pair_sentence", "epoch_pair_gesture", "epoch_vs_epoch_pair_sentence"} <= set(
        ols["model"]
    )
    for name in ("contrasts.csv", "effect_sizes.csv", "models.csv", "random_effects.csv", "skipped_runs.csv"):
        assert (out / name).is_file(), name
    skipped = pd.read_csv(out / "skipped_runs.csv")
    assert set(skipped["run_id"]) == set(analysed["study"]["broken"])


def test_figures_and_a_self_contained_report(analysed):
    out = analysed["out"]
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {
        "maps_gesture_real.png",
        "maps_sentence_real.png",
        "maps_gesture_shuffled.png",
        "trajectory_tmax_vs_end_minus_start.png",
        "trajectory_start_vs_max.png",
    } <= figures
    assert {f"metric_{m}.png" for m in METRICS} <= figures
    assert {"maps_average.png", "maps_difference_gesture.png", "maps_difference_sentence.png"} <= figures
    page = (out / "report.html").read_text()
    # the verdicts at a glance first, then the maps, the diagnostics, the verdicts in full, the model tables;
    # no table sits in a fixed-height box
    # (the section headings, not the links to them at the top)
    order = (
        "What replicates, at a glance",
        'id="maps"',
        ">Training health</h2>",
        ">KNN probe: ties and chance level</h2>",
    )
    order += ("What replicates, in full", "Key likelihood-ratio tests", ">Input and files</h2>")
    assert [page.index(part) for part in order] == sorted(page.index(part) for part in order)
    assert (out / "health_runs.csv").is_file() and 'href="health_runs.csv"' in page
    assert "max-height" not in page
    assert page.count("data:image/png;base64,") == len(figures)
    assert not re.search(r"""(src|href)=['"]?(https?:|//|file:)""", page)  # nothing outside the file
    for run_id in analysed["study"]["broken"]:  # skipped runs are listed
        assert run_id in page
    assert "Warnings" in page and "pseudo-replication" in page


def test_rerun_uses_the_cache(analysed):
    before = pd.read_parquet(analysed["out"] / "metrics.parquet")
    result = _run("--root", str(analysed["root"]), "--core-only", "--no-figures")
    assert result.returncode == 0, result.stderr
    assert f"(0 read, {len(analysed['study']['runs'])} from cache)" in result.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(analysed["out"] / "metrics.parquet"), before)


def test_metrics_table_input(analysed, tmp_path, capsys):
    table = pd.read_parquet(analysed["out"] / "metrics.parquet")
    csv = tmp_path / "table.csv"
    table[["source", "labels", "pair", "replicate", "epoch", "start", "end", "max", "tmax"]].to_csv(csv, index=False)
    out = tmp_path / "out"
    assert main(["--metrics-table", str(csv), "--out", str(out), "--core-only", "--quiet"]) == 0
    me = pd.read_csv(out / "mixed_effects.csv")
    assert set(me["model"]) == {
        "source_pairs",
        "pair_gesture_slope",
        "pair_sentence_slope",
        "labels_gesture_slope",
        "labels_sentence_slope",
    }
    derived = pd.read_parquet(out / "metrics.parquet")
    assert (derived["end_minus_start"] == derived["end"] - derived["start"]).all()
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert "trajectory_start_vs_max.png" in figures and not any(f.startswith("maps_") for f in figures)
    parquet = tmp_path / "table.parquet"
    table.drop(columns=["tmax", "pair"]).to_parquet(parquet)
    assert main(["--metrics-table", str(parquet), "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "pair, tmax" in err and "lacks the columns" in err


def test_clear_errors(tmp_path, capsys):
    assert main(["--root", str(tmp_path / "nothing-here")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nothing-here") in err and "pipeline" in err
    assert main(["--metrics-table", str(tmp_path / "x.csv")]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["--metrics-table", str(tmp_path / "x.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # only broken runs
    root = tmp_path / "broken"
    study = make_study(root, study="b", pairs=(0,), replicates=0, shuffled_replicates=0)
    assert main(["--root", str(root), "--quiet"]) == 2
    assert "no usable runs" in capsys.readouterr().err
    skipped = pd.read_csv(root / "analysis" / "skipped_runs.csv")
    assert set(skipped["run_id"]) == set(study["broken"])


def test_help_documents_the_command():
    result = _run("--help")
    assert result.returncode == 0
    for text in (
        "--metrics-table",
        "--out",
        "--study",
        "--root",
        "--no-smooth",
        "mixed_effects.csv",
        "lrt.csv",
        "ols.csv",
        "report.html",
        "(1 | run)",
    ):
        assert text in result.stdout, text


@pytest.mark.slow
@pytest.mark.skipif(
    not (REFERENCE / "metrics_50epoch.csv").is_file(),
    reason=f"the authors' reference tables are not in {REFERENCE} (CI has ../shared)",
)
def test_the_authors_tables_end_to_end(tmp_path):
    out = tmp_path / "jd"
    result = _run(
        "--metrics-table",
        str(REFERENCE / "metrics_50epoch.csv"),
        "--metrics-table",
        str(REFERENCE / "metrics_null_50epoch.csv"),
        "--out",
        str(out),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lrt = pd.read_csv(out / "lrt.csv")
    assert {
        "source_pairs",
        "pair_gesture_slope",
        "pair_sentence_slope",
        "labels_gesture_slope",
        "labels_sentence_slope",
        "source",
        "pair_gesture",
        "pair_sentence",
        "source_pair_re",
        "labels_gesture",
        "labels_sentence",
    } == set(lrt["model"])
    assert lrt["converged"].all()
    assert (lrt.loc[lrt["model"] == "source_pairs", "df"] == 2).all()
    models = pd.read_csv(out / "models.csv")
    assert models["converged"].all()
    assert (models.loc[models["model"] == "source_pairs", "n_groups"] == 30).all()  # 2 x 15 class pairs
    ols = pd.read_csv(out / "ols.csv")
    assert len(ols) == 36
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page

    # what replicates: the data's answer, each number recomputed here from the table itself
    rep = pd.read_csv(out / "replication.csv", dtype={"claim": str})
    real = pd.read_csv(REFERENCE / "metrics_50epoch.csv")
    real["end_minus_start"] = real["end"] - real["start"]
    primary = rep[rep["role"] == "primary"]
    verdict = {
        (r.claim, r.metric, r.source if isinstance(r.source, str) else ""): r.verdict for r in primary.itertuples()
    }
    # the sources differ in level or development (the LRT of source + source:epoch): all four metrics
    for metric in METRICS:
        assert verdict[("1", metric, "")] == "replicates"
    assert verdict[("3", "end_minus_start", "")] == "replicates"
    for source in ("gesture", "sentence"):
        assert verdict[("5", "max", source)] == verdict[("5", "tmax", source)] == "not testable here"
        for metric in METRICS:
            assert verdict[("2", metric, source)] == "replicates"
    from scipy import stats as sps

    for metric in METRICS:
        row = rep[(rep["claim"] == "1") & (rep["metric"] == metric) & (rep["role"].str.contains("level"))].iloc[0]
        means = real.groupby(["source", "pair"])[metric].mean()
        gesture, sentence = means.loc["gesture"].to_numpy(), means.loc["sentence"].to_numpy()
        # a balanced design: the estimate at the mean epoch is the difference of the sources' means
        assert row["estimate"] == pytest.approx(sentence.mean() - gesture.mean(), abs=1e-9)
        assert row["ci_low"] < row["estimate"] < row["ci_high"]
        # and its test agrees with Welch's on the 2 x 15 class-pair means to within 0.02 in p
        welch = sps.ttest_ind(sentence, gesture, equal_var=False).pvalue
        assert row["p_value"] == pytest.approx(welch, abs=0.02)
    null = pd.read_csv(REFERENCE / "metrics_null_50epoch.csv")
    assert len(null) == 500
    notes = rep[(rep["claim"] == "5") & (rep["metric"] == "tmax")].set_index("source")["note"]
    assert notes["gesture"].startswith("83%") and notes["sentence"].startswith("74%")  # 208 + 186 = 394 of 500
    # the development of max and tmax differs between the sources: Welch on the class pairs' own slopes
    for metric, p_lrt in (("max", 2.2e-5), ("tmax", 4.8e-3)):
        slopes = real.groupby(["source", "pair"]).apply(lambda d, m=metric: np.polyfit(d["epoch"], d[m], 1)[0])
        assert sps.ttest_ind(slopes["sentence"], slopes["gesture"], equal_var=False).pvalue < 0.05
        row = primary[(primary["claim"] == "1") & (primary["metric"] == metric)].iloc[0]
        assert row["p_value"] == pytest.approx(p_lrt, rel=0.05)


def test_report_renders_diagnostics_after_the_replication_section_and_links_their_tables():
    from analysis import report
    from analysis.stats import StatsResults

    table = pd.DataFrame(
        {
            "source": ["gesture"] * 2,
            "labels": ["real"] * 2,
            "pair": ["a/b"] * 2,
            "run": ["r1", "r2"],
            "epoch": [1, 1],
            "start": [0.5, 0.6],
            "end": [0.7, 0.8],
            "max": [0.8, 0.9],
            "tmax": [0.5, 0.6],
            "end_minus_start": [0.2, 0.2],
        }
    )
    empty = {
        k: pd.DataFrame() for k in ("mixed_effects", "lrt", "models", "random_effects", "contrasts", "effect_sizes")
    }
    long = pd.DataFrame({"run_id": [f"run-{i:03d}" for i in range(300)], "tie_share": [i / 300 for i in range(300)]})
    page = report.render_report(
        report.ReportInput(
            title="t",
            source_description="x",
            table=table,
            ols=pd.DataFrame(),
            mixed=StatsResults(**empty),
            figures={},
            diagnostics=[{"title": "Probe tie share", "html": "<p>ties</p>", "tables": {"ties": long}}],
        )
    )
    glance, section = page.index("What replicates, at a glance"), page.index(">Probe tie share</h2>")
    assert glance < section < page.index(">Input and files</h2>")
    # the section's own summary is shown; its long tables are linked as the CSV files cli.py writes
    assert "<p>ties</p>" in page and 'href="ties.csv"' in page and "(300 rows)" in page
    # the report's own long tables: tests/test_analysis_report.py
