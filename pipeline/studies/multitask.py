"""``study=multitask``: the multitasking network, its curriculum and its pseudo-kernel
(docs/science.md 2b; Pyle, Musslick, Cohen & Patel 2023).

One run: initialise (``study.init``: standard U(-0.1, 0.1) or large U(-1, 1)),
compute the pseudo-kernel of the single-task curriculum at initialisation (its
one-step prediction of the output change against a real step, its top
eigenvectors and their clustering by task), train on the 12 single tasks, then
compute the kernel of the concurrent-multitasking curriculum and fine-tune on
it. Records loss curves per phase, the kernel checks, and how much the tasks'
hidden representations overlap. Network and kernel: ``pipeline/multitask_net.py``.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ..config import ConfigError, check_choice, check_int, check_number
from . import RunContext, RunResult, StudyRunner, register
from .critical import IGNORED, blas_one_thread, check_bool, empty_curves, instance_seed

INITS = ("standard", "large")
REDUCTIONS = ("mean", "sum")


def training_lr(cfg) -> float:
    """The run's learning rate: ``study.lr_by_init.<init>`` when given, else ``study.lr``."""
    by_init = cfg.study.get("lr_by_init") or {}
    value = by_init.get(cfg.study.init)
    return float(cfg.study.lr if value is None else value)


def _clusters(embedding: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Adjusted Rand index between k-means clusters of the embedding (k = number of labels) and the labels."""
    from ..multitask_net import adjusted_rand_index, kmeans

    k = len(set(labels.tolist()))
    if k < 2 or k >= len(labels):
        return float("nan")
    return adjusted_rand_index(labels, kmeans(embedding, k, np.random.default_rng(seed), n_init=3))


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


@register
class MultitaskRunner(StudyRunner):
    name = "multitask"
    ignored_keys = IGNORED

    def validate(self, cfg: DictConfig) -> None:
        s = cfg.study
        check_choice(cfg, "study.init", INITS)
        ranges = s.get("init_range")
        if not ranges or any(name not in ranges for name in INITS):
            raise ConfigError(f"study.init_range must give a range for each of {', '.join(INITS)}")
        for name in INITS:
            check_number(cfg, f"study.init_range.{name}", 0, None)
        for key in ("n_input_groups", "n_features", "n_output_groups", "hidden"):
            check_int(cfg, f"study.{key}", 1)
        if s.batch_size != "full":
            if isinstance(s.batch_size, str):
                raise ConfigError(f"study.batch_size={s.batch_size!r}; allowed: an integer >= 1 or full")
            check_int(cfg, "study.batch_size", 1)
        check_choice(cfg, "study.loss_reduction", REDUCTIONS)
        check_int(cfg, "study.n_train_draws", 0)
        by_init = s.get("lr_by_init") or {}
        unknown = sorted(set(by_init) - set(INITS))
        if unknown:
            raise ConfigError(f"study.lr_by_init has {', '.join(unknown)}; allowed keys: {', '.join(INITS)}")
        for name in INITS:
            if by_init.get(name) is not None:
                check_number(cfg, f"study.lr_by_init.{name}", 0, None)
        for key in ("single_epochs", "finetune_epochs"):
            check_int(cfg, f"study.{key}", 0)
        check_int(cfg, "study.eval_every", 1)
        n_stimuli = int(s.n_features) ** int(s.n_input_groups)
        n_train = check_int(cfg, "study.n_train_stimuli", 1)
        if n_train >= n_stimuli:
            raise ConfigError(
                f"study.n_train_stimuli={n_train}: must be below the number of stimuli "
                f"({n_stimuli} = n_features^n_input_groups), the rest are the test stimuli"
            )
        check_number(cfg, "study.lr", 0, None)
        check_number(cfg, "study.bias", None, None)
        top = min(int(s.n_input_groups), int(s.n_output_groups))
        for key in ("finetune_sizes", "test_multitask_sizes"):
            sizes = OmegaConf.select(cfg, f"study.{key}")
            if not sizes or any(not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= top for v in sizes):
                raise ConfigError(f"study.{key}={sizes!r}: must be a non-empty list of set sizes in 1..{top}")
        check_number(cfg, "study.kernel.probe_lr", 0, None)
        for key in ("n_query_stimuli", "n_components", "max_train"):
            check_int(cfg, f"study.kernel.{key}", 1)
        check_int(cfg, "study.kernel.every_epochs", 0)
        if int(s.kernel.n_query_stimuli) > n_stimuli - n_train:
            raise ConfigError(
                f"study.kernel.n_query_stimuli={s.kernel.n_query_stimuli}: at most the "
                f"{n_stimuli - n_train} test stimuli"
            )
        check_bool(cfg, "study.paired")

    def run(self, cfg: DictConfig, ctx: RunContext) -> RunResult:
        from .. import multitask_net as mt

        t0 = time.perf_counter()
        s = cfg.study
        env = mt.MultitaskEnv(int(s.n_input_groups), int(s.n_features), int(s.n_output_groups))
        bias, lr, batch = float(s.bias), training_lr(cfg), (None if s.batch_size == "full" else int(s.batch_size))
        reduction = str(s.get("loss_reduction", "mean"))
        seed = instance_seed(cfg, ctx)
        # the fifth stream (the random training draws) leaves the first four as they were
        streams = np.random.SeedSequence(seed).spawn(5)
        split_rng, init_rng, order_rng, kernel_rng, draw_rng = (np.random.default_rng(x) for x in streams)

        stimuli = split_rng.permutation(len(env.stimuli))
        train_stim, test_stim = np.sort(stimuli[: int(s.n_train_stimuli)]), np.sort(stimuli[int(s.n_train_stimuli) :])
        query_stim = test_stim[: int(s.kernel.n_query_stimuli)]
        single, multi = env.task_sets([1]), env.task_sets([int(v) for v in s.test_multitask_sizes])
        finetune = env.task_sets([int(v) for v in s.finetune_sizes])
        data = {
            "single_train": env.dataset(single, train_stim),
            "single_test": env.dataset(single, test_stim),
            "multi_test": env.dataset(multi, test_stim),
            "finetune_train": env.dataset(finetune, train_stim),
        }
        n_draws = int(s.get("n_train_draws", 0))
        if n_draws:
            # Pyle et al.'s curriculum: random (stimulus, task set) draws, with replacement, per phase
            for name in ("single_train", "finetune_train"):
                data[name] = data[name].subset(np.sort(draw_rng.integers(0, len(data[name]), n_draws)))
        params = mt.init_params(init_rng, env, int(s.hidden), float(s.init_range[s.init]))

        curves, readouts, predictions, eigen, along = [], [], [], [], []
        kernel_summary: dict = {}

        readout_names = {
            "single_train": ("train", "loss_single"),
            "single_test": ("test", "loss_single"),
            "multi_test": ("test", "loss_multi"),
            "finetune_train": ("train", "loss_finetune"),
        }

        def evaluate(phase: str, epoch: int, names=tuple(data)) -> dict:
            values = {name: mt.loss(params, data[name], bias) for name in names}
            for name, value in values.items():
                curves.append((phase, epoch, name, value))
                if epoch >= 1:
                    readouts.append((epoch, *readout_names[name], value))
            return values

        def kernel_stage(stage: str, train, query) -> None:
            n_max = int(s.kernel.max_train)
            sample = (
                np.sort(kernel_rng.choice(len(train), n_max, replace=False))
                if len(train) > n_max
                else np.arange(len(train))
            )
            sub = train.subset(sample)
            k = mt.kernel(params, query, sub, bias)
            probe = float(s.kernel.probe_lr)
            predicted = mt.predicted_change(params, query, train, probe, bias, reduction)
            actual = mt.actual_change(params, query, train, probe, bias, reduction)
            corr = float(np.corrcoef(predicted.ravel(), actual.ravel())[0, 1])
            rel = float(np.linalg.norm(predicted - actual) / np.linalg.norm(actual))
            # the same check at the training step size: how far one real step departs from the linearisation
            pred_lr = mt.predicted_change(params, query, train, lr, bias, reduction)
            act_lr = mt.actual_change(params, query, train, lr, bias, reduction)
            corr_lr = float(np.corrcoef(pred_lr.ravel(), act_lr.ravel())[0, 1])
            rel_lr = float(np.linalg.norm(pred_lr - act_lr) / np.linalg.norm(act_lr))
            n_out = env.n_outputs
            predictions.append(
                pd.DataFrame(
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
            )
            values, vectors = mt.kernel_components(k, int(s.kernel.n_components))
            labels, ins, outs, targets = sub.labels, _groups(env, sub, 0), _groups(env, sub, 1), _targets(sub)
            n_comp, n_sub = vectors.shape[1], len(sub)
            eigen.append(
                pd.DataFrame(
                    {
                        "stage": stage,
                        "component": np.repeat(np.arange(1, n_comp + 1), n_sub),
                        "singular_value": np.repeat(values, n_sub),
                        "sample": np.tile(sample, n_comp),
                        "label": np.tile(labels, n_comp),
                        "input_groups": np.tile(ins, n_comp),
                        "output_groups": np.tile(outs, n_comp),
                        "target_units": np.tile(targets, n_comp),
                        "set_size": np.tile(sub.set_sizes, n_comp),
                        "loading": vectors.T.ravel(),
                    }
                )
            )
            embedding = vectors * values
            cseed = int(kernel_rng.integers(2**31))
            kernel_summary[stage] = {
                "prediction_corr": corr,
                "prediction_rel_error": rel,
                "probe_lr": probe,
                "prediction_corr_training_lr": corr_lr,
                "prediction_rel_error_training_lr": rel_lr,
                "training_lr": lr,
                "loss_reduction": reduction,
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
            }

        def sharing(stage: str) -> pd.DataFrame:
            sim = mt.representation_sharing(params, env, test_stim, bias)
            rows = [
                (stage, a, b, env.tasks[a][0] == env.tasks[b][0], env.tasks[a][1] == env.tasks[b][1], float(sim[a, b]))
                for a in range(env.n_tasks)
                for b in range(env.n_tasks)
                if a != b
            ]
            return pd.DataFrame(rows, columns=["stage", "task_a", "task_b", "same_input", "same_output", "similarity"])

        with blas_one_thread():
            evaluate("init", 0)
            sharing_frames = [sharing("init")]
            kernel_stage("init", data["single_train"], env.dataset(single, query_stim))
            epochs1, epochs2 = int(s.single_epochs), int(s.finetune_epochs)
            every = int(s.kernel.every_epochs)
            eval_every = int(s.eval_every)
            for epoch in range(1, epochs1 + 1):
                mt.train_epoch(params, data["single_train"], lr, batch, order_rng, bias, reduction)
                if epoch % eval_every and epoch != epochs1:
                    continue
                values = evaluate("single", epoch, ("single_train", "single_test", "multi_test"))
                if every and epoch % every == 0:
                    q = env.dataset(single, query_stim)
                    p = mt.predicted_change(params, q, data["single_train"], float(s.kernel.probe_lr), bias, reduction)
                    a = mt.actual_change(params, q, data["single_train"], float(s.kernel.probe_lr), bias, reduction)
                    along.append((epoch, float(np.corrcoef(p.ravel(), a.ravel())[0, 1])))
                if epoch % (10 * eval_every) == 0 or epoch == epochs1:
                    ctx.on_step(
                        epoch,
                        {
                            "train/loss_single": values["single_train"],
                            "test/loss_single": values["single_test"],
                            "test/loss_multi": values["multi_test"],
                        },
                        empty_curves(),
                    )
            after_single = {name: mt.loss(params, d, bias) for name, d in data.items()}
            sharing_frames.append(sharing("after_single"))
            kernel_stage("finetune", data["finetune_train"], env.dataset(multi, query_stim))
            for epoch in range(epochs1 + 1, epochs1 + epochs2 + 1):
                mt.train_epoch(params, data["finetune_train"], lr, batch, order_rng, bias, reduction)
                values = evaluate("finetune", epoch)
                if epoch % 5 == 0 or epoch == epochs1 + epochs2:
                    ctx.on_step(
                        epoch,
                        {
                            "train/loss_finetune": values["finetune_train"],
                            "test/loss_single": values["single_test"],
                            "test/loss_multi": values["multi_test"],
                        },
                        empty_curves(),
                    )
            final = {name: mt.loss(params, d, bias) for name, d in data.items()}
            sharing_frames.append(sharing("after_finetune"))
            multi_by_set = mt.loss_by_set(params, data["multi_test"], bias)

        curve_frame = pd.DataFrame(curves, columns=["phase", "epoch", "split", "loss"]).astype({"epoch": np.int32})
        single_curve = curve_frame[(curve_frame.phase == "single") & (curve_frame.split == "single_test")]
        share = pd.concat(sharing_frames, ignore_index=True)

        def mean_sim(stage, same_input, same_output=None):
            sel = share[(share.stage == stage) & (share.same_input == same_input)]
            if same_output is not None:
                sel = sel[sel.same_output == same_output]
            return float(sel.similarity.mean())

        sizes = np.array([len(x) for x in data["multi_test"].sets])
        summary = {
            "init": str(s.init),
            "init_range": float(s.init_range[s.init]),
            "hidden": int(s.hidden),
            "lr": lr,
            "batch_size": "full" if batch is None else batch,
            "loss_reduction": reduction,
            "n_train": {"single": len(data["single_train"]), "finetune": len(data["finetune_train"])},
            "single_epochs": int(s.single_epochs),
            "finetune_epochs": int(s.finetune_epochs),
            "n_train_stimuli": len(train_stim),
            "n_test_stimuli": len(test_stim),
            "single_task_test_loss": after_single["single_test"],
            "single_task_train_loss": after_single["single_train"],
            "single_task_test_loss_mean_over_training": float(single_curve.loss.mean())
            if len(single_curve)
            else after_single["single_test"],
            "multitask_test_loss_before_finetune": after_single["multi_test"],
            "multitask_test_loss": final["multi_test"],
            "multitask_test_loss_by_size": {int(z): float(multi_by_set[sizes == z].mean()) for z in sorted(set(sizes))},
            "single_task_test_loss_after_finetune": final["single_test"],
            "kernel": kernel_summary,
            "kernel_prediction_corr_init": kernel_summary["init"]["prediction_corr"],
            "kernel_prediction_corr_init_training_lr": kernel_summary["init"]["prediction_corr_training_lr"],
            "sharing_same_input_after_single": mean_sim("after_single", True),
            "sharing_other_input_after_single": mean_sim("after_single", False),
            "sharing_same_input_init": mean_sim("init", True),
            "seconds": {"total": time.perf_counter() - t0},
        }
        tables = {
            "loss_curves": curve_frame,
            "kernel_prediction": _typed(pd.concat(predictions, ignore_index=True)),
            "kernel_eigen": _typed(pd.concat(eigen, ignore_index=True)),
            "representation_sharing": share,
        }
        if along:
            tables["kernel_along_training"] = pd.DataFrame(along, columns=["epoch", "prediction_corr"])
        readout_frame = pd.DataFrame(readouts, columns=["epoch", "split", "metric", "value"]).astype(
            {"epoch": np.int32}
        )
        return RunResult(empty_curves(), readout_frame, summary, tables)
