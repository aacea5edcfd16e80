"""The multitasking network and its pseudo-kernel: exact gradients, the kernel against autograd and
against a real SGD step, the study end to end with its report section."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import ConfigError
from pipeline.studies.multitask import network as mt
from pipeline.studies.multitask.data import MultitaskEnv
from tests.helpers import REPO, run_cli, run_config

ENV = MultitaskEnv()


def _data(seed=0, n_train=54, n_query=9):
    rng = np.random.default_rng(seed)
    order = rng.permutation(81)
    single = ENV.task_sets([1])
    return ENV.dataset(single, np.sort(order[:n_train])), ENV.dataset(single, np.sort(order[n_train:][:n_query]))


def _torch_net(params):
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}

    def f(p, x, t):
        h = torch.sigmoid(x @ p["W_xh"].T + t @ p["W_th"].T - 2.0)
        return torch.sigmoid(h @ p["W_hy"].T + t @ p["W_ty"].T - 2.0)

    return tp, f


def test_environment():
    assert len(ENV.tasks) == 12 and ENV.stimuli.shape == (81, 4)
    assert [len(ENV.task_sets([k])) for k in (1, 2, 3)] == [12, 36, 24]
    # a concurrent set: in0 -> out2 and in3 -> out0, stimulus (2, 0, 1, 1)
    combo = (ENV.tasks.index((0, 2)), ENV.tasks.index((3, 0)))
    stimulus = int(np.flatnonzero((ENV.stimuli == [2, 0, 1, 1]).all(1))[0])
    d = ENV.dataset([combo], [stimulus])
    assert d.x[0].reshape(4, 3).argmax(1).tolist() == [2, 0, 1, 1]
    assert np.flatnonzero(d.t[0]).tolist() == sorted(combo)
    y = d.y[0].reshape(3, 3)
    assert y[2].tolist() == [0, 0, 1] and y[0].tolist() == [0, 1, 0] and y[1].sum() == 0
    assert d.labels[0] == "in0>out2+in3>out0"


def test_gradients_match_autograd():
    train, _ = _data()
    params = mt.init_params(np.random.default_rng(1), ENV, 200, 1.0)
    tp, f = _torch_net(params)
    x, t, y = (torch.tensor(a) for a in (train.x[:40], train.t[:40], train.y[:40]))
    ((f(tp, x, t) - y) ** 2).sum(1).mean().backward()
    ours = mt.gradients(params, train.x[:40], train.t[:40], train.y[:40])
    for k in mt.PARAMS:
        assert np.allclose(ours[k], tp[k].grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("init_range", [0.1, 1.0])
def test_kernel_matches_per_sample_autograd(init_range):
    from torch.func import grad, jacrev, vmap

    train, query = _data()
    train, query = train.subset(np.arange(0, 648, 9)), query.subset(np.arange(0, 108, 7))
    params = mt.init_params(np.random.default_rng(2), ENV, 200, init_range)
    tp, f = _torch_net(params)
    p0 = {k: v.detach() for k, v in tp.items()}

    def sample_loss(p, x, t, y):
        return ((f(p, x[None], t[None])[0] - y) ** 2).sum()

    def out(p, x, t):
        return f(p, x[None], t[None])[0]

    tx, tt, ty = (torch.tensor(a) for a in (train.x, train.t, train.y))
    qx, qt = torch.tensor(query.x), torch.tensor(query.t)
    g = vmap(grad(sample_loss), in_dims=(None, 0, 0, 0))(p0, tx, tt, ty)  # per-sample loss gradients
    j = vmap(jacrev(out), in_dims=(None, 0, 0))(p0, qx, qt)  # d f_k(x_q) / d theta
    reference = sum(torch.einsum("qk...,n...->qkn", j[k], g[k]) for k in mt.PARAMS).numpy()
    ours = mt.kernel(params, query, train)
    assert ours.shape == (len(query), 9, len(train))
    assert np.allclose(ours, reference, rtol=1e-9, atol=1e-12)
    # the prediction without forming K is the kernel's mean over the training set
    assert np.allclose(mt.predicted_change(params, query, train, 0.01), -0.01 * ours.mean(2), atol=1e-14)


@pytest.mark.parametrize("init_range", [0.1, 1.0])
def test_one_step_kernel_prediction_matches_a_real_sgd_step(init_range):
    """The issue's check: at a small learning rate the kernel's prediction correlates with the real change
    of a full-batch SGD step above 0.999 (at initialisation and part-way through training)."""
    train, query = _data()
    params = mt.init_params(np.random.default_rng(3), ENV, 200, init_range)
    for _ in range(2):
        k = mt.kernel(params, query, train)
        predicted = -1e-3 * k.mean(2)
        actual = mt.actual_change(params, query, train, 1e-3)
        assert np.corrcoef(predicted.ravel(), actual.ravel())[0, 1] > 0.999
        assert np.linalg.norm(predicted - actual) / np.linalg.norm(actual) < 0.02
        for _ in range(20):  # then train a little and check again
            mt.train_epoch(params, train, 2.0, 32, np.random.default_rng(4))


def test_representation_sharing_and_clustering_helpers():
    params = mt.init_params(np.random.default_rng(0), ENV, 200, 0.1)
    sim = mt.representation_sharing(params, ENV, np.arange(20))
    assert sim.shape == (12, 12) and np.allclose(np.diag(sim), 1) and np.allclose(sim, sim.T)
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(c, 0.1, (20, 2)) for c in ((0, 0), (4, 0), (0, 4))])
    truth = np.repeat(["a", "b", "c"], 20)
    assert mt.adjusted_rand_index(truth, mt.kmeans(points, 3, rng)) == 1.0
    assert abs(mt.adjusted_rand_index(truth, rng.permutation(truth))) < 0.1


@pytest.mark.parametrize("n_query,n_train", [(5, 40), (30, 20)])
def test_output_components_match_an_svd(n_query, n_train):
    """Both Gram routes (queries fewer than samples, or more) give the singular values and the top right
    singular vectors of the output group's kernel matrix."""
    k = np.random.default_rng(n_query).normal(size=(n_query, 9, n_train))
    values, vectors = mt.output_components(k, [3, 4, 5], 4)
    mat = k[:, 3:6, :].reshape(-1, n_train)
    _, sv, vt = np.linalg.svd(mat, full_matrices=False)
    assert np.allclose(values, sv, rtol=1e-9, atol=1e-9 * sv[0])
    assert np.allclose(np.abs(vectors.T @ vt[:4].T), np.eye(4), atol=1e-8)  # the same vectors up to sign
    assert all(v[np.abs(v).argmax()] > 0 for v in vectors.T)


def _rebuilt(cfg, ctx):
    """The run's initial weights, single-task training set and query set, rebuilt from its seeds."""
    from pipeline.studies.common import instance_seed

    s = cfg.study
    split, init_rng, _, _, draw_rng = (
        np.random.default_rng(x) for x in np.random.SeedSequence(instance_seed(cfg, ctx)).spawn(5)
    )
    stimuli = split.permutation(81)
    train_stim, test_stim = np.sort(stimuli[: int(s.n_train_stimuli)]), np.sort(stimuli[int(s.n_train_stimuli) :])
    single = ENV.task_sets([1])
    train = ENV.dataset(single, train_stim)
    if int(s.n_train_draws):
        train = train.subset(np.sort(draw_rng.integers(0, len(train), int(s.n_train_draws))))
    query = ENV.dataset(single, test_stim[: int(s.kernel.n_query_stimuli)])
    params = mt.init_params(init_rng, ENV, int(s.hidden), float(s.init_range[s.init]))
    return params, train, query


PROTOCOLS = [
    ("multitask", "standard", []),
    ("multitask_pyle2023", "large", ["trainer.single_epochs=2", "trainer.finetune_epochs=1"]),
]


@pytest.mark.parametrize("study,init,extra", PROTOCOLS)
def test_recorded_prediction_is_the_kernel_sum(study, init, extra):
    """The run's recorded one-step prediction equals -lr/N sum_n K (mean loss) or -lr sum_n K (summed loss),
    with K formed explicitly (mt.kernel) from the same initial weights, training set and query set."""
    from pipeline.studies import RunContext, get_runner

    cfg = run_config(
        f"study={study}", f"study.init={init}", "trainer.single_epochs=1", "trainer.finetune_epochs=1", "seed=0", *extra
    )
    ctx = RunContext(0, lambda *a: None)
    recorded = get_runner("multitask").run(cfg, ctx).tables["kernel_prediction"]
    recorded = recorded[recorded.stage == "init"]
    s = cfg.study
    params, train, query = _rebuilt(cfg, ctx)
    k = mt.kernel(params, query, train)
    scale = 1.0 / len(train) if cfg.trainer.loss_reduction == "mean" else 1.0
    expected = -float(s.kernel.probe_lr) * scale * k.sum(2)
    got = recorded.sort_values(["query", "unit"]).predicted.to_numpy().reshape(expected.shape)
    assert np.allclose(got, expected, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("study,init,extra", PROTOCOLS)
def test_recorded_per_output_kernel_structure_matches_eigh(study, init, extra):
    """Each output group's kernel at init, rebuilt from the run's seeds and eigen-decomposed with numpy's
    eigh of its Gram matrix over training samples, gives the recorded spectrum and top-eigenvector measures;
    which samples belong to a group is read off the targets (a task's target lights one unit of its group)."""
    from pipeline.studies import RunContext, get_runner

    cfg = run_config(
        f"study={study}", f"study.init={init}", "trainer.single_epochs=1", "trainer.finetune_epochs=1", "seed=3", *extra
    )
    ctx = RunContext(3, lambda *a: None)
    result = get_runner("multitask").run(cfg, ctx)
    recorded = result.summary["kernel"]["init"]["output_groups"]
    table = result.tables["kernel_output_eigen"]
    table = table[table.stage == "init"]
    params, train, query = _rebuilt(cfg, ctx)
    assert len(train) <= int(cfg.study.kernel.max_train)  # no subsample: the kernel spans the whole set
    k = mt.kernel(params, query, train)
    labels = train.labels
    n_comp = int(cfg.study.kernel.n_components)
    for g in range(3):
        m = k[:, 3 * g : 3 * g + 3, :].reshape(-1, len(train))
        values, vectors = np.linalg.eigh(m.T @ m)
        values, vectors = values[::-1], vectors[:, ::-1]
        top = vectors[:, 0] ** 2
        own = train.y[:, 3 * g : 3 * g + 3].any(1)
        purity = max(top[labels == name].sum() for name in set(labels))
        assert recorded["top1_share"][g] == pytest.approx(values[0] / values.sum(), rel=1e-9)
        assert recorded["effective_rank"][g] == pytest.approx(values.sum() ** 2 / (values**2).sum(), rel=1e-9)
        assert recorded["own_output_share"][g] == pytest.approx(top[own].sum(), rel=1e-7)
        assert recorded["own_output_chance"][g] == pytest.approx(own.mean(), rel=1e-12)
        assert recorded["task_purity"][g] == pytest.approx(purity, rel=1e-7)
        assert -1 <= recorded["ari_task"][g] <= 1
        rows = table[table.output_group == g].sort_values("component")
        expected_sv = np.sqrt(np.clip(values[:n_comp], 0, None))
        assert np.allclose(rows.singular_value, expected_sv, rtol=1e-7, atol=1e-7 * expected_sv[0])
    means = result.summary["kernel"]["init"]["output_group_mean"]
    assert means["own_output_share"] == pytest.approx(np.mean(recorded["own_output_share"]))


def test_finetune_evaluation_interval_changes_only_what_is_recorded():
    """Losses every 2nd fine-tuning epoch and at the last; the training itself is the same as evaluating
    every epoch (evaluation draws no random numbers)."""
    from pipeline.studies import RunContext, get_runner

    base = ["study=multitask_pyle2023", "trainer.single_epochs=2", "trainer.finetune_epochs=5", "seed=1"]
    every = get_runner("multitask").run(
        run_config(*base, "study.finetune_eval_every=1"), RunContext(1, lambda *a: None)
    )
    sparse = get_runner("multitask").run(
        run_config(*base, "study.finetune_eval_every=2"), RunContext(1, lambda *a: None)
    )
    curves = sparse.tables["loss_curves"]
    assert sorted(curves[curves.phase == "finetune"].epoch.unique()) == [4, 6, 7]
    full = every.tables["loss_curves"]
    pd.testing.assert_frame_equal(
        curves.reset_index(drop=True),
        full[(full.phase != "finetune") | full.epoch.isin([4, 6, 7])].reset_index(drop=True),
    )
    for key in ("multitask_test_loss", "single_task_test_loss_after_finetune", "single_task_test_loss"):
        assert sparse.summary[key] == every.summary[key]
    with pytest.raises(ConfigError, match="study.finetune_eval_every=0: must be an integer >= 1"):
        run_config(*base, "study.finetune_eval_every=0")


def test_paper_protocol_configuration():
    from pipeline.studies.multitask.runner import training_lr

    cfg = run_config("study=multitask_pyle2023", "study.init=standard")
    assert (cfg.trainer.batch_size, cfg.trainer.loss_reduction, cfg.study.n_train_draws) == ("full", "sum", 500)
    assert training_lr(cfg) == 0.03 and training_lr(run_config("study=multitask_pyle2023", "study.init=large")) == 0.01
    assert training_lr(run_config("study=multitask", "study.init=large")) == 4.0
    assert list(cfg.study.finetune_sizes) == [1, 2, 3]
    # summed loss: the gradient is N times the mean loss's
    train, _ = _data()
    params = mt.init_params(np.random.default_rng(0), ENV, 200, 0.1)
    g_mean = mt.gradients(params, train.x, train.t, train.y)
    g_sum = mt.gradients(params, train.x, train.t, train.y, reduction="sum")
    assert all(np.allclose(g_sum[k], len(train) * g_mean[k], rtol=1e-12) for k in g_mean)


def test_paper_protocol_checks_the_kernel_at_the_same_small_step():
    """Summed loss over 500 draws: the check's step on it is 1/500 of the mean-loss step study=multitask checks at,
    so that both check the same first-order expansion (0.001 on the summed loss is a mean-loss step of 0.5)."""
    ours = run_config("study=multitask")
    paper = run_config("study=multitask_pyle2023")
    n = int(paper.study.n_train_draws)
    assert float(paper.study.kernel.probe_lr) * n == pytest.approx(float(ours.study.kernel.probe_lr))
    train, query = _data()
    train = train.subset(np.arange(len(train)) % 2 == 0)
    params = mt.init_params(np.random.default_rng(3), ENV, 200, 1.0)
    scale = len(train) / n  # the same step per sample on this smaller set
    on_sum = mt.predicted_change(params, query, train, float(paper.study.kernel.probe_lr) / scale, reduction="sum")
    on_mean = mt.predicted_change(params, query, train, float(ours.study.kernel.probe_lr))
    assert np.allclose(on_sum, on_mean, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize(
    "override,match",
    [
        ("study.init=huge", "study.init='huge': allowed values are standard, large"),
        ("trainer.batch_size=half", "trainer.batch_size='half'; allowed: an integer >= 1 or full"),
        ("trainer.loss_reduction=max", "trainer.loss_reduction='max': allowed values are mean, sum"),
        (
            "+trainer.lr_by_init.huge=1",
            "trainer.lr_by_init.huge: unknown key; the keys of trainer.lr_by_init are standard, large",
        ),
        ("study.n_train_stimuli=81", "study.n_train_stimuli=81: must be below the number of stimuli"),
        ("study.finetune_sizes=[1,4]", "study.finetune_sizes=.*set sizes in 1..3"),
        ("study.kernel.probe_lr=0", "study.kernel.probe_lr=0: must be a number > 0"),
    ],
)
def test_bad_values_fail_naming_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        run_config("study=multitask", override)


def test_analysis_companions_do_not_import_torch():
    code = (
        "import sys, analysis.companion.critical, analysis.companion.multitask; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
def test_multitask_sweep_end_to_end_and_report(tmp_path):
    """Two replicates of each init (a shortened curriculum; in-process launcher), then the report section."""
    from analysis.companion.multitask import section

    proc = run_cli(
        "-m",
        "study=multitask",
        "seed=range(0,4)",
        "trainer.single_epochs=150",
        "trainer.finetune_epochs=10",
        f"paths.root={tmp_path}",
        "hydra/launcher=basic",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted((tmp_path / "multitask" / "runs").iterdir())
    assert len(runs) == 4
    summaries = [json.loads((r / "summary.json").read_text()) for r in runs]
    for run, summary in zip(runs, summaries):
        for table in ("loss_curves", "kernel_prediction", "kernel_eigen", "representation_sharing"):
            assert (run / f"{table}.parquet").exists()
        assert summary["kernel"]["init"]["prediction_corr"] > 0.999
        assert summary["kernel"]["finetune"]["prediction_corr"] > 0.999
    by = {(s["init"], s["replicate"]): s for s in summaries}
    for rep in (0, 1):
        # the finding that held in every replicate measured (docs/companion_critical_multitask.md):
        # large init ends fine-tuning with the lower concurrent-multitask loss
        assert by["large", rep]["multitask_test_loss"] < by["standard", rep]["multitask_test_loss"]
    result = section(tmp_path / "multitask", tmp_path / "report")
    assert result["html"].count("data:image/png;base64,") >= 3
    claims = result["tables"]["claims"]
    assert len(claims) == 5 and claims["verdict"].str.len().gt(0).all()
    # two replicate pairs: no claim on the inits can be decided (Holm over 3 claims, 2 / 2^2 each)
    assert claims["verdict"].iloc[:3].str.startswith("underpowered (n = 2 replicate pairs, needs >= 7").all()
    assert result["tables"]["checks"].result.iloc[0] == "holds"  # at the probe's small step
    assert {"kernel_to_loss", "min_p"} <= set(result["tables"])
    assert isinstance(result["tables"]["init_comparison"], pd.DataFrame)
    assert (tmp_path / "report" / "multitask_kernel_prediction.png").exists()
