"""Deficits: a window ``[onset, onset + length)`` of steps or epochs in which part of the training
signal is blocked or corrupted. ``Window`` is the schedule (the critical-period runners use it);
``sequence_deficit`` turns the ``deficit:`` config block into the batch transform of the sequence
runs (keys and behaviour: docs/companion_critical_multitask.md, "Deficits for any run")."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import ConfigError

KINDS = ("none", "zero", "noise")
UNITS = ("epoch", "step")
# mixed into the run's seed for the deficit's own random draws
_SALT = 0xDEF1C17


@dataclass(frozen=True)
class Window:
    """The deficit's time window ``[onset, onset + length)`` on a zero-based clock."""

    onset: int
    length: int

    @property
    def end(self) -> int:
        return self.onset + self.length

    def active(self, t: int) -> bool:
        return self.onset <= t < self.end

    def __bool__(self) -> bool:
        return self.length > 0


def _get(cfg: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    value = cfg.get(key, default)
    return default if value is None and default is not None else value


def _int(cfg, key: str, minimum: int, default: int) -> int:
    value = _get(cfg, key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"deficit.{key}={value!r}: must be an integer >= {minimum}")
    return value


def validate_deficit(
    cfg: Mapping[str, Any] | None,
    *,
    source: str | None = None,
    n_features: int | None = None,
    study_sources: Sequence[str] | None = None,
    epochs: int | None = None,
) -> None:
    """Raise ``ConfigError`` (naming the key and what is allowed) for a deficit that cannot work. Planning
    (which passes the run's ``epochs``) also refuses one that would be recorded as a deficit run while
    applying nothing: sources the study does not have (``study_sources``), an empty window, an onset at or
    past the run's last epoch."""
    if cfg is None:
        return
    kind = _get(cfg, "kind", "none")
    if kind not in KINDS:
        raise ConfigError(f"deficit.kind={kind!r}: allowed values are {', '.join(KINDS)}")
    unit = _get(cfg, "unit", "epoch")
    if unit not in UNITS:
        raise ConfigError(f"deficit.unit={unit!r}: allowed values are {', '.join(UNITS)}")
    _int(cfg, "onset", 0, 0)
    _int(cfg, "length", 0, 0)
    fraction = _get(cfg, "fraction", 1.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ConfigError(f"deficit.fraction={fraction!r}: must be a number in (0, 1]")
    noise_std = _get(cfg, "noise_std", 1.0)
    if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or noise_std <= 0:
        raise ConfigError(f"deficit.noise_std={noise_std!r}: must be a number > 0")
    sources = _get(cfg, "sources")
    if sources is not None and (isinstance(sources, str) or not all(isinstance(s, str) for s in sources)):
        raise ConfigError(f"deficit.sources={sources!r}: must be null or a list of data source names, e.g. [gesture]")
    features = _get(cfg, "features")
    if features is not None:
        if (
            isinstance(features, (str, int))
            or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in features)
            or not len(features)
        ):
            raise ConfigError(
                f"deficit.features={features!r}: must be null or a non-empty list of input feature indices >= 0"
            )
        if n_features is not None and max(features) >= n_features:
            raise ConfigError(
                f"deficit.features={list(features)!r}: this data set has {n_features} input "
                f"feature(s), so indices must be in 0..{n_features - 1}"
            )
    if kind != "none" and epochs is not None:
        _check_applies(cfg, unit, study_sources, epochs)


def _check_applies(cfg, unit: str, study_sources: Sequence[str] | None, epochs: int) -> None:
    """A deficit that is on must touch something: a source of the study, a non-empty window inside the run."""
    sources = _get(cfg, "sources")
    if sources is not None:
        if not len(sources):
            raise ConfigError("deficit.sources=[]: names no data source; null applies the deficit to every source")
        unknown = [s for s in sources if study_sources is not None and s not in list(study_sources)]
        if unknown and study_sources is not None:
            raise ConfigError(
                f"deficit.sources={list(sources)!r}: {', '.join(unknown)} is not a data source of the study "
                f"(its sources: {', '.join(study_sources or [])}); the deficit would apply to no run"
            )
    length, onset = _int(cfg, "length", 0, 0), _int(cfg, "onset", 0, 0)
    if length == 0:
        raise ConfigError(
            f"deficit.length=0 with deficit.kind={_get(cfg, 'kind')}: the deficit would never apply; give its "
            f"length in {unit}s (or deficit.kind=none)"
        )
    if unit == "epoch" and onset >= epochs:
        raise ConfigError(
            f"deficit.onset={onset}: the run trains {epochs} epochs (zero-based 0..{epochs - 1}), so a deficit "
            f"starting there would never apply; the onset must be below {epochs}"
        )


def window_of(cfg: Mapping[str, Any] | None) -> Window:
    return Window(_int(cfg, "onset", 0, 0), _int(cfg, "length", 0, 0))


def applies(cfg: Mapping[str, Any] | None, source: str | None = None) -> bool:
    """Whether the deficit does anything for a run of ``source``."""
    if cfg is None or _get(cfg, "kind", "none") == "none" or not window_of(cfg):
        return False
    sources = _get(cfg, "sources")
    return sources is None or source is None or source in list(sources)


def affected_samples(n_train: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over the training samples: which ones the deficit touches (drawn from the seed)."""
    mask = np.zeros(n_train, dtype=bool)
    count = int(round(fraction * n_train))
    if fraction >= 1 or count >= n_train:
        mask[:] = True
    elif count > 0:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SALT]))
        mask[rng.choice(n_train, count, replace=False)] = True
    return mask


def build_batch_transform(
    cfg: Mapping[str, Any] | None, *, seed: int, x_train: np.ndarray, source: str | None = None
) -> Callable | None:
    """``batch_transform(epoch, x_batch, index) -> x_batch`` for ``train_run``, or None (no deficit).

    ``epoch`` is ``train_run``'s one-based epoch; ``index`` the batch's row
    indices into ``x_train`` (shape ``(N, T, F)``). With ``unit: step`` the
    transform counts its own calls (one per training batch) as the step clock.
    """
    n_features = int(x_train.shape[-1])
    validate_deficit(cfg, source=source, n_features=n_features)
    if not applies(cfg, source):
        return None
    import torch  # the sequence models' side only; the module's schedule helpers need no torch

    kind = _get(cfg, "kind")
    window = window_of(cfg)
    by_step = _get(cfg, "unit", "epoch") == "step"
    features = _get(cfg, "features")
    features = None if features is None else torch.as_tensor(list(features), dtype=torch.long)
    sample_mask = torch.as_tensor(affected_samples(len(x_train), float(_get(cfg, "fraction", 1.0)), seed))
    all_samples = bool(sample_mask.all())
    std = None
    if kind == "noise":
        flat = np.asarray(x_train, dtype=np.float64).reshape(-1, n_features)
        std = torch.as_tensor(flat.std(axis=0) * float(_get(cfg, "noise_std", 1.0)), dtype=torch.float32)
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), _SALT, 1]).generate_state(1)[0]))
    clock = {"step": 0}

    def transform(epoch: int, x_batch, index):
        t = clock["step"] if by_step else epoch - 1
        clock["step"] += 1
        if not window.active(t):
            return x_batch
        rows = sample_mask[index.cpu()] if not all_samples else None
        if rows is not None and not bool(rows.any()):
            return x_batch
        x = x_batch.clone()
        if kind == "zero":
            replacement = torch.zeros_like(x)
        else:  # noise
            assert std is not None
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float32) * std
            replacement = noise.to(device=x.device, dtype=x.dtype)
        keep = torch.ones(x.shape, dtype=torch.bool)
        if features is not None:
            keep[..., features] = False
        else:
            keep[:] = False
        if rows is not None:
            keep[~rows] = True
        keep = keep.to(x.device)
        return torch.where(keep, x, replacement)

    transform.window = window  # type: ignore[attr-defined]  # for logs and tests
    return transform


def sequence_deficit(cfg, seed: int, splits) -> Callable | None:
    """The headline runner's hook: the run config's ``deficit:`` block as a batch transform (or None)."""
    deficit = cfg.get("deficit") if hasattr(cfg, "get") else None
    source = cfg.data_source.name if "data_source" in cfg else None
    return build_batch_transform(deficit, seed=seed, x_train=splits.x_train, source=source)


def describe(cfg: Mapping[str, Any] | None, features: Sequence[str] | None = None) -> str:
    """One line for logs and reports: ``zero inputs, epochs [0, 5)``."""
    if not applies(cfg):
        return "no deficit"
    window = window_of(cfg)
    what = {"zero": "inputs zeroed", "noise": "inputs replaced by noise"}[_get(cfg, "kind")]
    parts = [what, f"{_get(cfg, 'unit', 'epoch')}s [{window.onset}, {window.end})"]
    if _get(cfg, "sources") is not None:
        parts.append("sources " + ", ".join(_get(cfg, "sources")))
    if _get(cfg, "features") is not None:
        parts.append("features " + ", ".join(map(str, _get(cfg, "features"))))
    if float(_get(cfg, "fraction", 1.0)) < 1:
        parts.append(f"{float(_get(cfg, 'fraction')):.0%} of the training samples")
    return ", ".join(parts)
