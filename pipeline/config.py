"""Checks of composed run configurations: each helper raises ``ConfigError`` naming the key and what is
allowed, so that a bad value fails before anything runs (used by the planner and the study runners)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def _unique_token() -> str:
    """This launch's own name part: the process id and random bits (a timestamp alone collides)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _help_text(part: str):
    """``${lcm_config_groups:}`` / ``${lcm_config_keys:}`` in conf/hydra/help/lcm.yaml: generated from conf/."""

    def text() -> str:
        from . import command_help

        return getattr(command_help, part)(Path(__file__).resolve().parent.parent / "conf")

    return text


def register_resolvers() -> None:
    """``${lcm_unique:}`` in hydra.sweep.dir / hydra.run.dir: cached, so that the launch and its jobs (which
    get a copy of the launch's resolver cache) name the same folder. The help's generated parts."""
    if not OmegaConf.has_resolver("lcm_unique"):
        OmegaConf.register_new_resolver("lcm_unique", _unique_token, use_cache=True)
    for name, part in (("lcm_config_groups", "config_groups_text"), ("lcm_config_keys", "config_keys_text")):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, _help_text(part))


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
        bounds = " and ".join(
            b for b in (f"> {low}" if low is not None else "", f"< {high}" if high is not None else "") if b
        )
        raise ConfigError(f"{key}={value!r}: must be a number {bounds}")
    return value


def check_choice(cfg: DictConfig, key: str, choices) -> object:
    value = _select(cfg, key)
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: allowed values are {', '.join(map(str, choices))}")
    return value


def check_bool(cfg: DictConfig, key: str) -> bool:
    value = _select(cfg, key)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: must be true or false")
    return value


def check_int_range(cfg: DictConfig, key: str, low: int, high: int, *, optional: bool = False) -> int | None:
    """An integer in low..high (or null where ``optional``)."""
    value = _select(cfg, key)
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        extra = " or null" if optional else ""
        raise ConfigError(f"{key}={value!r}: must be an integer in {low}..{high}{extra}")
    return value


# folders that are not storage: a run written there fails late, after its folder was half made
_NOT_STORAGE = ("/proc", "/sys", "/dev")


def check_root(cfg: DictConfig) -> None:
    """paths.root names a folder that exists or can be made, on storage this process may write to."""
    import os
    from pathlib import Path

    value = _select(cfg, "paths.root")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"paths.root={value!r}: must name the outputs folder (default: $LCM_OUTPUTS, else ./outputs)")
    path = Path(value).expanduser().absolute()
    if any(path == Path(p) or Path(p) in path.parents for p in _NOT_STORAGE):
        raise ConfigError(
            f"paths.root={value!r}: lies under {', '.join(_NOT_STORAGE)}, which are not storage; pick a folder on disk"
        )
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"paths.root={value!r}: {existing} is not a folder this process may write to")


def check_wandb_mode() -> None:
    """WANDB_MODE, read by the tracker at run time, checked before anything runs."""
    from .tracking import wandb_mode

    try:
        wandb_mode()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_added_keys(overrides, compose) -> None:
    """``+key=value`` (or ``++key`` for a key the config lacks) adds a key that no part of the pipeline reads
    (a typo would otherwise pass silently); Hydra's own keys (``+hydra.launcher...``) may be added.
    ``compose(overrides)`` composes a config (to see whether a ``++`` key exists without it)."""
    absent, base = object(), None
    for override in overrides:
        if override.startswith("+") and not override.lstrip("+").startswith("hydra"):
            key = override.lstrip("+").split("=", 1)[0]
            if override.startswith("++"):
                if base is None:
                    base = compose([o for o in overrides if not o.startswith("+")])
                if OmegaConf.select(base, key, default=absent) is not absent:
                    continue  # ++ on a key that exists sets it
            raise ConfigError(
                f"{override}: adds the key {key}, which no part of the pipeline reads; the keys that "
                f"can be set are those of `python -m pipeline --cfg job` (without +)"
            )
