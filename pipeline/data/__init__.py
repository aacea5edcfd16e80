"""The data layer: load a data set (``conf/dataset/<name>.yaml``) -> SequenceData.

``load_dataset(dataset_cfg)`` dispatches on ``dataset_cfg.loader`` (a key of
``LOADERS``); the other keys are that loader's options (docs/data.md). Loads
are cached in-process, keyed on the whole dataset config, so the many runs of
one process share one copy; the cached arrays are read-only. numpy only: this
package never imports torch.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Mapping
from typing import Any

from .arrays import load_arrays
from .base import DataNotFoundError, SequenceData, opt
from .bbc import load_bbc_news
from .emotion import EMOTION_CLASSES, load_emotion
from .imigue import CLASS_NAMES as IMIGUE_CLASS_NAMES
from .imigue import GROUPS as IMIGUE_GROUPS
from .imigue import load_imigue
from .ucr import load_ucr
from .watch import load_watch

__all__ = [
    "SequenceData",
    "DataNotFoundError",
    "LOADERS",
    "load_dataset",
    "class_pairs",
    "clear_cache",
    "register_loader",
    "EMOTION_CLASSES",
    "IMIGUE_CLASS_NAMES",
    "IMIGUE_GROUPS",
]

Loader = Callable[[Mapping[str, Any]], SequenceData]

LOADERS: dict[str, Loader] = {
    "ucr": load_ucr,
    "bbc_news": load_bbc_news,
    "emotion": load_emotion,
    "imigue": load_imigue,
    "watch": load_watch,
    "arrays": load_arrays,  # your own data set in the arrays format (pipeline/data/arrays.py)
}


def register_loader(name: str) -> Callable[[Loader], Loader]:
    """Decorator: add a loader to ``LOADERS`` under ``name``."""

    def deco(fn: Loader) -> Loader:
        LOADERS[name] = fn
        return fn

    return deco


def class_pairs(n_classes: int) -> list[tuple[int, int]]:
    """Every 2-combination of the class indices; ``pair=k`` is element k."""
    return list(itertools.combinations(range(int(n_classes)), 2))


def _plain(cfg: Any) -> Any:
    """A plain, resolved dict/list view of a DictConfig (or of a plain mapping)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, Mapping):
        return {str(k): _plain(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [_plain(v) for v in cfg]
    return cfg


def _key(cfg: Mapping[str, Any]) -> str:
    return json.dumps(_plain(cfg), sort_keys=True, default=str)


def _check(data: SequenceData, cfg: Mapping[str, Any]) -> None:
    name = opt(cfg, "name", "?")
    n_classes = opt(cfg, "n_classes")
    if n_classes is not None and int(n_classes) != data.n_classes:
        raise ValueError(
            f"dataset {name!r}: the config says n_classes={n_classes} but the loader returned "
            f"{data.n_classes} classes {data.class_names}"
        )
    names = opt(cfg, "class_names")
    if names is not None and tuple(str(c) for c in names) != data.class_names:
        raise ValueError(
            f"dataset {name!r}: config class_names {list(names)} differ from the loader's {list(data.class_names)}"
        )
    source = opt(cfg, "source")
    if source is not None and source != data.source:
        raise ValueError(f"dataset {name!r}: source {source!r} but the loader returned {data.source!r}")
    missing = [c for c, n in data.class_counts().items() if n == 0]
    if missing:
        raise ValueError(f"dataset {name!r}: no sequences for classes {missing}")


@functools.lru_cache(maxsize=8)
def _load_cached(key: str) -> SequenceData:
    cfg = json.loads(key)
    loader_name = cfg.get("loader")
    if loader_name not in LOADERS:
        raise ValueError(f"dataset.loader={loader_name!r} is not a known loader; known: {sorted(LOADERS)}")
    data = LOADERS[loader_name](cfg)
    _check(data, cfg)
    for arr in (data.x, data.y, data.lengths, data.groups):
        if arr is not None:
            arr.flags.writeable = False
    return data


def load_dataset(dataset_cfg: Mapping[str, Any], *, cache: bool = True) -> SequenceData:
    """Load the data set a ``dataset`` config describes (DictConfig or dict).

    With ``cache=True`` (default) a second call with an equal config returns
    the same object (read-only arrays); ``cache=False`` loads afresh.
    """
    key = _key(dataset_cfg)
    if cache:
        return _load_cached(key)
    return _load_cached.__wrapped__(key)


def clear_cache() -> None:
    """Forget every cached load (data sets, BBC sentences, GloVe package)."""
    from . import bbc, glove, watch

    _load_cached.cache_clear()
    bbc.bbc_sentences.cache_clear()
    watch._read_cached.cache_clear()
    glove._package_files.cache_clear()
