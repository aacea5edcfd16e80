"""Study runners: what one run of a study computes.

``study.runner`` names one of ``RUNNERS``. The headline study's runner
(``sequence``) trains a sequence classifier on one class pair and records its
learning-curve map; companion studies register their own runners. Everything
around a runner is shared: the design grid, run identity, the run folder,
claims, status, W&B, sweeps and Slurm.

A runner is a class with:
- ``validate(cfg)``: raise ``pipeline.config.ConfigError`` for values that cannot work;
- ``validate_planned(cfg)``: the same for what needs the run's design block (its cell, its seed) or its
  data, e.g. a class pair too small for the run's split;
- ``design_extras(cfg, design) -> dict``: fields added to the design block of
  config.yaml (e.g. the class names of a pair);
The shape of a runner's study block, and the top-level groups its runs read (the others are left out
of the run id, e.g. the data set of the headline study for a deep linear study), are declared in the
registry of keys, ``pipeline.config_schema.RUNNERS``, which the planner checks every config against.
- ``run(cfg, ctx) -> RunResult``.
"""

from __future__ import annotations

from ..config import ConfigError
from .base import RUNNERS, RunContext, RunResult, StudyRunner, register

__all__ = ["RUNNERS", "RunContext", "RunResult", "StudyRunner", "get_runner", "register"]


def get_runner(name: str) -> StudyRunner:
    _load_builtin()
    if name not in RUNNERS:
        raise ConfigError(f"study.runner={name!r} is unknown; allowed: {', '.join(sorted(RUNNERS))}")
    return RUNNERS[name]()


def _load_builtin() -> None:
    # imported on first use, not with this module; each companion study is a
    # package whose __init__ registers its runners
    from . import critical, dense_sample, multitask, sequence  # noqa: F401 - registers the runners
