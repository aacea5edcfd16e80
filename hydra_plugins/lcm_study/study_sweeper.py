"""The study sweeper: Hydra's basic sweeper, made study-aware.

Before anything is launched it composes and validates every planned run,
places it in the study grid (seed -> design cell + replicate, see
pipeline/design.py), derives its run id, and leaves out runs whose folder says
done or that a live process is computing. Each launched job receives its cell
explicitly together with the run id frozen at launch (``expected_run_id``): a
job that composes a different run id (conf/ edited while it waited in a queue)
refuses to run. A failed run does not stop the others; at the end the sweep
says how many failed and ends non-zero.
"""

import copy
import csv
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.types import RunMode
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# Overrides the sweeper rewrites into the job's canonical, explicit form.
_DESIGN_KEYS = ("seed", "participant", "expected_run_id")


@dataclass
class StudySweeperConf:
    _target_: str = "hydra_plugins.lcm_study.study_sweeper.StudySweeper"
    # jobs handed to the launcher at once (null: all); a Slurm array per batch
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="study", node=StudySweeperConf,
                             provider="learning-curve-maps")


class SweepFailed(HydraException):
    pass


@dataclass
class PlannedRun:
    overrides: List[str]
    run_id: str
    run_dir: Path
    cell: str
    state: str  # to-run | done | claimed


class StudySweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None):
        super().__init__(max_batch_size=max_batch_size, params=params)

    # -- planning ---------------------------------------------------------
    def _full_compose(self, overrides: Sequence[str]) -> DictConfig:
        cfg = self.hydra_context.config_loader.load_configuration(
            config_name=self.config.hydra.job.config_name, overrides=list(overrides),
            run_mode=RunMode.MULTIRUN)
        with open_struct_off(cfg):
            del cfg["hydra"]
        return cfg

    def _compose(self, overrides: Sequence[str]) -> DictConfig:
        """Hydra's composition of a job's config, with the expensive part shared.

        A full composition costs ~0.2 s, which made planning a 750-run study take
        3 minutes. The jobs of a sweep differ mostly in plain values (seed, pair,
        participant, expected_run_id), so the defaults tree is composed once per
        distinct set of structural overrides (config-group choices, +/~ and
        hydra keys) and the plain values are then applied as Hydra applies them
        (OmegaConf.update with merge, in order). Each job still composes its own
        config from scratch and checks it against the frozen run id, so a
        difference here could only make a job refuse, never run the wrong thing.
        """
        if not hasattr(self, "_bases"):
            self._bases: Dict[tuple, DictConfig] = {}
            self._parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        repository = self.hydra_context.config_loader.repository
        structural, values = [], []
        for override in self._parser.parse_overrides(list(overrides)):
            key = override.key_or_group
            if (override.is_delete() or override.is_add() or override.is_force_add()
                    or key.startswith("hydra") or repository.group_exists(key)):
                structural.append(override.input_line)
            else:
                values.append(override)
        base_key = tuple(structural)
        if base_key not in self._bases:
            self._bases[base_key] = self._full_compose(structural)
        cfg = copy.deepcopy(self._bases[base_key])
        try:
            for override in values:
                OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
        except Exception:  # noqa: BLE001 - let Hydra compose it and raise its own clear message
            return self._full_compose(overrides)
        return cfg

    def plan(self, jobs: List[List[str]]) -> List[PlannedRun]:
        from pipeline.app import cells_of, prepare
        from pipeline.design import assign, factor_keys, is_explicit, override_key
        from pipeline.identity import run_id
        from pipeline.record import claim_state, is_done
        from pipeline.run import runs_root

        cells_cache: Dict[tuple, Any] = {}
        planned = []
        tic = time.perf_counter()
        for number, job in enumerate(jobs):
            job = list(job)
            others = tuple(o for o in job if override_key(o) != "seed")
            if others not in cells_cache:
                base = self._compose(list(others))
                keys = factor_keys(base.study)
                cells_cache[others] = (keys, None if is_explicit(job, keys)
                                       else cells_of(base, list(others), self._compose), base.seed)
            keys, cells, default_seed = cells_cache[others]
            if cells is not None:
                seed_values = [o.split("=", 1)[1] for o in job if override_key(o) == "seed"]
                seed = int(seed_values[-1]) if seed_values else int(default_seed)
                cell, replicate = assign(seed, cells)
                job = [o for o in job if override_key(o) not in (*keys, *_DESIGN_KEYS)] + [
                    *cell.overrides(), f"seed={replicate}", f"participant={seed}"]
            cfg = prepare(self._compose(job), job, self._compose)
            rid = run_id(cfg)
            run_dir = runs_root(cfg) / rid
            state = "done" if is_done(run_dir) else ("claimed" if claim_state(run_dir) else "to-run")
            job = [o for o in job if override_key(o) != "expected_run_id"] + [f"expected_run_id={rid}"]
            planned.append(PlannedRun(job, rid, run_dir, cfg.design.cell, state))
            if (number + 1) % 100 == 0:
                log.info("planned %d/%d runs (%.1f s)", number + 1, len(jobs), time.perf_counter() - tic)
        return planned

    # -- sweeping ---------------------------------------------------------
    def sweep(self, arguments: List[str]) -> Any:
        params = [f"{k}={v}" for k, v in (self.params or {}).items()] + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        jobs = self.split_arguments(parser.parse_overrides(params), None)[0]

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        planned = self.plan(jobs)
        ids = [p.run_id for p in planned]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise SweepFailed(f"the sweep names the same run more than once: {', '.join(dupes[:5])}")
        self._write_plan(sweep_dir, planned)
        to_run = [p for p in planned if p.state == "to-run"]
        n_done = sum(p.state == "done" for p in planned)
        n_claimed = sum(p.state == "claimed" for p in planned)
        print(f"[study] {len(planned)} runs in this sweep: {len(to_run)} to run, {n_done} already done "
              f"(skipped), {n_claimed} being computed elsewhere (left alone). Plan: {sweep_dir / 'plan.csv'}",
              file=sys.stderr, flush=True)

        if not to_run:
            print("[study] nothing to run: every run of this sweep is done or owned by a live process",
                  file=sys.stderr, flush=True)
            return []
        batch_size = self.max_batch_size or len(to_run)
        returns: List[Sequence[JobReturn]] = []
        failed: List[tuple] = []
        for start in range(0, len(to_run), batch_size):
            batch = to_run[start:start + batch_size]
            try:
                results = self.launcher.launch([p.overrides for p in batch], initial_job_idx=start)
            except Exception as exc:  # noqa: BLE001 - e.g. submitit's UncompletedJobError
                # A job died without a result (scancel, node failure, time limit).
                # The runs that finished are recorded in their folders already.
                print(f"[study] the launcher lost jobs of this sweep: {type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''}\n"
                      f"[study] finished runs are recorded; `python -m pipeline.status` shows what is "
                      f"missing; relaunch the same command to run only those.", file=sys.stderr, flush=True)
                sys.exit(1)
            for run, result in zip(batch, results):
                if result.status == JobStatus.FAILED:
                    error = result._return_value
                    failed.append((run.run_id, f"{type(error).__name__}: {error}".splitlines()[0]))
            returns.append(results)
        if failed:
            lines = "\n".join(f"  {rid}: {err}" for rid, err in failed[:20])
            more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
            print(f"[study] {len(failed)} of {len(to_run)} runs failed (each folder's status.json holds the "
                  f"traceback; `python -m pipeline.status` lists them; relaunch the same command to rerun "
                  f"them):\n{lines}{more}", file=sys.stderr, flush=True)
            # SystemExit, not an exception: Hydra would print its own stack trace
            # over the summary above. The finished runs are all recorded already.
            sys.exit(1)
        print(f"[study] all {len(to_run)} runs done", file=sys.stderr, flush=True)
        return returns

    @staticmethod
    def _write_plan(sweep_dir: Path, planned: List[PlannedRun]) -> None:
        """The plan, in the sweep folder and in each study's plans/ (read by pipeline.status)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        targets = {sweep_dir / "plan.csv": planned}
        for p in planned:
            targets.setdefault(p.run_dir.parent.parent / "plans" / f"{stamp}-{sweep_dir.name}.csv", []).append(p)
        for path, runs in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["run_id", "cell", "state", "overrides"])
                for p in runs:
                    writer.writerow([p.run_id, p.cell, p.state, " ".join(p.overrides)])
            tmp.replace(path)


class open_struct_off:
    """Temporarily lift OmegaConf's struct flag (to drop the hydra node)."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def __enter__(self):
        OmegaConf.set_struct(self.cfg, False)
        return self.cfg

    def __exit__(self, *exc):
        OmegaConf.set_struct(self.cfg, True)
        return False
