"""The architecture analysis (analysis/architectures.py) on tables whose model effects are known: the mixed
model's contrasts equal the cells' least squares (balanced design), the class-pair test equals scipy's on
pair means computed here, the verdicts find the planted difference and only it, and a design with too few
class pairs is called underpowered, not 'no difference'."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.architectures import (
    FAMILIES,
    architecture_section,
    architecture_tables,
    contrasts,
    fit_metric,
    model_pairs,
    pair_level_tests,
)
from analysis.companion.power import min_p_signed_rank

MODELS = ("gru", "lstm", "transformer")
EFFECT = {"gru": 0.05, "lstm": 0.0, "transformer": 0.0}  # gru peaks higher, in every epoch
SLOPE = {"gru": 0.0, "lstm": 0.0, "transformer": -0.004}  # the transformer's end - start falls over epochs


def synthetic_table(pairs=(("gesture", 8), ("sentence", 7)), replicates=2, epochs=8, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for source, n_pairs in pairs:
        for p in range(n_pairs):
            pair_level, pair_slope = rng.normal(0, 0.03), rng.normal(0, 0.002)  # shared by the pair's models
            for model in MODELS:
                for r in range(replicates):
                    run_level, run_slope = rng.normal(0, 0.01), rng.normal(0, 0.001)
                    run = f"architectures/{source}-p{p:02d}-{model}-r{r:03d}"
                    for epoch in range(1, epochs + 1):
                        noise = rng.normal(0, 0.01, size=4)
                        common = pair_level + run_level + (pair_slope + run_slope) * epoch
                        rows.append(
                            {
                                "study": "architectures",
                                "run_id": run.split("/")[1],
                                "run": run,
                                "source": source,
                                "labels": "real",
                                "model": model,
                                "pair": f"{source[0]}{p}a/{source[0]}{p}b",
                                "replicate": r,
                                "epoch": epoch,
                                "start": 0.6 + common + noise[0],
                                "end_minus_start": 0.1 + common + SLOPE[model] * epoch + noise[1],
                                "max": 0.8 + common + EFFECT[model] + 0.002 * epoch + noise[2],
                                "tmax": 0.5 + common + noise[3],
                            }
                        )
    table = pd.DataFrame(rows)
    table["end"] = table["start"] + table["end_minus_start"]
    return table


@pytest.fixture(scope="module")
def table():
    return synthetic_table()


@pytest.fixture(scope="module")
def tables(table):
    return architecture_tables(table)


def test_level_and_slope_contrasts_equal_the_cells_least_squares(table):
    """Balanced: every run has the same epochs and every pair every model, so the GLS fixed effects are the
    cells' least squares: a level contrast is a difference of cell means, a slope contrast one of slopes."""
    fit = fit_metric(table, "max")
    con = contrasts(fit)
    for source in ("gesture", "sentence"):
        cells = table[table["source"] == source]
        means = cells.groupby("model")["max"].mean()
        slopes = cells.groupby("model").apply(lambda g: np.polyfit(g["epoch"], g["max"], 1)[0], include_groups=False)
        for a, b in model_pairs(MODELS):
            row = con[(con.source == source) & (con.contrast == f"{a} - {b}")].set_index("family")
            assert row.loc[FAMILIES[0], "estimate"] == pytest.approx(means[a] - means[b], abs=1e-9)
            assert row.loc[FAMILIES[1], "estimate"] == pytest.approx(slopes[a] - slopes[b], abs=1e-9)


def test_the_class_pair_test_is_scipys_wilcoxon_on_pair_means(table):
    rows, families = pair_level_tests(table, "max")
    for source in ("gesture", "sentence"):
        means = table[table["source"] == source].groupby(["pair", "model"])["max"].mean().unstack("model")
        p_raw = []
        for a, b in model_pairs(MODELS):
            d = (means[a] - means[b]).to_numpy()
            row = rows[(rows.source == source) & (rows.family == FAMILIES[0]) & (rows.contrast == f"{a} - {b}")].iloc[0]
            assert row["pair_mean_difference"] == pytest.approx(d.mean(), abs=1e-12)
            assert row["pair_p_value"] == pytest.approx(sps.wilcoxon(d, method="exact").pvalue, rel=1e-12)
            p_raw.append(row["pair_p_value"])
        holm = rows[(rows.source == source) & (rows.family == FAMILIES[0])]["pair_p_holm"].to_numpy()
        order = np.argsort(p_raw)  # Holm by hand: step-down, monotone
        expected = np.maximum.accumulate(np.minimum(1, np.array(p_raw)[order] * (3 - np.arange(3))))
        assert np.allclose(holm[order], expected)
    floors = {f.family: f.floor_holm for f in families}
    assert floors[f"model contrasts: max, gesture, {FAMILIES[0]}"] == pytest.approx(3 * min_p_signed_rank(8))


def test_the_verdicts_find_the_planted_differences_and_only_them(tables):
    con = tables.contrasts
    differ = con[con["verdict"] == "differ"]
    found = set(zip(differ.metric, differ.source, differ.family, differ.contrast))
    for source in ("gesture", "sentence"):
        # gru peaks 0.05 higher than lstm and the transformer
        assert ("max", source, FAMILIES[0], "gru - lstm") in found
        assert ("max", source, FAMILIES[0], "gru - transformer") in found
        # the transformer's end - start falls by 0.004 per epoch against both others
        assert ("end_minus_start", source, FAMILIES[1], "transformer - lstm") in found
    # the metrics with no planted model effect: no strong evidence, and at most one chance 'differ' among
    # their 2 sources x 2 families x 3 model pairs (Holm controls each family of 3, not all of them)
    nulls = con[con.metric.isin(["start", "tmax"])]
    assert (nulls["verdict"] == "differ").sum() <= 1
    lrt = tables.lrt.set_index("metric")
    assert lrt.loc["start", "p_value"] > 1e-3 and lrt.loc["tmax", "p_value"] > 1e-3
    gru = con[(con.metric == "max") & (con.family == FAMILIES[0]) & (con.contrast == "gru - lstm")]
    assert ((gru.ci_low < 0.05) & (0.05 < gru.ci_high)).all()  # the interval covers the planted effect
    assert lrt.loc["max", "p_value"] < 1e-6 and lrt.loc["end_minus_start", "p_value"] < 1e-6
    assert lrt.loc["max", "df"] == 3 * 2 * 2 - 2 * 2  # model * source * epoch against source * epoch


def test_too_few_class_pairs_is_underpowered_not_no_difference():
    small = synthetic_table(pairs=(("gesture", 3), ("sentence", 3)), replicates=3)
    con = architecture_tables(small, metrics=("max",)).contrasts
    # 3 pairs: the exact signed-rank test's smallest p is 2/2^3 = 0.25, times 3 model pairs
    assert con["verdict"].str.startswith("underpowered (n = 3 class pairs, needs >= 7 class pairs)").all()
    assert (con["p_floor_holm"] == 0.75).all()


def test_the_report_section_says_which_models_differ_and_how(table, tables):
    section = architecture_section(table, None, figures=True, tables=tables)
    html = str(section["html"])
    assert re.search(r"gesture: gru vs lstm: gru peaks higher \(max \+0\.0[45]\d \[", html)
    assert "transformer has its end_minus_start rising slower over epochs" in html
    assert "architectures_metrics.png" in section["figures"]
    assert "architectures_gru_metric_max.png" in section["figures"]  # each model's own metric figures
    assert set(section["tables"]) == {"architecture_contrasts", "architecture_lrt", "architecture_replicate_rule"}
