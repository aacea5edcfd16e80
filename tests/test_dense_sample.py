"""The dense-sample study (docs/science.md 2a): the glyph generator, the VGG, the
category-structure probe, the learning-curve fits, the config, and an end-to-end run."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import ConfigError
from pipeline.probes import ProbeContext
from pipeline.probes.category_structure import CategoryStructureProbe, category_measures
from pipeline.studies.dense_sample.data import CLASS_NAMES, distortion_groups, generate, split_per_class
from pipeline.studies.dense_sample.fits import checkpoint_steps, fit_learning_curve
from pipeline.studies.dense_sample.network import SmallVGG, n_weights
from tests.helpers import REPO, run_cli, run_config

SMALL = [
    "study=dense_sample",
    "study.data.per_class=120",
    "study.data.train_per_class=100",
    "trainer.epochs=2",
    "trainer.batch_size=25",
    "probe.category_structure.per_class=15",
    "study.model.channels=[8,16]",
    "study.model.hidden=[64]",
    "study.data.noise=0.2",
]


def test_generator_is_deterministic_and_dense():
    a, b = generate(3, per_class=40), generate(3, per_class=40)
    assert a.x.dtype == np.float32 and a.x.shape == (200, 1, 16, 16)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) and np.array_equal(a.distortion, b.distortion)
    assert not np.array_equal(a.x, generate(4, per_class=40).x)
    assert list(np.bincount(a.y)) == [40] * 5 and a.class_names == CLASS_NAMES
    train, test = split_per_class(a.y, 30)
    assert len(train) == 150 and len(test) == 50 and not set(train) & set(test)
    assert set(distortion_groups(a.distortion)) == {"low", "high"}
    # the default study: 5 classes x >= 500 exemplars
    cfg = run_config("study=dense_sample")
    assert cfg.study.data.train_per_class >= 500 and cfg.study.data.per_class > cfg.study.data.train_per_class
    # the mean glyph images of the classes differ (the tokens are distinct)
    means = np.stack([a.x[a.y == c].mean(0).ravel() for c in range(5)])
    d = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert (d[~np.eye(5, dtype=bool)] > 0.5).all()


def test_vgg_has_about_1_2_million_weights():
    model = SmallVGG()
    # counted by hand: 6 conv layers (3x3 kernels + biases), FC 512 -> 1024 -> 384 -> 5 (with biases)
    convs = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
    fcs = [(128 * 2 * 2, 1024), (1024, 384), (384, 5)]
    assert n_weights(model) == sum(9 * a * b + b for a, b in convs) + sum(a * b + b for a, b in fcs) == 1_207_269
    logits, features = model(torch.zeros(2, 1, 16, 16))
    assert logits.shape == (2, 5) and features.shape == (2, 384)
    assert model.probe_layers == ["blocks.0", "blocks.1", "blocks.2", "fcs.0", "fcs.1", "readout"]


def test_category_measures_on_known_clusters():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    r = centres[labels] + rng.normal(size=(60, 2))
    rows = pd.DataFrame(category_measures(r, labels), columns=["measure", "a", "b", "value"])
    get = lambda m: rows[rows.measure == m].value.iloc[0]
    assert get("between_within_ratio") > 4 and get("category_rdm_corr") > 0.8 and get("ncm_accuracy") == 1.0
    rdm = rows[rows.measure == "class_mean_rdm"].pivot(index="a", columns="b", values="value").to_numpy()
    assert np.allclose(rdm, rdm.T) and np.allclose(np.diag(rdm), 0)
    assert rdm[0, 1] == pytest.approx(10, abs=1.0)
    # no structure: shuffled labels give a ratio near 1
    shuffled = pd.DataFrame(category_measures(r, rng.permutation(labels)), columns=["measure", "a", "b", "value"])
    assert abs(shuffled[shuffled.measure == "between_within_ratio"].value.iloc[0] - 1) < 0.15
    # the embedding: every exemplar twice (two axes), sign convention: class 0 on the negative side
    emb = rows[rows.measure.str.startswith("embedding")].pivot(index=["a", "b"], columns="measure", values="value")
    assert len(emb) == 60
    first = emb.xs(0, level="b")
    assert first.embedding_1.mean() <= 0 and first.embedding_2.mean() <= 0


def test_category_probe_reads_every_layer_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = SmallVGG(size=8, channels=(4, 8), hidden=(16,))
    model.train()
    x = torch.randn(40, 1, 8, 8)
    y = torch.arange(40) % 5
    probe = CategoryStructureProbe(per_class=4, schedule="log")
    rng = torch.get_rng_state()
    rows = probe.measure(ProbeContext(1, model, x, y, x, y, None, None))
    assert torch.equal(rng, torch.get_rng_state()) and all(m.training for m in model.modules())
    assert list(rows.columns) == ["epoch", "layer", "layer_index", "measure", "a", "b", "value"]
    assert list(dict.fromkeys(rows.layer)) == ["input", "blocks.0", "blocks.1", "fcs.0", "readout"]
    assert sorted(rows.layer_index.unique()) == [0, 1, 2, 3, 4]
    assert len(rows[(rows.measure == "embedding_1") & (rows.layer == "input")]) == 20
    assert probe.measure(ProbeContext(5, model, x, y, x, y, None, None)).empty  # log schedule skips 5
    with pytest.raises(ValueError, match="split='val'; allowed: train, test"):
        CategoryStructureProbe(split="val")


@pytest.mark.parametrize("form", ["hyperbolic", "exponential"])
def test_curve_fits_recover_the_generating_form(form):
    rng = np.random.default_rng(1)
    t = np.arange(0, 300, dtype=float)
    clean = 0.9 - 0.7 / (1 + 0.05 * t) if form == "hyperbolic" else 0.9 - 0.7 * np.exp(-0.02 * t)
    fits = {f["form"]: f for f in fit_learning_curve(t, clean + rng.normal(0, 0.02, len(t)))}
    assert fits[form]["aic"] < fits[{"hyperbolic": "exponential", "exponential": "hyperbolic"}[form]]["aic"]
    assert fits[form]["a"] == pytest.approx(0.9, abs=0.03) and fits[form]["r2"] > 0.9
    assert all(f["bic"] - f["aic"] == pytest.approx(4 * np.log(len(t)) - 8) for f in fits.values())


def test_each_replicate_draws_its_own_data_set():
    from pipeline.studies.dense_sample.runner import data_seed

    seeds = [data_seed(run_config(*SMALL, f"seed={r}")) for r in range(3)]
    assert len(set(seeds)) == 3 and seeds[0] == data_seed(run_config(*SMALL, "seed=0"))  # distinct, reproducible
    assert run_config(*SMALL, "seed=1").design.data_seed == seeds[1]
    # another data.seed gives other draws; draw=fixed gives data.seed itself to every replicate
    assert data_seed(run_config(*SMALL, "seed=1", "study.data.seed=5")) not in seeds
    assert {data_seed(run_config(*SMALL, f"seed={r}", "study.data.draw=fixed")) for r in range(3)} == {0}
    a = generate(seeds[0], per_class=20, size=16)
    b = generate(seeds[1], per_class=20, size=16)
    assert not np.array_equal(a.x, b.x)
    with pytest.raises(ConfigError, match="study.data.draw='shared': allowed values are replicate, fixed"):
        run_config(*SMALL, "study.data.draw=shared")


def test_checkpoints_and_config_validation():
    assert checkpoint_steps(250, 50, 4) == [0, 1, 2, 3, 6, 10, 18, 32, 50, 56, 100, 150, 178, 200, 250]
    cfg = run_config(*SMALL)
    assert cfg.design.cell == "train_per_class=100" and cfg.design.class_names == list(CLASS_NAMES)
    from pipeline.identity import run_id

    assert run_id(cfg).startswith("dense_sample-train_per_class100-r000-")
    # keys of the headline study do not change a dense-sample run's identity
    assert run_id(run_config(*SMALL, "split.test_fraction=0.3", "model.hidden_size=64")) == run_id(cfg)
    with pytest.raises(ConfigError, match="labels='shuffled'.*allowed: real"):
        run_config(*SMALL, "labels=shuffled")
    with pytest.raises(ConfigError, match=r"probe.category_structure.per_class=30.*allowed: 2..20"):
        run_config(*SMALL, "probe.category_structure.per_class=30")
    with pytest.raises(ConfigError, match="trainer.optimizer='rmsprop': allowed values are adam, sgd"):
        run_config(*SMALL, "trainer.optimizer=rmsprop")
    with pytest.raises(ConfigError, match="train_per_class=120 must be < study.data.per_class"):
        run_config(*[o for o in SMALL if "train_per_class" not in o], "study.data.train_per_class=120")


def test_timing_claim_is_never_underpowered_by_its_own_effect():
    """The timing claim is one test: a non-significant mean rho 'does not hold', whatever its own effect size
    (power from the effect observed would call every non-significant result underpowered: needs > 1,000 runs
    at d = 0.1)."""
    from analysis.companion.dense_sample import HEADLINE_TIMING, dense_claims

    emergence = pd.DataFrame(
        {"layer": ["a", "b"], "n_runs": 8, "gain_mean": [0.1, 0.2], "d": 3.0, "sign_flip_p": 2 / 2**8, "t_p": 1e-6}
    ).assign(p_holm=[2 * 2 / 2**8] * 2)
    timing = pd.DataFrame([{"test": HEADLINE_TIMING, "n": 8, "statistic": -0.06, "p": 0.77, "p_t": 0.79, "d": -0.1}])
    claims = dense_claims(emergence, timing).set_index("claim")["verdict"]
    assert claims.iloc[0] == "holds" and claims.iloc[1] == "does not hold"


@pytest.mark.slow
def test_dense_sample_run_end_to_end_and_report(tmp_path):
    args = [
        *SMALL,
        "probe.gradient_spectrum.enabled=true",
        "probe.gradient_spectrum.group_by=distortion",
        "probe.gradient_spectrum.batch_size=50",
    ]
    result = run_cli("-m", *args, "seed=0,1", f"paths.root={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((tmp_path / "dense_sample" / "runs").iterdir())
    assert len(runs) == 2
    run = runs[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 40 and summary["checkpoints"][0] == 0 and summary["checkpoints"][-1] == 40
    cs = pd.read_parquet(run / "category_structure.parquet")
    assert {"step", "checkpoint", "epoch"} <= set(cs.columns)
    ratio = cs[cs.measure == "between_within_ratio"].pivot_table(index="step", columns="layer", values="value")
    # class separability rises with training beyond the input, most in the readout
    hidden = [c for c in ratio.columns if c != "input"]
    assert (ratio.loc[40, hidden] > ratio.loc[0, hidden]).all()
    assert ratio.loc[40, "readout"] - ratio.loc[0, "readout"] > ratio.loc[40, "blocks.0"] - ratio.loc[0, "blocks.0"]
    assert ratio["input"].nunique() == 1
    gs = pd.read_parquet(run / "gradient_spectrum.parquet")
    assert set(gs.group) == {"low", "high", "all"} and sorted(gs.step.unique()) == [0, 20, 40]
    fits = pd.read_parquet(run / "curve_fits.parquet")
    assert set(fits.form) == {"hyperbolic", "exponential"} and set(fits.curve) == {"batch", "probe_set"}
    # the same config and seed give bit-identical records
    again = run_cli(*args, "seed=0", f"paths.root={tmp_path / 'again'}")
    assert again.returncode == 0, again.stderr[-3000:]
    twin = tmp_path / "again" / "dense_sample" / "runs" / run.name
    for name in ("category_structure", "learning_curve", "gradient_spectrum", "readouts"):
        assert (run / f"{name}.parquet").read_bytes() == (twin / f"{name}.parquet").read_bytes(), name

    out = tmp_path / "report"
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis.companion.dense_sample",
            "--root",
            str(tmp_path),
            "--study",
            "dense_sample",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    html = (out / "dense_sample.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and "Hyperbolic vs exponential" in html
    timing = pd.read_csv(out / "dense_sample_layer_timing.csv")
    assert set(timing.layer) == {"input", "blocks.0", "blocks.1", "fcs.0", "readout"}
    # the spectra section reads the dense-sample study's spectra too (Friedman-free: two groups)
    from analysis.companion import spectra

    sec = spectra.section(tmp_path / "dense_sample", out)
    assert "group_tests" in sec["tables"] and len(sec["tables"]["group_tests"])
    # and the report puts it beside the dense-sample section, with the two replicates' own data draws
    from analysis.companion import companion_sections

    titles = [s["title"] for s in companion_sections(tmp_path, "dense_sample", tmp_path / "combined")]
    assert titles == ["Category structure in the dense-sample study", "Gradient spectra by group"]
    seeds = {json.loads((r / "summary.json").read_text())["data_seed"] for r in runs}
    assert len(seeds) == 2
