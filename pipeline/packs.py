"""Run packs: several runs of a sweep computed one after another by one job.

A job's fixed costs (a process, imports, torch's first optimiser step, data
loading, Hydra composing the job's config, a Slurm task's start) are paid once
per pack instead of once per run. The study sweeper groups runs that share
their config-group choices (so that they differ only in plain values such as
seed, pair, participant and the frozen run id) and writes each pack to a JSON
file in the sweep folder; the job composes the first run's config through
Hydra as usual, derives the others by applying their values the way Hydra
applies them, and computes each run exactly as a job of its own would
(``execute`` checks each against the run id frozen at planning, so a derived
config that differs from Hydra's own refuses instead of running). Records are
identical to solo runs: every run seeds its own generators.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from .runfolder import atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class PackMember:
    run_id: str
    overrides: list[str]  # the run's full overrides, as for a job of its own
    values: list[str]  # those of them that are plain values (no group choice, +, ~ or hydra key)


def write_pack(path: Path, members: Sequence[PackMember]) -> None:
    """Atomically: a job may start reading it as soon as it is launched."""
    atomic_write_text(path, json.dumps({"runs": [m.__dict__ for m in members]}, indent=1))


def read_pack(path: str | Path) -> list[PackMember]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"pack_file={path}: no such file. pack_file is written by the study sweeper for the jobs it "
            f"launches; do not set it by hand"
        ) from exc
    return [PackMember(**run) for run in data["runs"]]


def apply_parsed_values(base: DictConfig, overrides: Sequence[Override]) -> DictConfig:
    """A copy of ``base`` with parsed plain-value overrides applied as Hydra applies them (in order, merged).

    Shared by the study sweeper's planning and a pack's jobs, so that both derive
    a run's config the same way.
    """
    cfg = copy.deepcopy(base)
    for override in overrides:
        OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
    return cfg


def apply_values(base: DictConfig, values: Sequence[str]) -> DictConfig:
    """``base`` with plain-value overrides (override lines) applied as Hydra applies them."""
    return apply_parsed_values(base, OverridesParser.create().parse_overrides(list(values)))


class PackFailed(RuntimeError):
    """Some runs of a pack failed: ``failures`` holds (run id, first line of its error) for each of them."""

    def __init__(self, failures: Sequence[tuple[str, str]]):
        self.failures = [(str(rid), str(err)) for rid, err in failures]
        super().__init__("\n".join(f"{rid}: {err}" for rid, err in self.failures))

    def __reduce__(self):  # rebuilt from its failures when a launcher sends it across processes
        return (PackFailed, (self.failures,))


def run_pack(
    cfg: DictConfig, compose: Callable[[Sequence[str]], DictConfig], run_one: Callable[[DictConfig, list[str]], object]
) -> list[object]:
    """Compute every run of ``cfg.pack_file``; a failed run does not stop the others.

    ``cfg`` is Hydra's composition of the first run's overrides (plus
    pack_file); ``run_one(run_cfg, overrides)`` prepares and executes one run.
    """
    members = read_pack(cfg.pack_file)
    base = copy.deepcopy(cfg)
    OmegaConf.update(base, "pack_file", None)
    value_keys = [v.split("=", 1)[0] for v in members[0].values]
    outcomes, failed = [], []
    for number, member in enumerate(members, 1):
        log.info("pack run %d/%d: %s", number, len(members), member.run_id)
        try:
            if [v.split("=", 1)[0] for v in member.values] == value_keys:
                member_cfg = apply_values(base, member.values)
            else:  # not from the same sweep line: let Hydra compose it
                member_cfg = compose(member.overrides)
            outcomes.append(run_one(member_cfg, member.overrides))
        except Exception as exc:
            log.error("pack run %s failed: %s", member.run_id, exc)
            failed.append((member.run_id, f"{type(exc).__name__}: {exc}".splitlines()[0]))
    if failed:
        # one line per failed run: the sweeper reports each run by its id
        raise PackFailed(failed)
    return outcomes
