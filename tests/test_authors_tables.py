"""The authors' 100-epoch and multiclass tables (analysis/authors_tables.py), on those tables themselves:
every figure recomputed here another way (plain pandas loops, scipy's paired tests), and the command
line's report on each table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import authors_tables as at
from analysis.tables import read_metrics_table

REPO = Path(__file__).resolve().parents[1]
AUTHORS = REPO.parent / "shared" / "reference" / "jiang_dale_2025"
LONG = AUTHORS / "metrics_gesture_100epoch.csv"
MULTI = AUTHORS / "metrics_multiclass_20epoch.csv"
FIFTY = AUTHORS / "metrics_50epoch.csv"
needs_tables = pytest.mark.skipif(
    not (LONG.is_file() and MULTI.is_file() and FIFTY.is_file()),
    reason=f"the authors' metric tables are not in {AUTHORS} (they are not part of the repository)",
)


@pytest.fixture(scope="module")
def long_table():
    return read_metrics_table([LONG])


@pytest.fixture(scope="module")
def multi_table():
    return read_metrics_table([MULTI])


@pytest.fixture(scope="module")
def fifty():
    return read_metrics_table([FIFTY])


def _block(table: pd.DataFrame, pair: str, replicate: int, last: int, metric: str) -> float:
    rows = table[(table.pair == pair) & (table.replicate == replicate) & table.epoch.between(last - 4, last)]
    assert len(rows) == 5
    return float(rows[metric].mean())


@needs_tables
def test_kinds_and_the_rows_the_statistics_use(long_table, multi_table, fifty):
    assert at.table_kind(long_table) == "long" and at.table_kind(multi_table) == "multiclass"
    assert at.table_kind(fifty) is None
    pairwise, note = at.statistics_rows(multi_table)
    assert set(pairwise.pair) == set(multi_table.pair) - {"MultiClass"} and len(pairwise) == 3000
    assert "6-way probe" in note[0]
    assert at.statistics_rows(long_table)[0] is long_table


@needs_tables
def test_after_epoch_50_by_hand(long_table):
    """Per run, epochs 96-100 minus 46-50; per pair, the mean over replicates; over pairs, t and exact Wilcoxon."""
    result = at.after_epoch_50(long_table).set_index("metric")
    for metric in ("max", "tmax", "start"):
        per_pair = []
        for pair in sorted(long_table.pair.unique()):
            diffs = [
                _block(long_table, pair, r, 100, metric) - _block(long_table, pair, r, 50, metric)
                for r in sorted(long_table[long_table.pair == pair].replicate.unique())
            ]
            per_pair.append(np.mean(diffs))
        per_pair = np.array(per_pair)
        row = result.loc[metric]
        assert row["pairs"] == 10 and row["mean_difference"] == pytest.approx(per_pair.mean(), abs=1e-12)
        assert row["p_t"] == pytest.approx(sps.ttest_1samp(per_pair, 0).pvalue, rel=1e-9)
        assert row["p_wilcoxon_exact"] == pytest.approx(sps.wilcoxon(per_pair, method="exact").pvalue)
        half = sps.t.ppf(0.975, 9) * per_pair.std(ddof=1) / np.sqrt(10)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((per_pair.mean() - half, per_pair.mean() + half))
    # the maps still rise after epoch 50 in every pair: max by about 0.02, the peak moves later
    assert result.loc["max", "pairs_up"] == 10 and result.loc["max", "p_holm"] < 0.01
    assert 0.01 < result.loc["max", "mean_difference"] < 0.04 and result.loc["tmax", "mean_difference"] > 0.05


@needs_tables
def test_the_100_epoch_runs_match_the_50_epoch_runs_up_to_epoch_50(long_table, fifty):
    result = at.against_50_epoch_runs(long_table, fifty).set_index("metric")
    g = fifty[(fifty.source == "gesture") & fifty.pair.isin(long_table.pair.unique())]
    a = long_table[long_table.epoch.between(46, 50)].groupby("pair")["max"].mean()
    b = g[g.epoch.between(46, 50)].groupby("pair")["max"].mean()
    assert result.loc["max", "mean_difference"] == pytest.approx((a - b).mean(), abs=1e-12)
    assert result.loc["max", "p_t"] == pytest.approx(sps.ttest_rel(a, b.loc[a.index]).pvalue, rel=1e-9)
    assert (result["p_holm"] > 0.05).all()  # the same training for 50 epochs: no difference shows


@needs_tables
def test_multiclass_against_pairwise_networks(multi_table, fifty):
    result = at.multiclass_against_pairwise(multi_table, fifty)
    late = result[result.comparison.str.contains("16-20")].set_index("metric")
    sentence = fifty[fifty.source == "sentence"]
    for metric in ("end", "start"):
        mine = multi_table[(multi_table.pair != "MultiClass") & multi_table.epoch.between(16, 20)]
        theirs = sentence[sentence.epoch.between(16, 20)]
        a, b = mine.groupby("pair")[metric].mean(), theirs.groupby("pair")[metric].mean()
        assert late.loc[metric, "pairs"] == 15
        assert late.loc[metric, "p_t"] == pytest.approx(sps.ttest_rel(a, b.loc[a.index]).pvalue, rel=1e-9)
    # the 6-way network's pair maps reach their end sooner: end higher by ~0.18 at epochs 16-20
    assert 0.1 < late.loc["end", "mean_difference"] < 0.25 and late.loc["end", "pairs_up"] == 15


@needs_tables
@pytest.mark.slow
@pytest.mark.parametrize("table", [MULTI, LONG], ids=["multiclass", "100-epoch"])
def test_the_command_line_adds_the_section(tmp_path, table):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "analysis", "--metrics-table", str(table), "--out", str(out)]
        + ["--no-figures", "--core-only", "--quiet", "--jobs", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    page = (out / "report.html").read_text()
    name = "authors_multiclass_vs_pairwise" if table == MULTI else "authors_long_after_epoch_50"
    assert (out / f"{name}.csv").is_file() and f"{name}.csv" in page
    assert ("multiclass runs</h" if table == MULTI else "100-epoch runs</h") in page  # the section's heading
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert "MultiClass" not in set(metrics.pair)  # the 6-way probe stays out of the class-pair statistics
    replication = pd.read_csv(out / "replication.csv")
    claim2 = replication[replication.claim.astype(str) == "2"]
    assert len(claim2) and set(claim2.verdict) <= {"replicates", "does not replicate", "not testable here"}


def test_other_tables_get_no_section():
    table = pd.DataFrame(
        {"source": ["gesture"] * 2, "labels": ["real"] * 2, "pair": ["a/b"] * 2, "replicate": [1, 1], "epoch": [1, 2]}
    )
    assert at.table_kind(table) is None and at.extra_table_sections(table, ["x.csv"]) == []
