"""The study runner interface and registry (pipeline/studies/__init__.py says what a runner is).

Runners import their interface from here, never from the package, so that the package (which loads
the built-in runners on first use) and its runners do not import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd


@dataclass
class RunContext:
    rng_seed: int
    # call once per epoch / logged step: refreshes the run's claim, mirrors to W&B
    on_step: Callable[[int, dict, pd.DataFrame | None], None]


@dataclass
class RunResult:
    # long format with at least probe, split, epoch, time_slice, value (may be empty)
    curves: pd.DataFrame
    # epoch, split, metric, value
    readouts: pd.DataFrame
    summary: dict[str, Any]
    # further tidy tables, written as <name>.parquet in the run folder
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


class StudyRunner:
    name: ClassVar[str]

    def validate(self, cfg) -> None:
        pass

    def validate_planned(self, cfg) -> None:
        pass

    def design_extras(self, cfg, design) -> dict:
        return {}

    def run(self, cfg, ctx: RunContext) -> RunResult:
        raise NotImplementedError


RUNNERS: dict[str, type[StudyRunner]] = {}


def register(cls: type[StudyRunner]) -> type[StudyRunner]:
    RUNNERS[cls.name] = cls
    return cls
