"""Run identity: a run id derived from the run's semantic configuration.

Two launches that would compute the same thing get the same id, whatever their
output paths, logger or launcher settings: that is what lets a relaunched sweep
skip finished runs and lets a queued job notice that ``conf/`` changed.
"""
from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

# Keys that change where or how a run is executed or mirrored, not what it computes.
# (`pair` and `seed` are replaced by the design block, which is the same
# whether the cell was given explicitly or counterbalanced from a seed.)
NON_SEMANTIC_TOP = ("paths", "logger", "hydra", "seed", "pair", "participant", "expected_run_id")
NON_SEMANTIC_TRAINER = ("device", "num_threads")


def semantic_config(cfg: DictConfig) -> dict:
    data = OmegaConf.to_container(cfg, resolve=True)
    for key in NON_SEMANTIC_TOP:
        data.pop(key, None)
    for key in NON_SEMANTIC_TRAINER:
        data.get("trainer", {}).pop(key, None)
    design = data.get("design") or {}
    # the design's derived fields (class names) follow from the rest
    data["design"] = {k: design.get(k) for k in ("data_source", "pair", "replicate")}
    data.get("study", {}).pop("data_sources", None)  # the grid, not this run
    return data


def config_hash(cfg: DictConfig) -> str:
    canonical = json.dumps(semantic_config(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def run_id(cfg: DictConfig) -> str:
    d = cfg.design
    return f"{d.data_source}-p{int(d.pair):02d}-r{int(d.replicate):03d}-{config_hash(cfg)}"
