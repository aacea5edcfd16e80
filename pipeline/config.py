"""Validation of a composed run configuration, before anything runs.

Hydra already rejects unknown keys and unknown config-group choices, naming the
allowed options. This module checks the values: types, ranges and choices, and
that the pieces fit together (a data set belongs to the chosen data source).
"""
from __future__ import annotations

from omegaconf import DictConfig

LABELS = ("real", "shuffled")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and the allowed values."""


def _int(cfg: DictConfig, key: str, minimum: int) -> int:
    value = cfg
    for part in key.split("."):
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r}: must be an integer >= {minimum}")
    return value


def validate(cfg: DictConfig) -> None:
    if cfg.labels not in LABELS:
        raise ConfigError(f"labels={cfg.labels!r}: allowed values are {', '.join(LABELS)}")
    _int(cfg, "seed", 0)
    _int(cfg, "pair", 0)
    _int(cfg, "trainer.epochs", 1)
    _int(cfg, "trainer.batch_size", 1)
    if not isinstance(cfg.trainer.lr, (int, float)) or cfg.trainer.lr <= 0:
        raise ConfigError(f"trainer.lr={cfg.trainer.lr!r}: must be a number > 0")
    for key in ("test_fraction", "val_fraction"):
        value = cfg.split[key]
        if not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ConfigError(f"split.{key}={value!r}: must be a number between 0 and 1 (exclusive)")
    source = cfg.data_source.name
    if cfg.dataset.source != source:
        raise ConfigError(
            f"dataset={cfg.dataset.name} belongs to data source {cfg.dataset.source!r}, "
            f"but data_source={source}; pick a {source} data set or data_source={cfg.dataset.source}")
    if source not in cfg.study.data_sources:
        raise ConfigError(f"data_source={source} is not in study {cfg.study.name!r} "
                          f"(its data sources: {', '.join(cfg.study.data_sources)})")
    n_classes = int(cfg.dataset.n_classes)
    n_pairs = n_classes * (n_classes - 1) // 2
    if cfg.pair >= n_pairs:
        raise ConfigError(f"pair={cfg.pair}: data set {cfg.dataset.name} has {n_classes} classes, "
                          f"so pair must be in 0..{n_pairs - 1}")
