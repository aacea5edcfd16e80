"""Run packs: several runs of a sweep computed one after another by one job, so that a job's fixed
costs (process start, imports, data loading, composing) are paid once per pack. The study sweeper
writes the pack files; each run is planned (pipeline/planning.py) and computed as a job of its own
would, and records are identical to solo runs.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .planning import Plan, Planner, apply_values
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


class PackFailed(RuntimeError):
    """Some runs of a pack failed: ``failures`` holds (run id, first line of its error) for each of them."""

    def __init__(self, failures: Sequence[tuple[str, str]]):
        self.failures = [(str(rid), str(err)) for rid, err in failures]
        super().__init__("\n".join(f"{rid}: {err}" for rid, err in self.failures))

    def __reduce__(self):  # rebuilt from its failures when a launcher sends it across processes
        return (PackFailed, (self.failures,))


def run_pack(cfg: DictConfig, planner: Planner, execute: Callable[[Plan], object]) -> list[object]:
    """Plan and ``execute`` every run of ``cfg.pack_file``; a failed run does not stop the others.

    ``cfg`` is Hydra's composition of the first run's overrides (plus pack_file); the others are derived
    from it by their plain values, or composed by ``planner.compose`` where they differ in more.
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
                member_cfg = planner.compose(member.overrides)
            outcomes.append(execute(planner.plan(member_cfg, member.overrides)))
        except Exception as exc:
            log.error("pack run %s failed: %s", member.run_id, exc)
            failed.append((member.run_id, f"{type(exc).__name__}: {exc}".splitlines()[0]))
    if failed:
        # one line per failed run: the sweeper reports each run by its id
        raise PackFailed(failed)
    return outcomes
