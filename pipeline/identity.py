"""Run identity: a run id derived from the run's semantic configuration, so that two launches that
would compute the same thing share one id whatever their paths, logger or launcher.

What counts is the one registry of keys (``pipeline.config_schema``): plumbing and design keys are left
out (the design block stands for the cell and replicate), and so are the top-level groups the study's
runner does not read (a companion study's runs ignore the headline data set). The rule that lets the
configuration grow without renaming finished runs: a key added after the registry's first version is
left out while it holds its ``before`` value (what runs computed before the key existed), a key that
changes speed only is hashed as one fixed value, a key moved elsewhere is hashed under its old path, and
a block switched off (a probe with ``enabled: false``, a deficit of kind ``none``) contributes nothing.
So today's run ids are those of every earlier version of this rule (tests/test_version.py,
tools/record_digests.py), and adding a key with a default renames no run (tests/test_identity.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .config import as_dict
from .config_schema import DESIGN_BLOCK, NOTHING, SEMANTIC, groups_ignored, rule_of
from .design import crosses_source_pairs


def semantic_view(config: dict) -> dict:
    """The part of a plain (resolved) config that says what its run computes, as the run id hashes it.

    Works on a run's ``config.yaml`` as read back, so the analysis judges conditions the same way.
    """
    study: dict = config["study"] if isinstance(config.get("study"), dict) else {}
    runner = str(study.get("runner", ""))
    ignored = groups_ignored(runner)
    out: dict[str, Any] = {}
    moved: list[tuple[str, Any]] = []
    for top, value in config.items():
        if top == DESIGN_BLOCK or top in ignored:
            continue
        kept = _view(value, top, moved, runner)
        if kept is not NOTHING:
            out[top] = kept
    for path, value in moved:  # a key that moved is hashed where it was
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    design = config.get(DESIGN_BLOCK) or {}
    # the cell and the replicate; the rest of the design block (class names, participant, how the cell was
    # assigned) follows from them or is provenance
    out[DESIGN_BLOCK] = {**{k: design.get(k) for k in study.get("factors") or []}, "replicate": design.get("replicate")}
    return out


def _view(value: Any, path: str, moved: list[tuple[str, Any]], runner: str) -> Any:
    """``value`` at ``path`` as the run id sees it (the rules of ``runner``'s schemas), or NOTHING where it is
    left out."""
    rule = rule_of(path, runner)
    if rule.role != SEMANTIC:
        return NOTHING
    if rule.since is not None and rule.before is not NOTHING and value == rule.before:
        return NOTHING
    if rule.identity is not NOTHING:
        value = rule.identity
    if rule.moved_from is not None:
        moved.append((rule.moved_from, value))
        return NOTHING
    if not isinstance(value, dict):
        return value
    for key, item in value.items():  # a block switched off contributes nothing
        switch = rule_of(f"{path}.{key}", runner)
        if switch.off is not NOTHING and item == switch.off:
            return NOTHING
    out = {}
    before = len(moved)
    for key, item in value.items():
        kept = _view(item, f"{path}.{key}", moved, runner)
        if kept is not NOTHING:
            out[key] = kept
    # a block that held nothing semantic but keys that moved here is hashed as before they came
    return NOTHING if not out and len(moved) > before else out


def semantic_config(cfg: DictConfig, runner=None) -> dict:
    """The semantic view of a composed config (``runner``: kept for callers; the registry decides)."""
    return semantic_view(as_dict(cfg))


def view_hash(view: dict) -> str:
    canonical = json.dumps(view, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def config_hash(cfg: DictConfig, runner=None) -> str:
    return view_hash(semantic_config(cfg, runner))


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
