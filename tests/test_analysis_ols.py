"""The authors' OLS models, checked against R's lm (stored and live) and the hand-written lm they replaced."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.ols import authors_ols, lm
from analysis.tables import read_metrics_table

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "jiang_dale_2025"
DATA = Path(__file__).parent / "data"
needs_reference = pytest.mark.skipif(
    not (REFERENCE / "metrics_50epoch.csv").is_file() or not (REFERENCE / "metrics_null_50epoch.csv").is_file(),
    reason=f"the authors' reference tables are not in {REFERENCE} (CI has ../shared)",
)


def _toy(seed=0, n_per=40):
    rng = np.random.default_rng(seed)
    rows = []
    for source in ("gesture", "sentence"):
        for labels in ("real", "shuffled"):
            for pair in ("a/b", "a/c", "b/c"):
                for epoch in range(1, n_per + 1):
                    y = 0.5 + 0.1 * (source == "sentence") + 0.002 * epoch * (pair == "a/c") + rng.normal(0, 0.05)
                    rows.append(
                        {
                            "source": source,
                            "labels": labels,
                            "pair": pair,
                            "replicate": 1,
                            "epoch": epoch,
                            "start": y,
                            "end": y + 0.1,
                            "max": y + 0.2,
                            "tmax": 0.5,
                            "end_minus_start": 0.1,
                        }
                    )
    return pd.DataFrame(rows)


def test_same_numbers_as_the_hand_written_lm_it_replaced():
    """tests/data/ols_toy_before_statsmodels.csv: the toy's non-constant metrics as the QR ``lm`` of
    analysis/ols.py gave them before statsmodels fitted them (commit 07c7daa, printed with %.17g)."""
    before = pd.read_csv(DATA / "ols_toy_before_statsmodels.csv")
    now = authors_ols(_toy(), metrics=("start", "max"))
    assert now[["metric", "model", "formula", "subset"]].equals(before[["metric", "model", "formula", "subset"]])
    for column in ("n", "df_model", "df_resid"):
        assert (now[column].to_numpy() == before[column].to_numpy()).all(), column
    assert np.allclose(now["adj_r2"], before["adj_r2"], rtol=0, atol=1e-13)
    assert np.allclose(now["r2"], before["r2"], rtol=0, atol=1e-13)
    assert np.allclose(now["f"], before["f"], rtol=1e-11, atol=0)
    assert np.allclose(now["p_value"], before["p_value"], rtol=1e-9, atol=1e-13)
    assert np.allclose(now["delta_r2"], before["delta_r2"], rtol=0, atol=1e-13, equal_nan=True)


def test_a_constant_metric_has_no_r2_and_no_test():
    """Rounding noise is all a constant metric leaves to fit (R warns "essentially perfect fit")."""
    out = authors_ols(_toy(), metrics=("tmax",))  # tmax is 0.5 in every toy row
    assert len(out) == 9
    assert out[["r2", "adj_r2", "f", "p_value", "delta_r2"]].isna().all().all()


def test_a_factor_that_explains_nothing_has_r2_and_f_of_zero_not_below():
    """statsmodels' TSS - RSS is a rounding error either side of 0 here; R (and the old lm) gave +1e-30."""
    values = [0.538, 0.343, 0.369, 0.374, 0.987, 0.633, 0.674, 0.33]  # the same in every class pair
    table = pd.DataFrame(
        {"source": "gesture", "labels": "real", "pair": np.repeat(["a/b", "a/c", "b/c"], 8), "tmax": values * 3}
    ).assign(epoch=np.tile(np.arange(1, 9), 3))
    assert lm(table, "tmax", "pair").ess < 0  # the case this guards against
    row = authors_ols(table, metrics=("tmax",)).set_index("model").loc["pair_gesture"]
    assert row["r2"] == 0.0 and row["f"] == 0.0
    assert row["p_value"] == pytest.approx(1.0)
    assert row["adj_r2"] == pytest.approx(-2 / 21, abs=1e-14)  # 1 - (n - 1) / (n - p)


def test_lm_refuses_rank_deficient_designs():
    d = pd.DataFrame({"a": list("xyxyxy"), "b": list("uvuvuv"), "y": np.arange(6.0)})
    with pytest.raises(np.linalg.LinAlgError, match="rank deficient"):
        lm(d, "y", "a + b")
    assert lm(d, "y", "a").df_model == 1


def test_authors_models_and_names():
    out = authors_ols(_toy())
    models = set(out["model"])
    assert {
        "source",
        "labels_gesture",
        "labels_sentence",
        "pair_gesture",
        "pair_sentence",
        "epoch_pair_gesture",
        "epoch_pair_sentence",
        "epoch_vs_epoch_pair_gesture",
        "epoch_vs_epoch_pair_sentence",
    } == models
    assert set(out["metric"]) == {"start", "end_minus_start", "max", "tmax"}
    for column in ("metric", "model", "adj_r2", "f", "p_value"):
        assert column in out.columns


def test_models_the_table_cannot_support_are_noted():
    d = _toy()
    d = d[(d["source"] == "gesture") & (d["labels"] == "real")]
    notes: list[str] = []
    out = authors_ols(d, notes=notes)
    assert "source" not in set(out["model"])
    assert any("one data source" in n for n in notes)
    assert any("labels_gesture" in n for n in notes)


def _r_lm_frame(path: Path) -> pd.DataFrame:
    models = json.loads(path.read_text())["models"]
    frame = pd.DataFrame(models)
    for column in ("adj_r2", "r2", "f", "df_model", "df_resid", "p_value", "n"):
        frame[column] = frame[column].apply(lambda v: v[0])
    if "delta_r2" in frame:  # only in the nested rows
        frame["delta_r2"] = frame["delta_r2"].apply(lambda v: v[0] if isinstance(v, list) else np.nan)
    return frame


def _compare_with_r(r: pd.DataFrame) -> dict[str, float]:
    table = read_metrics_table([REFERENCE / "metrics_50epoch.csv", REFERENCE / "metrics_null_50epoch.csv"])
    ours = authors_ols(table)
    merged = ours.merge(r, on=["metric", "model"], suffixes=("", "_r"), validate="one_to_one")
    assert len(merged) == len(r) == len(ours) == 36
    assert (merged["df_model"] == merged["df_model_r"]).all()
    assert (merged["df_resid"] == merged["df_resid_r"]).all()
    assert (merged["n"] == merged["n_r"]).all()
    diffs = {
        "adj_r2_abs": float(np.max(np.abs(merged["adj_r2"] - merged["adj_r2_r"]))),
        "f_rel": float(np.max(np.abs(merged["f"] / merged["f_r"] - 1))),
        "p_abs": float(np.max(np.abs(merged["p_value"] - merged["p_value_r"]))),
    }
    # statsmodels' QR fit measured 4.9e-15, 3.3e-13 and 5.2e-14 here (the QR lm it replaced: 3.6e-14,
    # 1.2e-11, 1.9e-12)
    assert diffs["adj_r2_abs"] < 1e-13, diffs
    assert diffs["f_rel"] < 1e-11, diffs
    assert diffs["p_abs"] < 1e-12, diffs
    if "delta_r2_r" in merged:  # the authors' "Epoch*Class - Epoch" row: the change in R^2
        nested = merged[merged["model"].str.startswith("epoch_vs_epoch_pair_")]
        assert len(nested) == 8 and nested["delta_r2_r"].notna().all()
        diffs["delta_r2_abs"] = float(np.max(np.abs(nested["delta_r2"] - nested["delta_r2_r"])))
        assert diffs["delta_r2_abs"] < 1e-13, diffs
    return diffs


def test_delta_r2_is_the_change_in_r2_of_the_nested_row():
    """delta_r2 = R^2(metric ~ epoch * pair) - R^2(metric ~ epoch); the second is corr(metric, epoch)^2."""
    table = _toy()
    ours = authors_ols(table)
    nested = ours[ours["model"].str.startswith("epoch_vs_epoch_pair_")]
    assert len(nested) == 2 * 4
    for r in nested.itertuples():
        source = r.model.rsplit("_", 1)[1]
        sub = table[(table["labels"] == "real") & (table["source"] == source)]
        y = sub[r.metric].to_numpy(dtype=float)
        if np.ptp(y) == 0:  # a constant metric of the toy table: R^2 undefined
            continue
        small_r2 = np.corrcoef(y, sub["epoch"])[0, 1] ** 2
        full = ours[(ours["metric"] == r.metric) & (ours["model"] == f"epoch_pair_{source}")].iloc[0]
        assert r.delta_r2 == pytest.approx(full["r2"] - small_r2, abs=1e-12)
        assert r.adj_r2 == full["adj_r2"]  # the larger model's, as summary.lm gives it
    assert ours.loc[~ours["model"].str.startswith("epoch_vs_"), "delta_r2"].isna().all()


@needs_reference
def test_matches_stored_r_lm_on_the_reference_tables():
    """tests/data/r_lm_reference.json was made by tests/data/make_r_reference.R with R 4.2.2."""
    _compare_with_r(_r_lm_frame(DATA / "r_lm_reference.json"))


@needs_reference
@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript not on PATH (apt-get install r-base-core)")
def test_matches_live_r_lm_on_the_reference_tables(tmp_path):
    subprocess.run(
        [
            "Rscript",
            str(DATA / "make_r_reference.R"),
            "--reference",
            str(REFERENCE),
            "--out",
            str(tmp_path),
            "--skip-lme4",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    _compare_with_r(_r_lm_frame(tmp_path / "r_lm_reference.json"))
    # the committed smoother cases are what this R gives too
    live = json.loads((tmp_path / "r_smooth_cases.json").read_text())["cases"]
    stored = json.loads((DATA / "r_smooth_cases.json").read_text())["cases"]
    assert [c["smooth"] for c in live] == [c["smooth"] for c in stored]
