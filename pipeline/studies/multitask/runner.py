"""Runner of ``study=multitask``: initialise, measure the pseudo-kernel at init, train on the single
tasks, measure it again, fine-tune on concurrent multitasking; loss curves, kernel checks, sharing."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ...blas import single_threaded_blas
from ...config import ConfigError
from ...schema import empty_curves
from ..base import RunContext, RunResult, StudyRunner, register
from ..common import instance_seed
from . import network as mt
from .data import MultitaskEnv, TaskData

INITS = ("standard", "large")
REDUCTIONS = ("mean", "sum")


def training_lr(cfg) -> float:
    """The run's learning rate: ``trainer.lr_by_init.<init>`` when given, else ``trainer.lr``."""
    by_init = cfg.trainer.get("lr_by_init") or {}
    value = by_init.get(cfg.study.init)
    return float(cfg.trainer.lr if value is None else value)


def _clusters(embedding: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Adjusted Rand index between k-means clusters of the embedding (k = number of labels) and the labels."""
    k = len(set(labels.tolist()))
    if k < 2 or k >= len(labels):
        return float("nan")
    return mt.adjusted_rand_index(labels, mt.kmeans(embedding, k, np.random.default_rng(seed), n_init=3))


def _targets(data) -> np.ndarray:
    """The output units each sample's target turns on (1-based), as a label: ``3`` or ``3+7``."""
    return np.array(["+".join(str(u + 1) for u in np.flatnonzero(row)) for row in data.y], dtype=object)


def _purity(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per component: the largest share of its squared loadings that falls on one label's samples."""
    names = sorted(set(labels.tolist()))
    energy = np.array([(vectors[labels == name] ** 2).sum(0) for name in names])
    return energy.max(0) / np.maximum(energy.sum(0), 1e-300)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns as strings, integer columns as int32/int64 as they come (parquet-friendly)."""
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].astype(str)
    return frame


def _groups(env, data, which: int) -> np.ndarray:
    """The input (which=0) or output (which=1) groups each sample's tasks use, as a label."""
    return np.array(["/".join(str(env.tasks[c][which]) for c in data.sets[s]) for s in data.set_id], dtype=object)


def _prediction_frame(stage: str, query: TaskData, predicted, actual, n_out: int) -> pd.DataFrame:
    """One row per query and output unit: the kernel's predicted and the real change of one step."""
    return pd.DataFrame(
        {
            "stage": stage,
            "query": np.repeat(np.arange(len(query)), n_out),
            "label": np.repeat(query.labels, n_out),
            "set_size": np.repeat(query.set_sizes, n_out),
            "stimulus": np.repeat(query.stimulus, n_out),
            "unit": np.tile(np.arange(1, n_out + 1), len(query)),
            "predicted": predicted.ravel(),
            "actual": actual.ravel(),
        }
    )


def _eigen_frame(stage: str, sample, sub: TaskData, values, vectors, ins, outs, targets) -> pd.DataFrame:
    """One row per top eigenvector of the stacked kernel and training sample: the sample's loading."""
    n_comp, n_sub = vectors.shape[1], len(sub)
    return pd.DataFrame(
        {
            "stage": stage,
            "component": np.repeat(np.arange(1, n_comp + 1), n_sub),
            "singular_value": np.repeat(values, n_sub),
            "sample": np.tile(sample, n_comp),
            "label": np.tile(sub.labels, n_comp),
            "input_groups": np.tile(ins, n_comp),
            "output_groups": np.tile(outs, n_comp),
            "target_units": np.tile(targets, n_comp),
            "set_size": np.tile(sub.set_sizes, n_comp),
            "loading": vectors.T.ravel(),
        }
    )


def _writes_to(env: MultitaskEnv, data: TaskData) -> np.ndarray:
    """(N, n_output_groups): whether a sample's task set writes to each output group."""
    out = np.zeros((len(data), env.n_output_groups), dtype=bool)
    for s, tasks in enumerate(data.sets):
        rows = data.set_id == s
        for c in tasks:
            out[rows, env.tasks[c][1]] = True
    return out


def output_group_structure(
    k: np.ndarray, env: MultitaskEnv, sub: TaskData, n_components: int, seed: int
) -> tuple[pd.DataFrame, dict]:
    """Pyle et al.'s per-output reading of the kernel: per output group, the eigen-decomposition of its
    kernel over the training samples and the structure of its top eigenvectors.

    Per group: ``top1_share`` (the top eigenvalue's share of the kernel's squared norm), ``effective_rank``
    (participation ratio of the eigenvalues), ``own_output_share`` (share of the top eigenvector's squared
    loadings on samples whose tasks write to this group; ``own_output_chance`` is that share for equal
    loadings), ``task_purity`` (the largest share on one task set) and ``ari_task`` (k-means clusters of
    the top eigenvectors against the task sets). Returns the per-component rows and the per-group lists.
    """
    labels, writes = sub.labels, _writes_to(env, sub)
    rows: list[dict] = []
    groups: dict[str, list] = {key: [] for key in OUTPUT_MEASURES}
    for g in range(env.n_output_groups):
        units = range(g * env.n_features, (g + 1) * env.n_features)
        values, vectors = mt.output_components(k, units, n_components)
        energy = values**2
        total = float(energy.sum())
        own = (vectors[writes[:, g]] ** 2).sum(0)
        purity = _purity(vectors, labels)
        n_comp = vectors.shape[1]
        groups["top1_share"].append(float(energy[0] / total) if total > 0 else float("nan"))
        groups["effective_rank"].append(float(total**2 / (energy**2).sum()) if total > 0 else float("nan"))
        groups["own_output_share"].append(float(own[0]))
        groups["own_output_chance"].append(float(writes[:, g].mean()))
        groups["task_purity"].append(float(purity[0]))
        groups["ari_task"].append(_clusters(vectors * values[:n_comp], labels, seed))
        rows.append(
            pd.DataFrame(
                {
                    "output_group": np.full(n_comp, g, dtype=np.int64),
                    "component": np.arange(1, n_comp + 1),
                    "singular_value": values[:n_comp],
                    "own_output_share": own,
                    "task_purity": purity,
                }
            )
        )
    return pd.concat(rows, ignore_index=True), groups


# per output group, in the kernel summary of each stage (lists over groups; their means beside them)
OUTPUT_MEASURES = ("top1_share", "effective_rank", "own_output_share", "own_output_chance", "task_purity", "ari_task")


@register
class MultitaskRunner(StudyRunner):
    name = "multitask"

    def validate(self, cfg: DictConfig) -> None:
        # each key's type, bounds and allowed values: its schema (pipeline/config_schema.py), checked by the
        # planner; here what one key's value or several keys together must satisfy beyond that
        s, batch = cfg.study, cfg.trainer.batch_size
        if batch != "full" and (isinstance(batch, str) or int(batch) < 1):
            raise ConfigError(f"trainer.batch_size={batch!r}; allowed: an integer >= 1 or full")
        n_stimuli = int(s.n_features) ** int(s.n_input_groups)
        n_train = int(s.n_train_stimuli)
        if n_train >= n_stimuli:
            raise ConfigError(
                f"study.n_train_stimuli={n_train}: must be below the number of stimuli "
                f"({n_stimuli} = n_features^n_input_groups), the rest are the test stimuli"
            )
        top = min(int(s.n_input_groups), int(s.n_output_groups))
        for key in ("finetune_sizes", "test_multitask_sizes"):
            sizes = OmegaConf.select(cfg, f"study.{key}")
            if not sizes or any(not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= top for v in sizes):
                raise ConfigError(f"study.{key}={sizes!r}: must be a non-empty list of set sizes in 1..{top}")
        if int(s.kernel.n_query_stimuli) > n_stimuli - n_train:
            raise ConfigError(
                f"study.kernel.n_query_stimuli={s.kernel.n_query_stimuli}: at most the "
                f"{n_stimuli - n_train} test stimuli"
            )

    def run(self, cfg: DictConfig, ctx: RunContext) -> RunResult:
        t0 = time.perf_counter()
        run = MultitaskRun(cfg, ctx)
        with single_threaded_blas():
            run.evaluate("init", 0)
            run.sharing("init")
            run.kernel_stage("init", run.data["single_train"], run.env.dataset(run.single, run.query_stim))
            run.train_single()
            after_single = run.losses()
            run.sharing("after_single")
            run.kernel_stage("finetune", run.data["finetune_train"], run.env.dataset(run.multi, run.query_stim))
            run.finetune()
            final = run.losses()
            run.sharing("after_finetune")
            multi_by_set = mt.loss_by_set(run.params, run.data["multi_test"], run.bias)
        summary = run.summary(after_single, final, multi_by_set)
        summary["seconds"] = {"total": time.perf_counter() - t0}
        return RunResult(empty_curves(), run.readout_frame(), summary, run.tables())


READOUT_NAMES = {
    "single_train": ("train", "loss_single"),
    "single_test": ("test", "loss_single"),
    "multi_test": ("test", "loss_multi"),
    "finetune_train": ("train", "loss_finetune"),
}


class MultitaskRun:
    """One run's state: the environment, data sets, weights, random streams and the rows recorded so far.
    The steps are called in a fixed order (``MultitaskRunner.run``), so that every stream is drawn
    from in the same order for the same config and seed."""

    def __init__(self, cfg: DictConfig, ctx: RunContext) -> None:
        s = self.s = cfg.study
        t = self.t = cfg.trainer
        self.ctx = ctx
        self.env = env = MultitaskEnv(int(s.n_input_groups), int(s.n_features), int(s.n_output_groups))
        self.bias, self.lr = float(s.bias), training_lr(cfg)
        self.batch = None if t.batch_size == "full" else int(t.batch_size)
        self.reduction = str(t.get("loss_reduction", "mean"))
        # the fifth stream (the random training draws) leaves the first four as they were
        streams = np.random.SeedSequence(instance_seed(cfg, ctx)).spawn(5)
        split_rng, init_rng, self.order_rng, self.kernel_rng, draw_rng = (np.random.default_rng(x) for x in streams)

        stimuli = split_rng.permutation(len(env.stimuli))
        n_train = int(s.n_train_stimuli)
        self.train_stim, self.test_stim = np.sort(stimuli[:n_train]), np.sort(stimuli[n_train:])
        self.query_stim = self.test_stim[: int(s.kernel.n_query_stimuli)]
        self.single = env.task_sets([1])
        self.multi = env.task_sets([int(v) for v in s.test_multitask_sizes])
        finetune = env.task_sets([int(v) for v in s.finetune_sizes])
        self.data: dict[str, TaskData] = {
            "single_train": env.dataset(self.single, self.train_stim),
            "single_test": env.dataset(self.single, self.test_stim),
            "multi_test": env.dataset(self.multi, self.test_stim),
            "finetune_train": env.dataset(finetune, self.train_stim),
        }
        n_draws = int(s.get("n_train_draws", 0))
        if n_draws:
            # Pyle et al.'s curriculum: random (stimulus, task set) draws, with replacement, per phase
            for name in ("single_train", "finetune_train"):
                self.data[name] = self.data[name].subset(np.sort(draw_rng.integers(0, len(self.data[name]), n_draws)))
        self.params = mt.init_params(init_rng, env, int(s.hidden), float(s.init_range[s.init]))
        self.curves: list[tuple] = []
        self.readouts: list[tuple] = []
        self.predictions: list[pd.DataFrame] = []
        self.eigen: list[pd.DataFrame] = []
        self.output_eigen: list[pd.DataFrame] = []
        self.along: list[tuple] = []
        self.sharing_frames: list[pd.DataFrame] = []
        self.kernel_summary: dict = {}

    def losses(self) -> dict[str, float]:
        return {name: mt.loss(self.params, d, self.bias) for name, d in self.data.items()}

    def evaluate(self, phase: str, epoch: int, names=None) -> dict:
        names = tuple(self.data) if names is None else names
        values = {name: mt.loss(self.params, self.data[name], self.bias) for name in names}
        for name, value in values.items():
            self.curves.append((phase, epoch, name, value))
            if epoch >= 1:
                self.readouts.append((epoch, *READOUT_NAMES[name], value))
        return values

    def one_step_check(
        self, train: TaskData, query: TaskData, step: float
    ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """The kernel's prediction of one full-batch step of size ``step`` against the real change:
        both changes, their correlation and the relative error of the prediction."""
        predicted = mt.predicted_change(self.params, query, train, step, self.bias, self.reduction)
        actual = mt.actual_change(self.params, query, train, step, self.bias, self.reduction)
        corr = float(np.corrcoef(predicted.ravel(), actual.ravel())[0, 1])
        rel = float(np.linalg.norm(predicted - actual) / np.linalg.norm(actual))
        return predicted, actual, corr, rel

    def kernel_stage(self, stage: str, train: TaskData, query: TaskData) -> None:
        s, env = self.s, self.env
        n_max = int(s.kernel.max_train)
        sample = (
            np.sort(self.kernel_rng.choice(len(train), n_max, replace=False))
            if len(train) > n_max
            else np.arange(len(train))
        )
        sub = train.subset(sample)
        k = mt.kernel(self.params, query, sub, self.bias)
        probe = float(s.kernel.probe_lr)
        predicted, actual, corr, rel = self.one_step_check(train, query, probe)
        # the same check at the training step size: how far one real step departs from the linearisation
        _, _, corr_lr, rel_lr = self.one_step_check(train, query, self.lr)
        self.predictions.append(_prediction_frame(stage, query, predicted, actual, env.n_outputs))
        values, vectors = mt.kernel_components(k, int(s.kernel.n_components))
        labels, ins, outs, targets = sub.labels, _groups(env, sub, 0), _groups(env, sub, 1), _targets(sub)
        self.eigen.append(_eigen_frame(stage, sample, sub, values, vectors, ins, outs, targets))
        embedding = vectors * values
        cseed = int(self.kernel_rng.integers(2**31))
        per_output = {}
        if stage == "init":  # Pyle et al. predict from the kernel at initialisation
            # the k-means of the per-output kernels reuse cseed: no further draw from kernel_rng, whose
            # stream decides the next stage's kernel sample
            output_rows, per_group = output_group_structure(k, env, sub, int(s.kernel.n_components), cseed)
            self.output_eigen.append(output_rows.assign(stage=stage))
            per_output = {
                "output_groups": per_group,
                "output_group_mean": {key: float(np.mean(v)) for key, v in per_group.items()},
            }
        self.kernel_summary[stage] = {
            "prediction_corr": corr,
            "prediction_rel_error": rel,
            "probe_lr": probe,
            "prediction_corr_training_lr": corr_lr,
            "prediction_rel_error_training_lr": rel_lr,
            "training_lr": self.lr,
            "loss_reduction": self.reduction,
            "n_train": len(train),
            "n_kernel_train": len(sub),
            "n_query": len(query),
            "top_singular_values": [float(v) for v in values],
            "cluster_ari_task": _clusters(embedding, labels, cseed),
            "cluster_ari_input_group": _clusters(embedding, ins, cseed),
            "cluster_ari_output_group": _clusters(embedding, outs, cseed),
            "cluster_ari_target_units": _clusters(embedding, targets, cseed),
            "task_purity": [float(v) for v in _purity(vectors, labels)],
            "task_purity_chance": 1.0 / len(set(labels.tolist())),
            **per_output,
        }

    def sharing(self, stage: str) -> None:
        env = self.env
        sim = mt.representation_sharing(self.params, env, self.test_stim, self.bias)
        rows = [
            (stage, a, b, env.tasks[a][0] == env.tasks[b][0], env.tasks[a][1] == env.tasks[b][1], float(sim[a, b]))
            for a in range(env.n_tasks)
            for b in range(env.n_tasks)
            if a != b
        ]
        columns = ["stage", "task_a", "task_b", "same_input", "same_output", "similarity"]
        self.sharing_frames.append(pd.DataFrame(rows, columns=columns))

    def train_single(self) -> None:
        """Phase 1: the single tasks, evaluated every ``eval_every`` epochs and at the last."""
        s, data = self.s, self.data
        epochs, every, eval_every = int(self.t.single_epochs), int(s.kernel.every_epochs), int(s.eval_every)
        for epoch in range(1, epochs + 1):
            mt.train_epoch(
                self.params, data["single_train"], self.lr, self.batch, self.order_rng, self.bias, self.reduction
            )
            if epoch % eval_every and epoch != epochs:
                continue
            values = self.evaluate("single", epoch, ("single_train", "single_test", "multi_test"))
            if every and epoch % every == 0:
                query = self.env.dataset(self.single, self.query_stim)
                _, _, corr, _ = self.one_step_check(data["single_train"], query, float(s.kernel.probe_lr))
                self.along.append((epoch, corr))
            if epoch % (10 * eval_every) == 0 or epoch == epochs:
                logged = {
                    "train/loss_single": values["single_train"],
                    "test/loss_single": values["single_test"],
                    "test/loss_multi": values["multi_test"],
                }
                self.ctx.on_step(epoch, logged, empty_curves())

    def finetune(self) -> None:
        """Phase 2: concurrent multitasking, evaluated every ``finetune_eval_every`` epochs (default 1) and at
        the last."""
        first, epochs = int(self.t.single_epochs) + 1, int(self.t.single_epochs) + int(self.t.finetune_epochs)
        every = int(self.s.get("finetune_eval_every") or 1)
        for epoch in range(first, epochs + 1):
            mt.train_epoch(
                self.params, self.data["finetune_train"], self.lr, self.batch, self.order_rng, self.bias, self.reduction
            )
            if (epoch - first + 1) % every and epoch != epochs:
                continue
            values = self.evaluate("finetune", epoch)
            if epoch % (5 * every) == 0 or epoch == epochs:
                logged = {
                    "train/loss_finetune": values["finetune_train"],
                    "test/loss_single": values["single_test"],
                    "test/loss_multi": values["multi_test"],
                }
                self.ctx.on_step(epoch, logged, empty_curves())

    def curve_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.curves, columns=["phase", "epoch", "split", "loss"]).astype({"epoch": np.int32})

    def summary(self, after_single: dict, final: dict, multi_by_set: np.ndarray) -> dict:
        s, kernel = self.s, self.kernel_summary
        curves = self.curve_frame()
        single_curve = curves[(curves.phase == "single") & (curves.split == "single_test")]
        share = pd.concat(self.sharing_frames, ignore_index=True)

        def mean_sim(stage, same_input):
            return float(share[(share.stage == stage) & (share.same_input == same_input)].similarity.mean())

        sizes = np.array([len(x) for x in self.data["multi_test"].sets])
        return {
            "init": str(s.init),
            "init_range": float(s.init_range[s.init]),
            "hidden": int(s.hidden),
            "lr": self.lr,
            "batch_size": "full" if self.batch is None else self.batch,
            "loss_reduction": self.reduction,
            "n_train": {"single": len(self.data["single_train"]), "finetune": len(self.data["finetune_train"])},
            "single_epochs": int(self.t.single_epochs),
            "finetune_epochs": int(self.t.finetune_epochs),
            "n_train_stimuli": len(self.train_stim),
            "n_test_stimuli": len(self.test_stim),
            "single_task_test_loss": after_single["single_test"],
            "single_task_train_loss": after_single["single_train"],
            "single_task_test_loss_mean_over_training": float(single_curve.loss.mean())
            if len(single_curve)
            else after_single["single_test"],
            "multitask_test_loss_before_finetune": after_single["multi_test"],
            "multitask_test_loss": final["multi_test"],
            "multitask_test_loss_by_size": {int(z): float(multi_by_set[sizes == z].mean()) for z in sorted(set(sizes))},
            "single_task_test_loss_after_finetune": final["single_test"],
            "kernel": kernel,
            "kernel_prediction_corr_init": kernel["init"]["prediction_corr"],
            "kernel_prediction_corr_init_training_lr": kernel["init"]["prediction_corr_training_lr"],
            "sharing_same_input_after_single": mean_sim("after_single", True),
            "sharing_other_input_after_single": mean_sim("after_single", False),
            "sharing_same_input_init": mean_sim("init", True),
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        tables = {
            "loss_curves": self.curve_frame(),
            "kernel_prediction": _typed(pd.concat(self.predictions, ignore_index=True)),
            "kernel_eigen": _typed(pd.concat(self.eigen, ignore_index=True)),
            "kernel_output_eigen": pd.concat(self.output_eigen, ignore_index=True),
            "representation_sharing": pd.concat(self.sharing_frames, ignore_index=True),
        }
        if self.along:
            tables["kernel_along_training"] = pd.DataFrame(self.along, columns=["epoch", "prediction_corr"])
        return tables

    def readout_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.readouts, columns=["epoch", "split", "metric", "value"])
        return frame.astype({"epoch": np.int32})
