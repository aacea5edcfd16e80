"""The headline study's runner (Jiang & Dale 2025): one class pair, one sequence
classifier, its learning-curve map and developmental readouts."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, ListConfig

from ..config import ConfigError, as_dict
from ..data import class_pairs, load_dataset
from ..data.checks import check_dataset_files
from ..deficit import sequence_deficit, validate_deficit
from ..model import ModelProtocolError, build_model, check_protocol, is_user_model, model_label
from ..model_config import check_model_config
from ..probes import ProbeContext, build_probes
from ..run_checks import check_run_data
from ..splits import make_splits, repeated_share
from ..train import clean_pass_states, resolve_device, train_run
from .base import RunContext, RunResult, StudyRunner, register
from .common import set_up_torch

log = logging.getLogger(__name__)


def pair_class_names(cfg: DictConfig, pair: int) -> list[str]:
    first, second = class_pairs(int(cfg.dataset.n_classes))[pair]
    names = list(cfg.dataset.class_names)
    return [names[first], names[second]]


@register
class SequenceRunner(StudyRunner):
    name = "sequence"

    def validate(self, cfg: DictConfig) -> None:
        # each key's type, bounds and allowed values (labels, pair, trainer.*, model.*, split.*): its schema
        # (pipeline/config_schema.py), checked by the planner first; here what relates keys to each other
        _check_model(cfg)
        _check_data(cfg)
        try:
            resolve_device(cfg.trainer.device)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        validate_deficit(
            cfg.get("deficit"),
            source=cfg.data_source.name,
            study_sources=cfg.study.get("data_sources"),
            epochs=int(cfg.trainer.epochs),
        )
        build_probes(cfg.probe)  # the probes check their options here, before any data is read
        _check_map_probe(cfg)

    def validate_planned(self, cfg: DictConfig) -> None:
        check_run_data(cfg)  # the data set as the run loads it, the run's own split
        if is_user_model(cfg.model):
            check_user_model_on_data(cfg)

    def design_extras(self, cfg: DictConfig, design) -> dict:
        return {
            "data_source": cfg.data_source.name,
            "pair": int(cfg.pair),
            "class_names": pair_class_names(cfg, int(cfg.pair)),
        }

    def run(self, cfg: DictConfig, ctx: RunContext) -> RunResult:
        t0 = time.perf_counter()
        device = set_up_torch(cfg, ctx.rng_seed)
        data = load_dataset(cfg.dataset)
        t_data = time.perf_counter() - t0
        splits = _pair_splits(cfg, data, np.random.default_rng(ctx.rng_seed))
        _, time_slices, n_features = data.x.shape
        model = build_model(cfg.model, time_slices, n_features)
        state_size = check_protocol(
            model, torch.as_tensor(splits.x_train[:2], dtype=torch.float32), 2, f"model {model_label(cfg.model)}"
        )
        probes = build_probes(cfg.probe)
        generator = torch.Generator().manual_seed(ctx.rng_seed)
        at_init = measure_at_init(model, splits, probes, device, int(cfg.trainer.batch_size))
        result = train_run(
            model,
            splits,
            probes,
            epochs=int(cfg.trainer.epochs),
            lr=float(cfg.trainer.lr),
            batch_size=int(cfg.trainer.batch_size),
            shuffle=bool(cfg.trainer.shuffle),
            device=device,
            generator=generator,
            on_epoch=ctx.on_step,
            batch_transform=sequence_deficit(cfg, ctx.rng_seed, splits),
            readout_batchnorm=str(cfg.trainer.get("readout_batchnorm", "eval")),
            grad_clip_norm=_grad_clip_norm(cfg),
        )
        seconds = {"data": t_data, "training": result.seconds_training, "probes": result.probe_seconds}
        summary = _summary(
            cfg, result, splits, state_size, data.x.shape, device, {**seconds, "total": time.perf_counter() - t0}
        )
        tables = dict(result.tables)
        for name, frame in at_init.items():
            tables[name] = pd.concat([frame, tables[name]], ignore_index=True) if name in tables else frame
        return RunResult(result.curves, result.readouts, summary, tables)


_USER_MODELS_CHECKED: set[str] = set()


def check_user_model_on_data(cfg: DictConfig) -> None:
    """A user's module built for the run's data (T, F of its data set) and run once on two of its sequences:
    ConfigError naming ``model._target_`` where it cannot be built or answers outside the protocol. Torch's
    random state is left as it was; each model config and data shape is checked once per process."""
    data = load_dataset(as_dict(cfg.dataset))
    _, time_slices, n_features = data.x.shape
    key = json.dumps([as_dict(cfg.model), time_slices, n_features], sort_keys=True, default=str)
    if key in _USER_MODELS_CHECKED:
        return
    target = cfg.model._target_
    try:
        with torch.random.fork_rng(devices=[]):
            model = build_model(cfg.model, time_slices, n_features)
            check_protocol(model, torch.tensor(data.x[:2], dtype=torch.float32), 2, f"model._target_={target}")
    except ModelProtocolError as exc:
        raise ConfigError(str(exc)) from None
    except Exception as exc:  # the user's constructor or forward: whatever it raises says what is wrong
        raise ConfigError(
            f"model._target_={target} cannot be built or run on dataset={cfg.dataset.name} "
            f"(T={time_slices}, F={n_features}): {type(exc).__name__}: {exc}"
        ) from None
    _USER_MODELS_CHECKED.add(key)


def _grad_clip_norm(cfg: DictConfig) -> float | None:
    value = cfg.trainer.get("grad_clip_norm")
    return None if value is None else float(value)


def _check_model(cfg: DictConfig) -> None:
    check_model_config(cfg.model)
    if int(cfg.trainer.batch_size) < 2 and cfg.model.get("batchnorm_time", False):
        raise ConfigError(
            f"trainer.batch_size={cfg.trainer.batch_size}: BatchNorm in training mode needs "
            f"at least 2 samples per batch; use trainer.batch_size>=2 "
            f"(or model.batchnorm_time=false)"
        )


def _check_map_probe(cfg: DictConfig) -> None:
    """The run's record is its learning-curve map: the KNN probe on, on the training states."""
    knn = cfg.probe.get("knn")
    if knn is None or not knn.get("enabled", True):
        raise ConfigError(
            "probe.knn.enabled=false: a sequence run records its learning-curve map, which is the KNN probe's "
            "(probe.knn.enabled=true)"
        )
    splits = knn.get("splits")
    listed = list(splits) if isinstance(splits, ListConfig) else None
    if listed is not None and len(set(listed)) != len(listed):
        raise ConfigError(f"probe.knn.splits={listed!r}: names a split twice")
    if listed is None or "train" not in listed:
        raise ConfigError(
            f"probe.knn.splits={listed if listed is not None else splits!r}: must include train, whose KNN "
            f"accuracy is the learning-curve map (allowed: [train] or [train, test])"
        )


def _check_data(cfg: DictConfig) -> None:
    """The data set belongs to the data source and the study, has the run's class pair, and its files are there."""
    source = cfg.data_source.name
    if cfg.dataset.source != source:
        raise ConfigError(
            f"dataset={cfg.dataset.name} belongs to data source {cfg.dataset.source!r}, "
            f"but data_source={source}; pick a {source} data set or data_source={cfg.dataset.source}"
        )
    if cfg.study.get("data_sources") and source not in cfg.study.data_sources:
        raise ConfigError(
            f"data_source={source} is not in study {cfg.study.name!r} "
            f"(its data sources: {', '.join(cfg.study.data_sources)})"
        )
    n_classes = int(cfg.dataset.n_classes)
    names = cfg.dataset.get("class_names")
    if names is not None and len(names) != n_classes:
        raise ConfigError(
            f"dataset.n_classes={n_classes}: data set {cfg.dataset.name} names {len(names)} classes "
            f"(dataset.class_names); the two must agree"
        )
    n_pairs = n_classes * (n_classes - 1) // 2
    if cfg.pair >= n_pairs:
        raise ConfigError(
            f"pair={cfg.pair}: data set {cfg.dataset.name} has {n_classes} classes, so pair must be in 0..{n_pairs - 1}"
        )
    try:  # the files exist and start as their format does; the full load is the run's
        check_dataset_files(as_dict(cfg.dataset))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"dataset={cfg.dataset.name}: {exc}") from None


def _pair_splits(cfg: DictConfig, data, rng: np.random.Generator):
    """Train / validation / test splits of the run's class pair (labels shuffled for a null run)."""
    return make_splits(
        data.x,
        data.y,
        class_pairs(len(data.class_names))[int(cfg.design.pair)],
        rng,
        shuffle_labels=cfg.labels == "shuffled",
        test_fraction=cfg.split.test_fraction,
        val_fraction=cfg.split.val_fraction,
        oversample=cfg.split.oversample,
        groups=data.groups,
    )


def _summary(cfg: DictConfig, result, splits, state_size: int, shape, device, seconds: dict) -> dict:
    """summary.json's fields of a headline run."""
    design = cfg.design
    _, time_slices, n_features = shape
    return {
        "data_source": design.data_source,
        "dataset": cfg.dataset.name,
        "pair": int(design.pair),
        "class_names": list(design.class_names),
        "labels": cfg.labels,
        "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss,
        "n_train": len(splits.y_train),
        # oversampled rows with their twin in the training set: the probe's chance level rises with it
        "train_repeated_share": repeated_share(splits.train_index),
        "n_val": len(splits.y_val),
        "n_test": len(splits.y_test),
        "batch_size": int(cfg.trainer.batch_size),
        "updates_per_epoch": result.updates_per_epoch,
        "time_slices": int(time_slices),
        "n_features": int(n_features),
        "hidden_size": int(state_size),
        "epochs": int(cfg.trainer.epochs),
        "device": str(device),
        "torch": torch.__version__,
        "seconds": seconds,
    }


def measure_at_init(model, splits, probes, device, batch_size: int) -> dict:
    """Epoch 0 (before any update) of the table probes that ask for it (``at_init: true``). Their forward
    and backward passes run in evaluation mode and draw no random numbers, so training is unchanged."""
    wanted = [p for p in probes if getattr(p, "at_init", False) and p.table != "curves"]
    if not wanted:
        return {}
    as_t = lambda a, dt: torch.as_tensor(a, dtype=dt, device=device)
    ctx = ProbeContext(
        0,
        model,
        as_t(splits.x_train, torch.float32),
        as_t(splits.y_train, torch.long),
        as_t(splits.x_test, torch.float32),
        as_t(splits.y_test, torch.long),
        None,
        clean_pass_states(model, batch_size),
    )
    out = {}
    for probe in wanted:
        tic = time.perf_counter()
        out[probe.table] = probe.compute(ctx)
        log.info("%s at epoch 0 (before any update): %.2f s", probe.name, time.perf_counter() - tic)
    return out
