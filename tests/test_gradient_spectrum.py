"""The gradient-spectrum probe (docs/science.md 2c): exact group gradients, rank bounds, a
known group difference, the record, the schedule, and an end-to-end headline sweep."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from pipeline.model import SequenceClassifier
from pipeline.probes import PROBES, ProbeContext, build_probes
from pipeline.probes.gradient_spectrum import (
    GradientSpectrumProbe,
    GroupGradients,
    effective_rank,
    evaluation_mode,
    product_svdvals,
    rank_tolerance,
    svdvals,
    weight_matrices,
)
from pipeline.probes.schedule import Schedule, log_spaced
from pipeline.studies.dense_sample.network import SmallVGG
from tests.helpers import REPO, run_cli


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ctx(model, x, y, epoch=1):
    return ProbeContext(epoch, model, x, y, x, y, None, None)


def _full_gradient(model, x, y):
    """The batch gradient of the mean loss, evaluation mode, one backward pass."""
    params = [p for *_, p in weight_matrices(model)]
    with evaluation_mode(model):
        out = model(x)
        logits = out[0] if isinstance(out, tuple) else out
        grads = torch.autograd.grad(nn.functional.cross_entropy(logits, y), params)
    return [g.reshape(p.shape[0], -1) for g, p in zip(grads, params)]


def _models():
    torch.manual_seed(0)
    lstm = SequenceClassifier(time_slices=7, n_features=3, hidden_size=8, n_classes=3)
    # give BatchNorm non-trivial running statistics, as after training
    lstm.norm.running_mean.uniform_(-0.5, 0.5)
    lstm.norm.running_var.uniform_(0.5, 2.0)
    x_lstm = torch.randn(30, 7, 3)
    mlp = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 3))
    x_mlp = torch.randn(30, 6)
    vgg = SmallVGG(size=8, channels=(4, 8), hidden=(16,), n_classes=3)
    x_vgg = torch.randn(30, 1, 8, 8)
    y = torch.arange(30) % 3
    return {"lstm": (lstm, x_lstm, y), "mlp": (mlp, x_mlp, y), "conv": (vgg, x_vgg, y)}


@pytest.mark.parametrize("name", ["lstm", "mlp", "conv"])
def test_group_gradients_sum_to_the_batch_gradient(name):
    model, x, y = _models()[name]
    groups = np.array([0, 1, 1, 2, 2, 2] * 5)  # a grouping unrelated to the classes
    with evaluation_mode(model):
        result = GroupGradients(model).compute(x, y, groups)
    full = _full_gradient(model, x, y)
    kinds = set()
    for (layer, kind, _, _), g_full in zip(weight_matrices(model), full):
        kinds.add(kind)
        total = sum(result["gradients"][g][layer] for g in result["groups"])
        torch.testing.assert_close(total, g_full, rtol=1e-5, atol=1e-7)
        if kind == "linear":
            # G_g = Delta_g^T A_g for every group
            for g in result["groups"]:
                d, a = result["deltas"][g][layer], result["activations"][g][layer]
                torch.testing.assert_close(d.T @ a, result["gradients"][g][layer], rtol=1e-5, atol=1e-8)
    expected = {"lstm": {"lstm_ih", "lstm_hh", "linear"}, "mlp": {"linear"}, "conv": {"conv", "linear"}}[name]
    assert kinds == expected


def test_group_rank_never_exceeds_samples_or_dimensions():
    torch.manual_seed(1)
    steps = 4
    lstm = SequenceClassifier(time_slices=steps, n_features=5, hidden_size=16, n_classes=2)
    mlp = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 2))
    conv = SmallVGG(size=8, channels=(4, 8), hidden=(16,), n_classes=2)
    # groups of 1, 2 and 3 samples, so that the sample bound is the binding one
    groups = np.array([0, 1, 1, 2, 2, 2])
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    cases = [
        (lstm, torch.randn(6, steps, 5), steps),
        (mlp, torch.randn(6, 20), 1),
        (conv, torch.randn(6, 1, 8, 8), None),
    ]
    for model, x, per_sample in cases:
        with evaluation_mode(model):
            result = GroupGradients(model).compute(x, y, groups)
        for layer, kind, _module, _ in weight_matrices(model):
            for g in result["groups"]:
                n_g = int((groups == g).sum())
                mat = result["gradients"][g][layer].double()
                if kind == "linear":
                    rows = n_g  # one outer product per sample
                elif kind == "conv":
                    rows = n_g * (8 // (2 ** (0 if layer.startswith("blocks.0") else 1))) ** 2
                else:
                    rows = n_g * per_sample  # one per sample and time step
                bound = min(rows, *mat.shape)
                s = svdvals(mat)
                rank = int((s > rank_tolerance(s.numpy(), mat.shape)).sum())
                assert rank <= bound, (layer, g, rank, bound)
                if kind == "linear":
                    assert rank <= n_g
    # the bound is reached where it can be: 3 samples of a 20 -> 32 linear layer give rank 3
    with evaluation_mode(mlp):
        result = GroupGradients(mlp).compute(torch.randn(6, 20), y, groups)
    s = svdvals(result["gradients"][2]["0.weight"])
    assert int((s > rank_tolerance(s.numpy(), (32, 20))).sum()) == 3


def test_factored_singular_values_equal_the_direct_ones():
    torch.manual_seed(2)
    delta, act = torch.randn(7, 40), torch.randn(7, 30)
    direct = svdvals(delta.double().T @ act.double())
    factored = product_svdvals(delta, act)
    torch.testing.assert_close(factored, direct[:7], rtol=1e-10, atol=1e-10)
    assert effective_rank([1.0]) == 1.0
    assert effective_rank([2.0, 2.0, 2.0, 0.0]) == pytest.approx(3.0)
    assert effective_rank([1.0, 1e-12], tol=1e-9) == 1.0


def _mixture(seed, n=200, d=20):
    """Class 0: tight cluster around +e1 (sd 0.3); class 1: around -e1 with sd 1.5, which
    spills into class 0's region: the harder class (about twice the loss after training)."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.zeros(d)
    mu[0] = 1.0
    x = torch.cat([mu + 0.3 * torch.randn(n, d, generator=g), -mu + 1.5 * torch.randn(n, d, generator=g)])
    return x, torch.cat([torch.zeros(n), torch.ones(n)]).long()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_harder_class_spreads_its_gradient_over_more_directions(seed):
    """Expected direction (what the analysis reads): the group the network finds harder has
    a gradient spread over more directions (higher effective rank) in the first layer, because
    its errors come from inputs scattered over many directions, while the easy group's few
    remaining errors all point the same way (near rank one). The same holds for its output
    deltas and input activations. (The norms need not differ that way: the easy group's
    per-sample gradients add up coherently.)"""
    x, y = _mixture(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        per_sample = nn.functional.cross_entropy(model(x), y, reduction="none")
    assert per_sample[y == 1].mean() > 1.5 * per_sample[y == 0].mean()  # class 1 is the harder one
    rows = GradientSpectrumProbe(batch_size=400).compute(_ctx(model, x, y))
    er = rows[(rows.stat == "effective_rank") & (rows.layer == "0.weight")].pivot_table(
        index="kind", columns="group", values="value"
    )
    assert er.loc["gradient", "1"] > 2 * er.loc["gradient", "0"]
    assert er.loc["delta", "1"] > er.loc["delta", "0"]
    assert er.loc["activation", "1"] > er.loc["activation", "0"]


def test_probe_rows_schedule_and_side_effects():
    model, x, y = _models()["lstm"]
    model.train()
    probe = GradientSpectrumProbe(batch_size=12, top_k=3, schedule="log")
    rng_before = torch.get_rng_state()
    rows = probe.measure(_ctx(model, x, y, epoch=1))
    assert torch.equal(rng_before, torch.get_rng_state())  # draws no random numbers
    assert all(m.training for m in model.modules())  # modes restored
    assert list(rows.columns) == [
        "epoch",
        "layer",
        "layer_kind",
        "group_by",
        "group",
        "n_samples",
        "kind",
        "stat",
        "index",
        "value",
    ]
    assert rows.epoch.dtype == np.int32 and rows.value.dtype == np.float64
    assert set(rows.group) == {"0", "1", "2", "all"}
    assert set(rows.n_samples[rows.group == "0"]) == {4}  # 12 // 3 classes, stratified
    assert set(rows.layer) == {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "readout.weight"}
    assert set(rows[rows.layer == "readout.weight"].kind) == {"gradient", "activation", "delta"}
    assert set(rows[rows.layer != "readout.weight"].kind) == {"gradient"}
    assert rows[rows.stat == "sv"]["index"].max() == 3
    # sorted singular values
    sv = rows[(rows.stat == "sv") & (rows.group == "all") & (rows.layer == "lstm.weight_hh_l0")]
    assert (np.diff(sv.sort_values("index").value.to_numpy()) <= 0).all()
    # schedule log: epoch 5 is skipped (empty frame with the same columns), 6 and 10 measured
    assert probe.measure(_ctx(model, x, y, epoch=5)).empty
    assert list(probe.measure(_ctx(model, x, y, epoch=5)).columns) == list(rows.columns)
    assert not probe.measure(_ctx(model, x, y, epoch=6)).empty
    # the same measurement twice gives identical rows
    pd.testing.assert_frame_equal(rows, probe.measure(_ctx(model, x, y, epoch=1)))


def test_groupings_and_config_errors():
    model, x, y = _models()["mlp"]
    rows = GradientSpectrumProbe(group_by="correct", batch_size=30).compute(_ctx(model, x, y))
    assert set(rows.group) <= {"correct", "incorrect", "all"}
    probe = GradientSpectrumProbe(group_by="site", batch_size=30)
    with pytest.raises(ValueError, match="group_by='site'.*available: class, prediction, correct"):
        probe.compute(_ctx(model, x, y))
    probe.set_label_column("site", np.array(["a", "b"] * 15))
    assert set(probe.compute(_ctx(model, x, y)).group) == {"a", "b", "all"}
    with pytest.raises(ValueError, match="kinds.*allowed"):
        GradientSpectrumProbe(kinds=["hessian"])
    with pytest.raises(ValueError, match="schedule='sometimes'; allowed: every_epoch, log, list"):
        GradientSpectrumProbe(schedule="sometimes")
    with pytest.raises(ValueError, match="layers"):
        GradientSpectrumProbe(layers=["nope.weight"]).compute(_ctx(model, x, y))


def test_registry_config_and_schedule():
    assert {"knn", "gradient_spectrum", "category_structure"} <= set(PROBES)
    from tests.helpers import run_config

    cfg = run_config()
    assert not cfg.probe.gradient_spectrum.enabled and not cfg.probe.category_structure.enabled
    assert [p.name for p in build_probes(cfg.probe)] == ["knn"]  # both off: the run is as before
    cfg = run_config("probe.gradient_spectrum.enabled=true", "probe.gradient_spectrum.group_by=correct")
    probes = build_probes(cfg.probe)
    assert [p.name for p in probes] == ["knn", "gradient_spectrum"] and probes[1].group_by == "correct"
    assert log_spaced(50) == [1, 2, 3, 4, 6, 10, 16, 25, 40]
    sched = Schedule("log", epochs=[50])
    assert [e for e in range(1, 51) if sched.due(e)] == [1, 2, 3, 4, 6, 10, 16, 25, 40, 50]
    assert [e for e in range(1, 8) if Schedule("list", epochs=[2, 5]).due(e)] == [2, 5]


@pytest.mark.slow
def test_headline_sweep_with_the_probe_and_the_spectra_section(tmp_path):
    # seeds 0 and 25 are two replicates of the same cell (gesture/pair 0) of the counterbalanced design
    result = run_cli(
        "-m",
        "seed=0,25",
        "trainer.epochs=2",
        "probe.gradient_spectrum.enabled=true",
        "probe.gradient_spectrum.schedule=every_epoch",
        f"paths.root={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((tmp_path / "headline" / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        rows = pd.read_parquet(run / "gradient_spectrum.parquet")
        assert sorted(rows.epoch.unique()) == [1, 2] and set(rows.group) == {"0", "1", "all"}
        summary = json.loads((run / "summary.json").read_text())
        assert summary["seconds"]["probes"]["gradient_spectrum"] > 0
    out = tmp_path / "report"
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis.companion.spectra",
            "--root",
            str(tmp_path),
            "--study",
            "headline",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    html = (out / "spectra.html").read_text()
    assert "Gradient spectra by group" in html and "data:image/png;base64," in html
    tests = pd.read_csv(out / "spectra_group_tests.csv")
    assert {"cell", "layer", "epoch", "stat", "p", "p_holm", "n_runs"} <= set(tests.columns)
    assert set(tests.cell) == {"gesture/pair 0, real labels"} and (tests.n_runs == 2).all()
    tested = tests[tests.p.notna()]
    assert len(tested) and (tested.p_holm >= tested.p - 1e-12).all()
    assert set(tested.layer) >= {"lstm.weight_hh_l0"} and set(tested.epoch) == {1, 2}


@pytest.mark.slow
def test_sequence_run_measures_epoch_zero_without_changing_training():
    from pipeline.studies import RunContext, get_runner
    from tests.helpers import run_config

    base = [
        "seed=0",
        "trainer.epochs=2",
        "probe.gradient_spectrum.enabled=true",
        "probe.gradient_spectrum.schedule=every_epoch",
    ]
    plain = get_runner("sequence").run(run_config(*base), RunContext(0, lambda *a: None))
    init = get_runner("sequence").run(
        run_config(*base, "probe.gradient_spectrum.at_init=true"), RunContext(0, lambda *a: None)
    )
    rows = init.tables["gradient_spectrum"]
    assert sorted(rows.epoch.unique()) == [0, 1, 2]
    # the later epochs and the training record are bit-identical to the run without epoch 0
    later = rows[rows.epoch > 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(later, plain.tables["gradient_spectrum"].reset_index(drop=True))
    pd.testing.assert_frame_equal(init.readouts, plain.readouts)


def test_spectra_min_p_per_family():
    from analysis.companion.spectra import spectra_min_p

    tested = pd.DataFrame(
        {
            "stat": ["effective_rank"] * 54 + ["sv1"] * 2,
            "n_runs": [4] * 54 + [6, 6],
            "groups": ["a | b | c | d | e"] * 54 + ["a | b"] * 2,
        }
    )
    floors = spectra_min_p(tested).set_index("family")
    rank = floors.loc["gradient effective_rank"]
    # the case: 5 groups, 4 replicates, 54 tests -> 0.0030 raw, never below 0.05 after Holm
    assert rank.test == "Friedman, 5 groups" and rank.smallest_p == pytest.approx(0.0030, abs=5e-5)
    assert not rank["can_reject_at_0.05"]
    sv = floors.loc["gradient sv1"]
    assert sv.smallest_p == pytest.approx(2 / 64) and sv.smallest_p_after_holm == pytest.approx(4 / 64)
