"""Run identity: a run id derived from the run's semantic configuration, so that two launches that
would compute the same thing share one id whatever their paths, logger or launcher."""

from __future__ import annotations

import hashlib
import json
import re

from omegaconf import DictConfig, OmegaConf

from .config import as_dict
from .design import crosses_source_pairs

# Keys that change where or how a run is executed or mirrored, not what it computes.
# (`pair` and `seed` are replaced by the design block, which is the same
# whether the cell was given explicitly or counterbalanced from a seed.)
NON_SEMANTIC_TOP = ("paths", "logger", "hydra", "seed", "pair", "participant", "expected_run_id", "pack_file")
NON_SEMANTIC_TRAINER = ("device", "num_threads")
# Trainer options added after runs were made, whose null is the behaviour before them: left out when null,
# so that adding one renames no finished run.
NULL_IS_BEFORE_TRAINER = ("grad_clip_norm",)


def semantic_config(cfg: DictConfig, runner=None) -> dict:
    """The config without what does not change what the run computes (``runner``: the study's runner,
    fetched from ``cfg.study.runner`` if not given)."""
    data = as_dict(cfg)
    if runner is None:
        from .studies import get_runner

        runner = get_runner(cfg.study.runner)
    for key in (*NON_SEMANTIC_TOP, *runner.ignored_keys):
        data.pop(key, None)
    for key in NON_SEMANTIC_TRAINER:
        data.get("trainer", {}).pop(key, None)
    for key in NULL_IS_BEFORE_TRAINER:
        if data.get("trainer", {}).get(key, "absent") is None:
            data["trainer"].pop(key)
    design = data.get("design") or {}
    # the cell and the replicate; the rest of the design block (class names,
    # participant, how the cell was assigned) follows from them or is provenance
    data["design"] = {**{k: design.get(k) for k in cfg.study.factors}, "replicate": design.get("replicate")}
    for key in ("data_sources", "levels"):  # the grid, not this run
        data.get("study", {}).pop(key, None)
    # a probe that is switched off does not change the run: adding a new probe
    # to the config must not rename every finished run
    if isinstance(data.get("deficit"), dict) and data["deficit"].get("kind") == "none":
        data.pop("deficit")  # likewise a deficit schedule that is off
    probes = data.get("probe")
    if isinstance(probes, dict):
        data["probe"] = {
            name: opts for name, opts in probes.items() if not (isinstance(opts, dict) and opts.get("enabled") is False)
        }
        # The products' precision changes the probe's speed, not its curves (tests/test_knn_compiled.py,
        # test_knn_groups.py hold them equal bit for bit): one identity for both, the value ids were made
        # with before the default became float32, so that no finished run is renamed.
        knn = data["probe"].get("knn")
        if isinstance(knn, dict) and "gram_precision" in knn:
            knn["gram_precision"] = "float64"
    return data


def config_hash(cfg: DictConfig, runner=None) -> str:
    canonical = json.dumps(semantic_config(cfg, runner), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def run_id(cfg: DictConfig, runner=None) -> str:
    """``gesture-p03-r002-<hash>`` (headline), ``gesture-p03-gru-r002-<hash>`` (the headline grid crossed
    with a config-group factor, model=gru), ``<study>-depth4-onset0-r002-<hash>`` (others)."""
    d = cfg.design
    factors = [str(key) for key in cfg.study.factors]
    if crosses_source_pairs(factors):
        others = [
            str(d.get(key)) if OmegaConf.is_dict(cfg.get(key)) else f"{key.split('.')[-1]}{d.get(key)}"
            for key in factors[:-2]
        ]
        cell = re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join([f"{d.data_source}-p{int(d.pair):02d}", *others]))
    else:
        parts = [cfg.study.name] + [
            f"{key.split('.')[-1]}{OmegaConf.select(d, key, default=d.get(key))}" for key in cfg.study.factors
        ]
        cell = re.sub(r"[^A-Za-z0-9_.=+-]", "_", "-".join(parts))
    return f"{cell}-r{int(d.replicate):03d}-{config_hash(cfg, runner)}"
