"""Validation helpers for composed run configurations.

Hydra already rejects unknown keys and unknown config-group choices, naming the
allowed options. Each study runner checks its values with these helpers before
anything runs (``pipeline.studies.*.validate``), so that a bad value fails at
once with a message that names the key and what is allowed.
"""
from __future__ import annotations

import os
import uuid

from omegaconf import DictConfig, OmegaConf


def _unique_token() -> str:
    """This launch's own name part: the process id and random bits (a timestamp alone collides)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def register_resolvers() -> None:
    """``${lcm_unique:}`` in hydra.sweep.dir / hydra.run.dir: cached, so that the launch and its jobs (which
    get a copy of the launch's resolver cache) name the same folder."""
    if not OmegaConf.has_resolver("lcm_unique"):
        OmegaConf.register_new_resolver("lcm_unique", _unique_token, use_cache=True)


register_resolvers()


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and the allowed values."""


def _select(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, throw_on_missing=True)


def check_int(cfg: DictConfig, key: str, minimum: int) -> int:
    value = _select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}={value!r}: must be an integer >= {minimum}")
    return value


def check_number(cfg: DictConfig, key: str, low: float | None, high: float | None) -> float:
    """A number strictly between low and high (either may be None: unbounded)."""
    value = _select(cfg, key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (low is None or value > low) and (high is None or value < high)
    if not ok:
        bounds = " and ".join(b for b in (f"> {low}" if low is not None else "",
                                          f"< {high}" if high is not None else "") if b)
        raise ConfigError(f"{key}={value!r}: must be a number {bounds}")
    return value


def check_choice(cfg: DictConfig, key: str, choices) -> object:
    value = _select(cfg, key)
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: allowed values are {', '.join(map(str, choices))}")
    return value
