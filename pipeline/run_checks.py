"""Checks of a planned sequence run that need its data: the values that are only wrong for the chosen data
set (its options, its class count, a class pair whose classes are too small, split fractions that leave a
class out of a split, a deficit on features the data lacks or on steps the run never takes).

The data set is loaded as the run loads it (``pipeline.data.load_dataset``, cached in-process, so a run
planned in its own process reuses the load) and the run's own split is drawn from its labels with its own
seed (``pipeline.splits.make_splits``), so what is checked is exactly what the run would train and test
on. Each problem is a ``ConfigError`` naming the key, raised while planning, before anything is written.
"""

from __future__ import annotations

import math

import numpy as np
from omegaconf import DictConfig

from .config import ConfigError, as_dict

# a class of the pair needs a sequence in each of train, validation and test
MIN_PER_CLASS = 3


def check_run_data(cfg: DictConfig) -> None:
    """ConfigError for a sequence run (its design block filled in) that its data cannot carry."""
    data = _load(cfg)
    pair = _pair_classes(cfg, data)
    _check_class_sizes(cfg, data, pair)
    n_train = _check_split(cfg, data, pair)
    _check_batches(cfg, n_train)
    _check_deficit_on_data(cfg, data, n_train)
    _check_probe_layers(cfg, data)


def _load(cfg: DictConfig):
    from .data import DataNotFoundError, load_dataset

    try:
        return load_dataset(as_dict(cfg.dataset))
    except DataNotFoundError as exc:
        raise ConfigError(f"dataset={cfg.dataset.name}: {exc}") from None
    except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, OSError) as exc:
        # the loaders name their options (dataset.window, dataset.classes, ...) in their messages
        text = str(exc) if "dataset" in str(exc) else f"{type(exc).__name__}: {exc}"
        raise ConfigError(f"dataset={cfg.dataset.name} cannot be loaded with these options: {text}") from None


def _pair_classes(cfg: DictConfig, data) -> tuple[int, int]:
    from .data import class_pairs

    pairs = class_pairs(data.n_classes)
    pair = int(cfg.design.pair)
    if not 0 <= pair < len(pairs):
        raise ConfigError(
            f"pair={pair}: data set {cfg.dataset.name} has {data.n_classes} classes, so pair must be in "
            f"0..{len(pairs) - 1}"
        )
    return pairs[pair]


def _check_class_sizes(cfg: DictConfig, data, pair: tuple[int, int]) -> None:
    counts = np.bincount(np.asarray(data.y), minlength=data.n_classes)
    small = [(data.class_names[c], int(counts[c])) for c in pair if counts[c] < MIN_PER_CLASS]
    if small:
        listing = ", ".join(f"{name!r} has {n}" for name, n in small)
        raise ConfigError(
            f"pair={int(cfg.design.pair)} of dataset={cfg.dataset.name}: class {listing} sequence(s); each class "
            f"of a pair needs at least {MIN_PER_CLASS} (one each for training, validation and test): pick another "
            f"pair, or give the data set more sequences of that class"
        )


def _check_split(cfg: DictConfig, data, pair: tuple[int, int]) -> int:
    """The run's own split (its labels, its seed): every split holds both classes; the training set's size."""
    from .splits import make_splits

    split = cfg.split
    where = (
        f"split.test_fraction={split.test_fraction}, split.val_fraction={split.val_fraction} on pair "
        f"{int(cfg.design.pair)} of dataset={cfg.dataset.name}"
    )
    try:
        splits = make_splits(
            np.zeros((len(data.y), 1, 1), np.float32),  # the labels decide the split, not the sequences
            np.asarray(data.y),
            pair,
            np.random.default_rng(int(cfg.design.rng_seed)),
            shuffle_labels=cfg.labels == "shuffled",
            test_fraction=split.test_fraction,
            val_fraction=split.val_fraction,
            oversample=split.oversample,
            groups=data.groups,
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    for name, labels in (("training", splits.y_train), ("validation", splits.y_val), ("test", splits.y_test)):
        missing = [data.class_names[pair[c]] for c in (0, 1) if not np.any(labels == c)]
        if missing:
            raise ConfigError(
                f"{where}: the {name} set ({len(labels)} sequences) would hold no sequence of class "
                f"{', '.join(map(repr, missing))}; choose fractions that leave every class in every split "
                f"(the defaults are 0.2 and 0.2)"
            )
    return len(splits.y_train)


def _check_batches(cfg: DictConfig, n_train: int) -> None:
    knn = cfg.probe.get("knn") or {}
    k = knn.get("k")
    if knn.get("enabled", True) and isinstance(k, int) and k >= n_train:
        raise ConfigError(f"probe.knn.k={k}: the training set has {n_train} sequences; k must be below that")


def _check_deficit_on_data(cfg: DictConfig, data, n_train: int) -> None:
    deficit = cfg.get("deficit")
    if deficit is None or deficit.get("kind", "none") == "none":
        return
    n_features = int(data.x.shape[-1])
    features = deficit.get("features")
    if features is not None and max(features) >= n_features:
        raise ConfigError(
            f"deficit.features={list(features)!r}: dataset={cfg.dataset.name} has {n_features} input "
            f"feature(s), so indices must be in 0..{n_features - 1}"
        )
    if deficit.get("unit", "epoch") == "step":
        steps = int(cfg.trainer.epochs) * _updates_per_epoch(n_train, int(cfg.trainer.batch_size))
        if int(deficit.onset) >= steps:
            raise ConfigError(
                f"deficit.onset={deficit.onset} (unit step): the run takes {steps} training steps "
                f"({cfg.trainer.epochs} epochs of {_updates_per_epoch(n_train, int(cfg.trainer.batch_size))}), "
                f"so the deficit would never apply; the onset must be below {steps}"
            )


def _check_probe_layers(cfg: DictConfig, data) -> None:
    """The layers the enabled probes name exist in the run's model (built here as the run builds it, for the
    data's shape; an LSTM of the study's size costs milliseconds)."""
    probes = cfg.probe
    spectrum = probes.get("gradient_spectrum") or {}
    structure = probes.get("category_structure") or {}
    wanted = (spectrum.get("enabled") and spectrum.get("layers")) or structure.get("enabled")
    if not wanted:
        return
    from .model import build_model
    from .probes.category_structure import layer_names
    from .probes.gradient_spectrum import GroupGradients

    _, time_slices, n_features = data.x.shape
    model = build_model(cfg.model, int(time_slices), int(n_features))
    try:
        if spectrum.get("enabled") and spectrum.get("layers"):
            GroupGradients(model, list(spectrum["layers"]))
        if structure.get("enabled"):
            layer_names(model, structure.get("layers", "auto"))
    except ValueError as exc:  # the probes' own messages name the key and the model's layers
        raise ConfigError(str(exc)) from None


def _updates_per_epoch(n_train: int, batch_size: int) -> int:
    """As pipeline.train.batch_bounds cuts an epoch: a last batch of one row joins the one before it."""
    n = math.ceil(n_train / batch_size)
    return n - 1 if batch_size > 1 and n > 1 and n_train % batch_size == 1 else n
