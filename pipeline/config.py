"""Checks of composed run configurations: each helper raises ``ConfigError`` naming the key and what is
allowed, so that a bad value fails before anything runs (used by the planner and the study runners)."""

from __future__ import annotations

import math
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError


def _unique_token() -> str:
    """This launch's own name part: the process id and random bits (a timestamp alone collides)."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _help_text(part: str) -> Callable[[], str]:
    """``${lcm_config_groups:}`` / ``${lcm_config_keys:}`` in conf/hydra/help/lcm.yaml: generated from conf/."""

    def text() -> str:
        from . import command_help

        return getattr(command_help, part)(Path(__file__).resolve().parent.parent / "conf")

    return text


OUTPUTS_ENV = "LCM_OUTPUTS"


def outputs_default() -> str:
    """``${lcm_outputs:}``, paths.root's default: $LCM_OUTPUTS, else ``outputs`` (beside where you launch).
    A set but blank value is refused: it would put the outputs at the file system's root (``/debug``)."""
    value = os.environ.get(OUTPUTS_ENV)
    if value is None:
        return "outputs"
    if not value.strip():
        raise ConfigError(
            f"{OUTPUTS_ENV}={value!r} is set but empty: unset it (the outputs then go to ./outputs) or set it to "
            f"the outputs folder, e.g. {OUTPUTS_ENV}=$HOME/lcm-outputs"
        )
    return value


def outputs_path(value: object) -> str:
    """``${lcm_path:${paths.root}}`` in Hydra's folders: the root as every writer of the project reads it
    (``~`` expanded, made absolute), so that Hydra's folders and the run folders share one root."""
    return os.path.abspath(os.path.expanduser(str(value)))


def register_resolvers() -> None:
    """``${lcm_unique:}`` in hydra.sweep.dir / hydra.run.dir: cached, so that the launch and its jobs (which
    get a copy of the launch's resolver cache) name the same folder; ``${lcm_outputs:}`` and ``${lcm_path:}``
    (above); the help's generated parts, ``${lcm_config_groups:}`` and ``${lcm_config_keys:}``."""
    if not OmegaConf.has_resolver("lcm_unique"):
        OmegaConf.register_new_resolver("lcm_unique", _unique_token, use_cache=True)
    if not OmegaConf.has_resolver("lcm_outputs"):
        OmegaConf.register_new_resolver("lcm_outputs", outputs_default)
    if not OmegaConf.has_resolver("lcm_path"):
        OmegaConf.register_new_resolver("lcm_path", outputs_path)
    for name, part in (("lcm_config_groups", "config_groups_text"), ("lcm_config_keys", "config_keys_text")):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, _help_text(part))
    from .data.arrays import register_resolvers as register_arrays_resolver

    register_arrays_resolver()  # ${lcm_arrays:...}: an arrays data set's class names, from its file


register_resolvers()


def config_error_in(exc: BaseException | None) -> ConfigError | None:
    """The ConfigError behind ``exc`` (a resolver's refusal arrives wrapped in OmegaConf's error), or None."""
    seen = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, ConfigError):
            return link
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return None


def as_dict(node: DictConfig) -> dict[str, Any]:
    """A config node as plain Python containers, interpolations resolved."""
    data = OmegaConf.to_container(node, resolve=True)
    if not isinstance(data, dict):
        raise TypeError(f"expected a mapping, got {type(data).__name__}")
    return data  # type: ignore[return-value]  # keys of a DictConfig from YAML are strings


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
# a study's folder and a run's folder are single plain names under the root (never a path, never hidden:
# dot-folders are bookkeeping that status and the analysis skip)
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}")


def root_value(cfg: DictConfig) -> str:
    """paths.root as composed (its default resolved from $LCM_OUTPUTS), or ConfigError naming the key."""
    try:
        value = _select(cfg, "paths.root")
    except Exception as exc:
        inner = config_error_in(exc)
        raise ConfigError(f"paths.root: {inner or exc}") from None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"paths.root={value!r}: must name the outputs folder (default: ${OUTPUTS_ENV}, else ./outputs)"
        )
    return value


def check_root(cfg: DictConfig) -> None:
    """paths.root names a folder that exists or can be made, on storage this process may write to."""
    value = root_value(cfg)
    path = Path(outputs_path(value))
    if any(path == Path(p) or Path(p) in path.parents for p in _NOT_STORAGE):
        raise ConfigError(
            f"paths.root={value!r}: lies under {', '.join(_NOT_STORAGE)}, which are not storage; pick a folder on disk"
        )
    existing = path
    while not existing.exists() and not existing.is_symlink():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"paths.root={value!r}: {existing} is not a folder this process may write to")


def check_plain_name(key: str, value: object, what: str) -> str:
    """``value`` if it is a plain folder name, else ConfigError naming ``key``."""
    if not isinstance(value, str) or not PLAIN_NAME.fullmatch(value) or value in (".", ".."):
        raise ConfigError(
            f"{key}={value!r}: must be a plain folder name (letters, digits and . _ + = -, starting with a letter "
            f"or digit, at most 200 characters), because {what}"
        )
    return value


def check_study_name(cfg: DictConfig) -> str:
    return check_plain_name(
        "study.name", _select(cfg, "study.name"), "the runs go to <paths.root>/<study.name>/runs/, never elsewhere"
    )


def check_inside(key: str, value: object, folder: str, hint: str) -> str:
    """``value`` (a path, ``~`` expanded, relative to where you launch) lies inside ``folder``, else
    ConfigError naming ``key``."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}={value!r}: must name a folder inside {folder} ({hint})")
    path, inside = Path(os.path.normpath(outputs_path(value))), Path(os.path.normpath(folder))
    if path != inside and inside not in path.parents:
        raise ConfigError(f"{key}={value!r}: lies outside {folder}; {hint}")
    return str(path)


def check_relative_part(key: str, value: object) -> None:
    """A path part joined under a folder (Hydra's output_subdir, sweep.subdir): relative, without ``..``."""
    if value is None:
        return
    text = str(value)
    if not text.strip() or os.path.isabs(os.path.expanduser(text)) or ".." in Path(text).parts:
        raise ConfigError(f"{key}={value!r}: must be a relative path without '..' (it is joined under paths.root)")


def hydra_root(root: str) -> str:
    """Where Hydra's bookkeeping of a root goes (and nothing else)."""
    return os.path.join(outputs_path(root), ".hydra")


def check_hydra_folders(hydra_cfg: DictConfig, root: str, mode: str) -> str:
    """Hydra's folder of this launch (``hydra.run.dir`` of a single run, ``hydra.sweep.dir`` of a sweep)
    lies inside ``<paths.root>/.hydra`` and its parts stay there; the folder, or ConfigError naming the key."""
    key = "hydra.run.dir" if mode == "run" else "hydra.sweep.dir"
    hint = "Hydra's folders of a launch stay in <paths.root>/.hydra (move the outputs with paths.root)"
    try:
        folder = OmegaConf.select(hydra_cfg, key.split(".", 1)[1], throw_on_missing=True)
    except Exception as exc:
        raise ConfigError(f"{key}: {config_error_in(exc) or exc}") from None
    folder = check_inside(key, folder, hydra_root(root), hint)
    # as written: a job's subdir interpolates its job number, known only to the job
    raw = OmegaConf.to_container(hydra_cfg, resolve=False)
    raw = raw if isinstance(raw, dict) else {}
    check_relative_part("hydra.output_subdir", raw.get("output_subdir"))
    if mode != "run":
        sweep = raw.get("sweep")
        check_relative_part("hydra.sweep.subdir", sweep.get("subdir") if isinstance(sweep, dict) else None)
    if OmegaConf.select(hydra_cfg, "job.chdir"):
        raise ConfigError(
            "hydra.job.chdir=true: must be false: a job that changes its working folder would read a relative "
            "paths.root from there, and write its runs elsewhere"
        )
    return folder


def check_threads(cfg: DictConfig, max_threads: int | None = None) -> None:
    """trainer.num_threads: 0 or null (torch's own choice) or at most the cores a run may use (``max_threads``:
    a Slurm task's CPUs; else this machine's cores). More threads than cores only slow a run down; far
    more crash torch."""
    if OmegaConf.select(cfg, "trainer.num_threads", default=object()) is None:
        return
    if "trainer" not in cfg or "num_threads" not in cfg.trainer:
        return
    cores = max_threads or _usable_cores()
    value = _select(cfg, "trainer.num_threads")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= cores:
        raise ConfigError(
            f"trainer.num_threads={value!r}: must be an integer in 0..{cores} (the cores a run has here; "
            f"0 or null: torch's own choice)"
        )


def _usable_cores() -> int:
    """The cores this process may run on (a Slurm allocation or taskset limits them), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_WANDB_CONSOLE = ("off", "auto", "wrap", "redirect")


def check_logger(cfg: DictConfig) -> None:
    """logger.wandb's values (the mirror's; checked here, before anything runs, because a bad one would
    otherwise fail a run at its first image log)."""
    if OmegaConf.select(cfg, "logger.wandb") is None:
        return
    check_int(cfg, "logger.wandb.media_every", 0)
    for key in ("project",):
        value = _select(cfg, f"logger.wandb.{key}")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"logger.wandb.{key}={value!r}: must name the W&B project")
    entity = _select(cfg, "logger.wandb.entity")
    if entity is not None and (not isinstance(entity, str) or not entity.strip()):
        raise ConfigError(f"logger.wandb.entity={entity!r}: must be a W&B entity (user or team) name, or null")
    scale = _select(cfg, "logger.wandb.color_scale")
    numbers = OmegaConf.to_container(scale) if OmegaConf.is_list(scale) else scale
    if (
        not isinstance(numbers, list)
        or len(numbers) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers)
        or not numbers[0] < numbers[1]
    ):
        raise ConfigError(f"logger.wandb.color_scale={numbers!r}: must be [low, high] with low < high, e.g. [0.4, 1.0]")
    chance = _select(cfg, "logger.wandb.chance")
    if chance not in (None, "auto") and (
        isinstance(chance, bool) or not isinstance(chance, (int, float)) or not 0 <= chance <= 1
    ):
        raise ConfigError(f"logger.wandb.chance={chance!r}: allowed values are auto, null or a number in 0..1")
    if "console" in cfg.logger.wandb:
        check_choice(cfg, "logger.wandb.console", _WANDB_CONSOLE)
    if "requirements" in cfg.logger.wandb:
        check_bool(cfg, "logger.wandb.requirements")


WANDB_MODES = ("offline", "online", "disabled")


def wandb_mode() -> str:
    """The W&B mirror's mode (pipeline/tracking.py), from ``WANDB_MODE``; ``dryrun`` is ``offline``."""
    mode = os.environ.get("WANDB_MODE", "disabled").strip().lower() or "disabled"
    if mode == "dryrun":
        mode = "offline"
    if mode not in WANDB_MODES:
        raise ValueError(f"WANDB_MODE={mode!r}: allowed values are {', '.join(WANDB_MODES)}")
    return mode


def check_wandb_mode() -> None:
    """WANDB_MODE, read by the tracker at run time, checked before anything runs."""
    try:
        wandb_mode()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_added_keys(overrides, compose) -> None:
    """``+key=value`` (or ``++key`` for a key the config lacks) adds a key that no part of the pipeline reads
    (a typo would otherwise pass silently); Hydra's own keys (``+hydra.launcher...``) may be added, and so may
    ``+model.<key>`` where the model is a user's module (``model._target_``): its constructor takes them,
    and its signature is checked. ``compose(overrides)`` composes a config (to see whether a ``++`` key
    exists without it)."""
    absent, base = object(), None
    for override in overrides:
        if override.startswith("+") and not override.lstrip("+").startswith("hydra"):
            key = override.lstrip("+").split("=", 1)[0]
            if override.startswith("++") or key.startswith("model."):
                if base is None:
                    base = compose([o for o in overrides if not o.startswith("+")])
                if override.startswith("++") and OmegaConf.select(base, key, default=absent) is not absent:
                    continue  # ++ on a key that exists sets it
                if key.startswith("model.") and OmegaConf.select(base, "model._target_", default=None) is not None:
                    continue  # an argument of the user's module
            raise ConfigError(
                f"{override}: adds the key {key}, which no part of the pipeline reads; the keys that "
                f"can be set are those of `python -m pipeline --cfg job` (without +)"
            )
