"""Planning-time checks of the ``model`` config group (torch-free): a built-in model's options, or a user's
module that can be imported and called the protocol's way, each failure a ``ConfigError`` naming the key."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, as_dict
from .config_schema import schema_of, validate_node

# the built-in models (pipeline/model.py) and the options each takes beyond the shared sizes (their types and
# bounds: pipeline/config_schema.py)
BUILTIN_OPTIONS = {
    "lstm": (),
    "gru": (),
    "rnn": (),
    "transformer": ("n_heads", "n_layers", "feedforward_size", "dropout"),
    "tcn": ("kernel_size", "n_layers"),
}
# keys of a model config that the pipeline reads, never passed to a user's module
RESERVED_KEYS = ("name", "_target_")


def check_model_config(model_cfg: DictConfig) -> None:
    """Raise ConfigError for a model config that cannot be built: each key against the model's schema
    (pipeline/config_schema.py: types, bounds, allowed names), then what relates keys to each other."""
    if "_target_" in model_cfg.keys() and OmegaConf.is_missing(model_cfg, "_target_"):
        raise ConfigError(
            "model._target_ is required with model=custom: the import path of your torch module, e.g. "
            "model._target_=my_package.MyNet (docs/bring_your_own.md)"
        )
    validate_node(model_cfg, schema_of(OmegaConf.create({"model": model_cfg}))["model"], "model")
    if model_cfg.get("_target_") is not None:
        _check_user_model(model_cfg)
    elif model_cfg.name == "transformer":
        _check_transformer(model_cfg)


def _check_transformer(model_cfg: DictConfig) -> None:
    heads, size = int(model_cfg.n_heads), model_cfg.hidden_size
    if size is not None and max(int(size), int(model_cfg.min_hidden_size)) % heads:
        raise ConfigError(
            f"model.hidden_size={size}: a Transformer's size must be a multiple of model.n_heads={heads} "
            "(each head gets hidden_size / n_heads); null sizes it automatically"
        )


def _check_user_model(model_cfg: DictConfig) -> None:
    target = model_cfg["_target_"]
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(
            f"model._target_={target!r}: must be the import path of a torch module, e.g. my_package.MyNet"
        )
    try:
        check_user_model_signature(target, user_model_options(model_cfg))
    except Exception as exc:  # ImportError, AttributeError (Hydra's), TypeError: all say what is wrong
        raise ConfigError(
            f"model._target_={target}: {exc}. The protocol: {target}(time_slices=T, n_features=F, n_classes=C, "
            "**other model keys) -> a torch module whose forward maps N x T x F to (logits N x C, states N x T x H) "
            "(docs/bring_your_own.md)"
        ) from None


def user_model_options(model_cfg) -> dict[str, Any]:
    """The keys of a user model's config that its constructor receives (all but name and _target_)."""
    plain = as_dict(model_cfg) if OmegaConf.is_config(model_cfg) else dict(model_cfg)
    return {str(key): value for key, value in plain.items() if key not in RESERVED_KEYS}


def user_model_class(target: str):
    """The class (or factory) that ``model._target_`` names, imported as Hydra imports it."""
    from hydra.utils import get_object

    return get_object(target)


def check_user_model_signature(target: str, options: Mapping[str, Any]) -> None:
    """``target`` can be called with the protocol's sizes and ``options`` (raises TypeError / ImportError
    saying which key it does not take)."""
    factory = user_model_class(target)
    if not callable(factory):
        raise TypeError(f"{target} is not a class or function")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: the run will tell
        return
    sizes = {"time_slices": 1, "n_features": 1, "n_classes": 2}
    try:
        signature.bind(**sizes, **options)
    except TypeError as exc:
        raise TypeError(
            f"{target}{signature} cannot be called as {target}(time_slices=..., n_features=..., n_classes=..."
            + "".join(f", {key}=..." for key in options)
            + f"): {exc}"
        ) from None
