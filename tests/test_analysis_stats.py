"""Mixed-effects models: design matrices, the profiled solver, statsmodels fits, lme4, the tables."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import lmm
from analysis.formula import design_matrix, parse_rhs
from analysis.stats import holm, mixed_effects, model_specs
from analysis.tables import read_metrics_table

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "jiang_dale_2025"
DATA = Path(__file__).parent / "data"


def _panel(seed=1, sources=("gesture", "sentence"), pairs=("a/b", "a/c", "b/c"), replicates=6, epochs=8,
           sd_run=0.05, sd_pair=0.03, sd_slope=0.004, shuffled=0):
    """A balanced synthetic metrics table with run, pair and slope variation."""
    rng = np.random.default_rng(seed)
    rows = []
    for s_i, source in enumerate(sources):
        for p_i, pair in enumerate(pairs):
            pair_effect = rng.normal(0, sd_pair)
            for labels, reps in (("real", replicates), ("shuffled", shuffled)):
                for rep in range(1, reps + 1):
                    u, b = rng.normal(0, sd_run), rng.normal(0, sd_slope)
                    for epoch in range(1, epochs + 1):
                        y = (0.6 + 0.1 * s_i + pair_effect + u + (0.01 + 0.003 * p_i + b) * epoch
                             - 0.15 * (labels == "shuffled") + rng.normal(0, 0.02))
                        e = y + 0.05 + rng.normal(0, 0.02)
                        rows.append({"source": source, "labels": labels, "pair": pair, "replicate": rep,
                                     "epoch": epoch, "start": y, "end": e, "max": max(y, e) + 0.05,
                                     "tmax": min(1.0, 0.3 + 0.01 * epoch + rng.normal(0, 0.05)),
                                     "end_minus_start": e - y})
    d = pd.DataFrame(rows)
    d["run"] = d["source"] + "|" + d["labels"] + "|" + d["pair"] + "|" + d["replicate"].astype(str)
    return d


# --- small pieces -------------------------------------------------------------------------------


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, 0.04, 0.03, 0.2, 0.001, np.nan])
    got = holm(p)
    want = multipletests(p[:5], method="holm")[1]
    assert np.allclose(got[:5], want)
    assert np.isnan(got[5])


def test_design_matrix_coding_and_names():
    d = pd.DataFrame({"pair": ["b/c", "a/b", "a/c", "a/b"], "epoch": [1, 2, 3, 4], "source": list("xyxy")})
    des = design_matrix(d, "epoch * pair")
    assert des.names == ["Intercept", "epoch", "pair[T.a/c]", "pair[T.b/c]", "epoch:pair[T.a/c]",
                         "epoch:pair[T.b/c]"]
    assert des.levels["pair"] == ["a/b", "a/c", "b/c"]  # sorted; the first is the reference
    assert des.X[:, 4].tolist() == [0, 0, 3, 0]
    assert parse_rhs("source * epoch") == [("source",), ("epoch",), ("source", "epoch")]
    assert design_matrix(d, "1").names == ["Intercept"]


# --- the profiled solver against statsmodels' own optimiser ---------------------------------------


@pytest.mark.parametrize("kind", ["intercept", "nested", "slope"])
@pytest.mark.parametrize("reml", [False, True])
def test_profiled_optimum_is_statsmodels_optimum(kind, reml):
    import statsmodels.formula.api as smf

    d = _panel()
    d = d[d["labels"] == "real"].reset_index(drop=True)
    d["pairkey"] = d["source"] + ":" + d["pair"]
    structure = {"intercept": lmm.Structure("intercept", "run"),
                 "nested": lmm.Structure("nested", "pairkey", inner="run"),
                 "slope": lmm.Structure("slope", "run", slope="epoch")}[kind]
    des = design_matrix(d, "source * epoch")
    pf = lmm.profiled_fit(d["start"].to_numpy(), des.X, d, structure, reml=reml)
    assert pf.success
    kwargs = {"intercept": dict(groups="run"),
              "nested": dict(groups="pairkey", re_formula="1", vc_formula={"run": "0 + C(run)"}),
              "slope": dict(groups="run", re_formula="~epoch")}[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cold = smf.mixedlm("start ~ source * epoch", d, **kwargs).fit(reml=reml)
    fit = lmm.fit_mixed(d["start"].to_numpy(), des.X, des.names, d, structure, reml=reml, start=pf)
    assert fit.converged
    # never worse than statsmodels on its own (which, from its default start, sometimes stops early)
    assert fit.llf >= cold.llf - 1e-6
    if not reml:  # ML log-likelihoods have the same constants in both
        assert pf.loglik >= cold.llf - 1e-6
        assert fit.llf == pytest.approx(pf.loglik, abs=1e-5)
    if abs(fit.llf - cold.llf) < 1e-4:  # the same optimum: the same answers
        assert np.allclose(pf.beta, cold.fe_params.to_numpy(), atol=1e-6)
        assert np.allclose(fit.fe_params, cold.fe_params.to_numpy(), atol=1e-6)
        assert np.allclose(fit.bse, cold.bse_fe.to_numpy(), rtol=1e-3)


def test_zero_run_variance_is_reported_as_singular():
    d = _panel(sd_run=0.0, sd_pair=0.0, sd_slope=0.0)
    d = d[d["labels"] == "real"].reset_index(drop=True)
    des = design_matrix(d, "source * epoch")
    pf = lmm.profiled_fit(d["start"].to_numpy(), des.X, d, lmm.Structure("intercept", "run"))
    fit = lmm.fit_mixed(d["start"].to_numpy(), des.X, des.names, d, lmm.Structure("intercept", "run"), start=pf)
    if pf.theta[0] < lmm.BOUNDARY_THETA:  # the likely case: the estimate is exactly zero
        assert fit.on_boundary == ["Var(run)"]


# --- lme4 (stored) --------------------------------------------------------------------------------


needs_reference = pytest.mark.skipif(not (REFERENCE / "metrics_50epoch.csv").is_file(),
                                     reason=f"the authors' reference tables are not in {REFERENCE} (CI has ../shared)")


def _compare_with_lme4(fits: list[dict], metric: str = "tmax") -> None:
    table = read_metrics_table(REFERENCE / "metrics_50epoch.csv")
    real = table[table["labels"] == "real"].reset_index(drop=True)
    real["pairkey"] = real["source"] + ":" + real["pair"]
    for f in fits:
        if f["metric"] != metric:
            continue
        name = f["name"]
        if "pair_re" in name:
            structure = lmm.Structure("nested", "pairkey", inner="run")
        elif "slope" in name:
            structure = lmm.Structure("slope", "run", slope="epoch")
        else:
            structure = lmm.Structure("intercept", "run")
        des = design_matrix(real, "epoch" if name.startswith("null") else "source * epoch")
        y = real[metric].to_numpy()
        pf = lmm.profiled_fit(y, des.X, real, structure, reml=f["reml"])
        if structure.kind == "slope":  # lme4 reports a convergence warning here; ours is at least as good
            assert pf.loglik >= f["loglik"][0] - 1e-6, name
        else:
            assert pf.loglik == pytest.approx(f["loglik"][0], abs=1e-5), name
        assert np.allclose(pf.beta, f["estimate"], rtol=1e-7, atol=1e-9), name
        if f["reml"] and structure.kind != "slope":
            fit = lmm.fit_mixed(y, des.X, des.names, real, structure, reml=True, start=pf)
            assert np.allclose(fit.fe_params, f["estimate"], rtol=1e-7, atol=1e-9), name
            assert np.allclose(fit.bse, f["std_error"], rtol=1e-3), name
            assert fit.llf == pytest.approx(f["loglik"][0], abs=1e-5), name
            prof = lmm.fit_profiled(y, des.X, des.names, real, structure, reml=True)
            assert np.allclose(prof.bse, f["std_error"], rtol=1e-5), name  # lme4's vcov, the same formula


@needs_reference
def test_agrees_with_stored_lme4_fits():
    """tests/data/r_lme4_reference.json: lme4 1.1-31 on the authors' 50-epoch table (real labels)."""
    _compare_with_lme4(json.loads((DATA / "r_lme4_reference.json").read_text())["fits"])


def _has_lme4() -> bool:
    if shutil.which("Rscript") is None:
        return False
    probe = subprocess.run(["Rscript", "-e", "quit(status = !requireNamespace('lme4', quietly = TRUE))"],
                           capture_output=True, timeout=60)
    return probe.returncode == 0


@pytest.mark.slow
@needs_reference
def test_agrees_with_live_lme4(tmp_path):
    if not _has_lme4():
        pytest.skip("Rscript with the lme4 package not available (apt-get install r-base-core r-cran-lme4)")
    subprocess.run(["Rscript", str(DATA / "make_r_reference.R"), "--reference", str(REFERENCE), "--out",
                    str(tmp_path)], cwd=REPO, check=True, capture_output=True, timeout=600)
    _compare_with_lme4(json.loads((tmp_path / "r_lme4_reference.json").read_text())["fits"])


# --- the tables -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results():
    d = _panel(shuffled=3)
    return mixed_effects(d, jobs=1)


def test_model_specs_follow_the_table():
    d = _panel(shuffled=2)
    names = [s.name for s in model_specs(d)]
    assert names[:3] == ["source", "pair_gesture", "pair_sentence"]
    assert {"source_slope", "source_pair_re", "pair_gesture_slope", "labels_gesture", "labels_sentence"} <= set(names)
    notes: list[str] = []
    one = d[(d["source"] == "gesture") & (d["labels"] == "real")]
    names = [s.name for s in model_specs(one, notes=notes)]
    assert names == ["pair_gesture", "pair_gesture_slope"]
    assert any("'source' left out" in n for n in notes)


def test_mixed_effects_tables(results):
    me = results.mixed_effects
    for column in ("metric", "model", "term", "estimate", "std_error", "p_value"):
        assert column in me.columns
    assert set(me["metric"]) == {"start", "end_minus_start", "max", "tmax"}
    start_source = me[(me["metric"] == "start") & (me["model"] == "source")]
    assert start_source["term"].tolist() == ["Intercept", "source[T.sentence]", "epoch", "source[T.sentence]:epoch"]
    # the simulated source difference (0.1) is found
    est = start_source.set_index("term")["estimate"]
    assert est["source[T.sentence]"] == pytest.approx(0.1, abs=0.06)

    lrt = results.lrt
    for column in ("metric", "model", "chisq", "df", "p_value"):
        assert column in lrt.columns
    assert {"source", "pair_gesture", "pair_sentence", "source_pair_re", "labels_gesture"} <= set(lrt["model"])
    row = lrt[(lrt["metric"] == "start") & (lrt["model"] == "pair_gesture")].iloc[0]
    assert row["df"] == 4 and row["chisq"] > 0

    con = results.contrasts
    block = con[(con["metric"] == "start") & (con["model"] == "pair_gesture") & (con["family"] == "epoch_slope")]
    assert len(block) == 3  # 3 pairs -> 3 contrasts
    assert (block["p_holm"] >= block["p_value"] - 1e-15).all()
    assert (block["ci_low"] <= block["estimate"]).all() and (block["estimate"] <= block["ci_high"]).all()

    eff = results.effect_sizes
    assert {"source", "source_pair_re", "labels_gesture", "labels_sentence"} <= set(eff["model"])
    lab = eff[(eff["metric"] == "start") & (eff["model"] == "labels_gesture")
              & (eff["effect"].str.contains("mean epoch"))].iloc[0]
    assert lab["estimate"] == pytest.approx(-0.15, abs=0.07)
    assert lab["d_ci_low"] <= lab["d"] <= lab["d_ci_high"]

    models = results.models
    assert models["converged"].dtype == bool
    assert ((models["r2_marginal"] <= models["r2_conditional"] + 1e-12) | models["r2_marginal"].isna()).all()
    assert isinstance(results.warnings, list)


@pytest.mark.parametrize("kind", ["nested", "slope"])
def test_profiled_engine_agrees_with_statsmodels(kind):
    """The slope and nested models are reported from the profiled fit; statsmodels gives the same."""
    d = _panel(seed=4)
    d = d[d["labels"] == "real"].reset_index(drop=True)
    d["pairkey"] = d["source"] + ":" + d["pair"]
    structure = (lmm.Structure("nested", "pairkey", inner="run") if kind == "nested"
                 else lmm.Structure("slope", "run", slope="epoch"))
    des = design_matrix(d, "source * epoch")
    y = d["max"].to_numpy()
    ours = lmm.fit_profiled(y, des.X, des.names, d, structure)
    theirs = lmm.fit_mixed(y, des.X, des.names, d, structure)
    assert ours.engine == "profiled" and theirs.engine == "statsmodels"
    assert ours.converged and theirs.converged
    assert ours.llf == pytest.approx(theirs.llf, abs=1e-5)
    assert np.allclose(ours.fe_params, theirs.fe_params, rtol=1e-6, atol=1e-8)
    assert np.allclose(ours.bse, theirs.bse, rtol=2e-2)  # lme4-style vs full-Hessian standard errors
    assert ours.scale == pytest.approx(theirs.scale, rel=1e-4)
