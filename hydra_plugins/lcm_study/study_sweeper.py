"""The study sweeper: Hydra's basic sweeper, made study-aware.

It plans every run before anything is launched (pipeline/planning.py), skips done runs and runs a live
process owns, launches the others in packs (pipeline/packs.py) with their run id frozen, and reports
every failed run at the end.
"""

import csv
import io
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import OmegaConf

from .progress import Progress

log = logging.getLogger(__name__)


@dataclass
class StudySweeperConf:
    _target_: str = "hydra_plugins.lcm_study.study_sweeper.StudySweeper"
    # jobs handed to the launcher at once (null: all); a Slurm array per batch
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    # runs computed one after another by one job (null: automatic, at most
    # 10 per job and at least one job per parallel worker or Slurm task slot;
    # 1: one job per run)
    runs_per_job: int | None = None


ConfigStore.instance().store(group="hydra/sweeper", name="study", node=StudySweeperConf, provider="learning-curve-maps")


class SweepFailed(HydraException):
    pass


@dataclass
class PlannedRun:
    overrides: list[str]
    run_id: str
    run_dir: Path
    cell: str
    state: str  # the run folder's state when planned (pipeline/schema.py RUN_STATES)
    condition: str = ""  # what else than cell and replicate the sweep varies (pipeline.status groups by it)
    structural: tuple = ()  # its config-group choices, +/~ and hydra overrides
    values: tuple = ()  # its plain-value overrides


class StudySweeper(BasicSweeper):
    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        runs_per_job: int | None = None,
    ):
        super().__init__(max_batch_size=max_batch_size, params=params)
        if runs_per_job is not None and (isinstance(runs_per_job, bool) or int(runs_per_job) < 1):
            raise SweepFailed(
                f"hydra.sweeper.runs_per_job={runs_per_job!r}: must be an integer >= 1 or null (automatic)"
            )
        self.runs_per_job = None if runs_per_job is None else int(runs_per_job)

    # -- planning ---------------------------------------------------------
    def plan(self, jobs: list[list[str]]) -> list[PlannedRun]:
        """Every job planned (pipeline/planning.py), in explicit form, with the state of its run folder."""
        # pipeline's modules are imported where used: Hydra imports every plugin at each start, and the
        # planning module's runners import pandas
        from pipeline.planning import Planner, SharedCompose, override_key
        from pipeline.runfolder import run_state
        from pipeline.schema import DAMAGED

        compose = SharedCompose(self.hydra_context.config_loader, self.config.hydra.job.config_name, RunMode.MULTIRUN)
        planner = Planner(compose)
        planned = []
        tic = time.perf_counter()
        for number, job in enumerate(jobs):
            plan = planner.plan(compose(job), job)
            rid = plan.run_id
            state, why = run_state(plan.run_dir)
            if state == DAMAGED:
                # a done run with a record file missing, truncated or changed, or status.json unreadable: redone
                log.warning("run %s is damaged (%s): it will be computed again", rid, why)
            launched = [o for o in plan.job if override_key(o) != "expected_run_id"] + [f"expected_run_id={rid}"]
            structural, values = compose.split(launched)
            planned.append(
                PlannedRun(
                    launched,
                    rid,
                    plan.run_dir,
                    plan.cfg.design.cell,
                    state,
                    planner.condition(plan),
                    tuple(structural),
                    tuple(v.input_line for v in values),
                )
            )
            if (number + 1) % 100 == 0:
                log.info("planned %d/%d runs (%.1f s)", number + 1, len(jobs), time.perf_counter() - tic)
        return planned

    # -- sweeping ---------------------------------------------------------
    def sweep(self, arguments: list[str]) -> Any:
        params = [f"{k}={v}" for k, v in (self.params or {}).items()] + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        jobs = self.split_arguments(parser.parse_overrides(params), None)[0]

        from pipeline.planning import ConfigError
        from pipeline.run import RunInterrupted
        from pipeline.runfolder import is_done
        from pipeline.schema import DAMAGED, DONE, FAILED, RUNNING, TO_COMPUTE

        # the first line within seconds of the launch: planning a large sweep takes a while
        print(f"[study] planning {_count(len(jobs), 'run')}: composing and checking each", file=sys.stderr, flush=True)
        try:
            # every run is validated here, before the sweep folder or any run folder exists
            planned = self.plan(jobs)
        except ConfigError as exc:
            # SystemExit, not an exception: Hydra would print a stack trace over the message
            print(f"[study] error in the configuration: {exc}", file=sys.stderr, flush=True)
            sys.exit(1)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        ids = [p.run_id for p in planned]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise SweepFailed(f"the sweep names the same run more than once: {', '.join(dupes[:5])}")
        self._write_plan(sweep_dir, planned)
        to_run = [p for p in planned if p.state in TO_COMPUTE]
        n_done = sum(p.state == DONE for p in planned)
        n_claimed = sum(p.state == RUNNING for p in planned)
        n_redo = sum(p.state == DAMAGED for p in planned)
        redo = f" (of which {n_redo} damaged done runs, redone)" if n_redo else ""
        print(
            f"[study] {len(planned)} runs in this sweep: {len(to_run)} to run{redo}, {n_done} already done "
            f"(skipped), {n_claimed} being computed elsewhere (left alone). Plan: {sweep_dir / 'plan.csv'}",
            file=sys.stderr,
            flush=True,
        )

        if not to_run:
            print(
                "[study] nothing to run: every run of this sweep is done or owned by a live process",
                file=sys.stderr,
                flush=True,
            )
            return []
        packs = self._packs(to_run)
        job_overrides = self._write_packs(sweep_dir, packs)
        launcher = self.config.hydra.runtime.choices.get("hydra/launcher", "?")
        largest = max(len(p) for p in packs)
        print(
            f"[study] launching {_count(len(to_run), 'run')} as {_count(len(packs), 'job')} of up to {largest} "
            f"{'run' if largest == 1 else 'runs'} each (hydra.sweeper.runs_per_job) on hydra/launcher={launcher}, "
            f"{min(self._parallel_slots(), len(packs))} at a time; each run's log: <run folder>/run.log",
            file=sys.stderr,
            flush=True,
        )
        batch_size = self.max_batch_size or len(packs)
        returns: list[Sequence[JobReturn]] = []
        failed: list[tuple] = []
        progress = Progress(
            {p.run_id: p.run_dir for p in to_run},
            packs=[[run.run_id for run in pack] for pack in packs],
            workers=self._parallel_slots(),
        )
        with _quiet_launcher_banner(), progress, _stop_on_term():
            for start in range(0, len(packs), batch_size):
                batch = packs[start : start + batch_size]
                try:
                    results = self.launcher.launch(job_overrides[start : start + batch_size], initial_job_idx=start)
                except (KeyboardInterrupt, RunInterrupted) as exc:
                    # the launcher stops its workers (their runs mark themselves interrupted)
                    progress.close()
                    name = getattr(exc, "signal_name", "SIGINT/SIGTERM")
                    print(
                        f"\n[study] stopped by {name}: {progress.summary()}; finished runs are recorded, "
                        f"interrupted ones say so in their folders; `python -m pipeline.status` shows what is "
                        f"missing; relaunch the same command to compute only those.",
                        file=sys.stderr,
                        flush=True,
                    )
                    sys.exit(130)
                except Exception as exc:
                    # A job died without a result (scancel, node failure, time limit).
                    # The runs that finished are recorded in their folders already.
                    progress.close()
                    print(
                        f"[study] the launcher lost jobs of this sweep: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}\n"
                        f"[study] {progress.summary()}; finished runs are recorded; `python -m pipeline.status` "
                        f"shows what is missing; relaunch the same command to run only those.",
                        file=sys.stderr,
                        flush=True,
                    )
                    sys.exit(1)
                progress.stop()
                outcomes = []
                for pack, result in zip(batch, results):
                    if result.status == JobStatus.FAILED:
                        error = result._return_value
                        if isinstance(getattr(error, "failures", None), list):
                            # the pack's own list: (run id, error) of each run that failed
                            lines = [(str(rid), str(err)) for rid, err in error.failures]
                        else:
                            # the job failed as a whole: its runs that are not done failed with it
                            text = f"{type(error).__name__}: {error}".splitlines()[0]
                            lines = [(run.run_id, text) for run in pack if not (len(pack) > 1 and is_done(run.run_dir))]
                        failed.extend(lines)
                        outcomes.extend((rid, FAILED, err) for rid, err in lines)
                    else:
                        value = result.return_value
                        outcomes.extend(
                            (o.run_id, o.state, o.note)
                            for o in (value if isinstance(value, list) else [value])
                            if hasattr(o, "run_id")
                        )
                progress.settle(outcomes)
                returns.append(results)
                if start + batch_size < len(packs):
                    progress.start()
        progress.close()
        if failed:
            # every failed run, by its id (a pack counts each of its runs)
            lines = "\n".join(f"  {rid}: {err}" for rid, err in failed)
            print(
                f"[study] {len(failed)} of {len(to_run)} runs failed (each folder's status.json holds the "
                f"traceback; `python -m pipeline.status` lists them; relaunch the same command to rerun "
                f"them):\n{lines}",
                file=sys.stderr,
                flush=True,
            )
            # SystemExit, not an exception: Hydra would print its own stack trace
            # over the summary above. The finished runs are all recorded already.
            sys.exit(1)
        print(
            f"[study] all {len(to_run)} runs done" if len(to_run) > 1 else "[study] the run is done",
            file=sys.stderr,
            flush=True,
        )
        return returns

    def _parallel_slots(self) -> int:
        """How many jobs the launcher runs at once (local job processes, Slurm array slots)."""
        launcher = self.config.hydra.launcher
        if "n_jobs" in launcher:  # the local launcher: -1 = every core, -2 = all but one, ...
            from .local_launcher import parallel_jobs

            return parallel_jobs(launcher.n_jobs)
        if "array_parallelism" in launcher:
            return max(1, int(launcher.array_parallelism))
        return 1

    def _packs(self, to_run: list[PlannedRun]) -> list[list[PlannedRun]]:
        """Consecutive runs sharing their structural overrides, cut into near-equal packs.

        Automatic size: at most 10 runs per job (a job that dies loses at most
        the run in progress, but a pack's runs wait for each other), and at
        least as many jobs as parallel slots, rounded up to a multiple of them
        so that the workers end together.
        """
        if self.runs_per_job is None:
            slots = self._parallel_slots()
            n_jobs = min(len(to_run), slots * math.ceil(max(1, math.ceil(len(to_run) / 10)) / slots))
        groups: dict[tuple, list[PlannedRun]] = {}
        for run in to_run:
            groups.setdefault(run.structural, []).append(run)
        packs = []
        for runs in groups.values():
            # this group's number of jobs, each of about len(runs) / share runs
            if self.runs_per_job is not None:
                share = math.ceil(len(runs) / self.runs_per_job)
            else:
                share = max(1, round(n_jobs * len(runs) / len(to_run)))
            bounds = [round(i * len(runs) / share) for i in range(share + 1)]
            packs.extend(runs[a:b] for a, b in zip(bounds, bounds[1:]) if b > a)
        return packs

    @staticmethod
    def _write_packs(sweep_dir: Path, packs: list[list[PlannedRun]]) -> list[list[str]]:
        """Each job's overrides: a single run's own, or the first run's plus its pack file."""
        from pipeline.packs import PackMember, write_pack

        jobs = []
        for number, pack in enumerate(packs):
            if len(pack) == 1:
                jobs.append(list(pack[0].overrides))
                continue
            path = sweep_dir / "packs" / f"pack-{number:05d}.json"
            write_pack(path, [PackMember(p.run_id, list(p.overrides), list(p.values)) for p in pack])
            jobs.append([*pack[0].overrides, f"pack_file={path}"])
        return jobs

    @staticmethod
    def _write_plan(sweep_dir: Path, planned: list[PlannedRun]) -> None:
        """The plan, in the sweep folder and in each study's plans/ (read by pipeline.status)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        targets = {sweep_dir / "plan.csv": planned}
        from pipeline.runfolder import atomic_write_text
        from pipeline.schema import plans_folder, study_of

        for p in planned:
            targets.setdefault(plans_folder(study_of(p.run_dir)) / f"{stamp}-{sweep_dir.name}.csv", []).append(p)

        for path, runs in targets.items():
            text = io.StringIO(newline="")
            writer = csv.writer(text)
            writer.writerow(["run_id", "cell", "state", "overrides", "condition"])
            for p in runs:
                writer.writerow([p.run_id, p.cell, p.state, " ".join(p.overrides), p.condition])
            atomic_write_text(path, text.getvalue())


class _stop_on_term:
    """SIGTERM to the sweep driver stops it as Ctrl-C does (KeyboardInterrupt), so that the launcher stops its
    workers instead of leaving them running as orphans."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        # joblib's launcher (hydra/launcher=joblib) kills its workers outright (SIGKILL): pass the signal on
        # first and give their runs a moment to mark themselves interrupted and free their claims (the
        # project's local launcher would stop its job processes the same way once the KeyboardInterrupt
        # reaches it; after this it finds them gone)
        children = _child_pids()
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 10
        while children and time.monotonic() < deadline:
            children = [pid for pid in children if _alive(pid)]
            time.sleep(0.1)
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


def _child_pids() -> list[int]:
    """This process's children (the launcher's workers), from /proc (empty where there is none)."""
    me, children = os.getpid(), []
    for entry in Path("/proc").glob("[0-9]*/stat") if Path("/proc").is_dir() else []:
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            children.append(int(entry.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except OSError:
        return False


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class _quiet_launcher_banner:
    """The launchers log one line per job ("#12 : seed=... pack_file=..."), which names only a pack's
    first run; the sweeper prints its own lines per run. ``hydra.verbose=hydra_plugins`` shows them."""

    LOGGERS = (
        "hydra_plugins.hydra_joblib_launcher",
        "hydra_plugins.hydra_submitit_launcher",
        "hydra_plugins.lcm_study.local_launcher",
    )

    def __enter__(self):
        self.saved = {}
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            if not logger.isEnabledFor(logging.DEBUG):
                self.saved[name] = logger.level
                logger.setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc):
        for name, level in self.saved.items():
            logging.getLogger(name).setLevel(level)
        return False
