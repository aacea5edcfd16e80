"""The study sweeper: Hydra's basic sweep (every combination of the swept values), made study-aware.

It plans every run before anything is launched (pipeline/planning.py), skips done runs and runs a live
process owns, launches the others in packs (pipeline/packs.py) with their run id frozen, and reports
every failed run at the end. Built on Hydra's public plugin API only.
"""

import contextlib
import csv
import io
import itertools
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

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig, OmegaConf

from pipeline.config import ConfigError  # light: the package imports it for its resolvers anyway

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


class SweepFailed(ConfigError):
    """A sweep that cannot be enumerated (the message names the override)."""


def sweep_jobs(overrides: Sequence[Override]) -> list[list[str]]:
    """Every job of a sweep, as override lines: the product of the swept values (``seed=range(0,5)``,
    ``pair=0,1``), in command-line order; a key given twice keeps its last value. The basic sweeper's
    rule (tests/test_sweep.py holds the two equal on the pinned Hydra)."""
    values: dict[str, list[str]] = {}
    for override in overrides:
        key = override.get_key_element()
        if not override.is_sweep_override():
            values[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            values[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise SweepFailed(f"{override.input_line}: an interval sweep cannot be enumerated; give a range or a list")
    return [list(job) for job in itertools.product(*values.values())]


def job_error(result: JobReturn) -> BaseException:
    """The exception a failed job raised. Hydra's ``return_value`` re-raises it after a line on stderr
    that the sweeper's own summary of failed runs replaces, so that line is kept out of the console."""
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            _ = result.return_value
        except BaseException as exc:  # the job's own exception, whatever it was
            return exc
    raise ValueError(f"job {result.overrides} did not fail (status {result.status})")


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
    given: tuple = ()  # the sweep line's overrides that gave it, as typed


class StudySweeper(Sweeper):
    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        runs_per_job: int | None = None,
    ):
        super().__init__()
        self.max_batch_size = max_batch_size
        self.params = params or {}
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.runs_per_job = runs_per_job  # checked in setup, with the launcher's keys

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Every sweeper, launcher and Hydra folder key is checked before the launcher is made and before
        anything is planned or written; a bad one ends the command with the key and what is allowed."""
        from pipeline.config import config_error_in

        try:
            check_sweep_keys(config, self.max_batch_size, self.params, self.runs_per_job)
        except Exception as exc:
            refusal = config_error_in(exc)  # also a resolver's refusal (an empty $LCM_OUTPUTS)
            if refusal is None:
                raise
            _refuse(refusal)
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # -- planning ---------------------------------------------------------
    def plan(self, jobs: list[list[str]]) -> list[PlannedRun]:
        """Every job planned (pipeline/planning.py), in explicit form, with the state of its run folder."""
        # pipeline's modules are imported where used: Hydra imports every plugin at each start, and the
        # planning module's runners import pandas
        from pipeline.planning import Planner, SharedCompose, override_key
        from pipeline.runfolder import run_state
        from pipeline.schema import DAMAGED

        assert self.hydra_context is not None and self.config is not None, "setup() comes first"
        compose = SharedCompose(
            self.hydra_context.config_loader,
            self.config.hydra.job.config_name,
            RunMode.MULTIRUN,
            list(self.config.hydra.overrides.hydra),
        )
        # a Slurm task's runs get its CPUs, whatever this (login) machine has
        cpus = self.config.hydra.launcher.get("cpus_per_task")
        planner = Planner(compose, max_threads=cpus if isinstance(cpus, int) and cpus >= 1 else None)
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
                    tuple(job),
                )
            )
            if (number + 1) % 100 == 0:
                log.info("planned %d/%d runs (%.1f s)", number + 1, len(jobs), time.perf_counter() - tic)
        return planned

    # -- sweeping ---------------------------------------------------------
    def sweep(self, arguments: list[str]) -> Any:
        from pipeline.schema import DAMAGED, DONE, RUNNING, TO_COMPUTE

        planned, sweep_dir = self._plan_or_refuse(arguments)
        to_run = [p for p in planned if p.state in TO_COMPUTE]
        n_done = sum(p.state == DONE for p in planned)
        n_claimed = sum(p.state == RUNNING for p in planned)
        n_redo = sum(p.state == DAMAGED for p in planned)
        redo = f" (of which {n_redo} damaged done runs, redone)" if n_redo else ""
        _say(
            f"{len(planned)} runs in this sweep: {len(to_run)} to run{redo}, {n_done} already done "
            f"(skipped), {n_claimed} being computed elsewhere (left alone). Plan: {sweep_dir / 'plan.csv'}"
        )
        returns, failed = self._launch_all(sweep_dir, to_run) if to_run else ([], [])
        self._finish(planned, to_run, failed)
        return returns

    def _plan_or_refuse(self, arguments: list[str]) -> tuple[list[PlannedRun], Path]:
        """Every run planned and checked, then the sweep's private folder and its plan; nothing is written
        before a bad value is refused (exit status 1, the key and what is allowed)."""
        from pipeline.config import ConfigError, check_hydra_folders, hydra_root, root_value
        from pipeline.private import NotPrivate, ensure_private_tree

        assert self.hydra_context is not None and self.config is not None, "setup() comes first"
        params = [f"{k}={v}" for k, v in (self.params or {}).items()] + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        try:
            jobs = sweep_jobs(parser.parse_overrides(params))
            if not jobs:
                raise ConfigError(f"the sweep {' '.join(arguments)!r} names no run (an empty range or list?)")
            # the first line within seconds of the launch: planning a large sweep takes a while
            _say(f"planning {_count(len(jobs), 'run')}: composing and checking each")
            # every run is validated here, before the sweep folder or any run folder exists
            planned = self.plan(jobs)
            _refuse_duplicates(planned)
            root = root_value(self.config)
            sweep_dir = Path(check_hydra_folders(self.config.hydra, root, "sweep"))
            ensure_private_tree(Path(hydra_root(root)), sweep_dir)
        except (ConfigError, NotPrivate) as exc:
            _refuse(exc)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self._write_plan(sweep_dir, planned)
        return planned, sweep_dir

    def _launch_all(self, sweep_dir: Path, to_run: list[PlannedRun]) -> tuple[list, list[tuple[str, str]]]:
        """Launch the runs in packs, batch by batch; (Hydra's returns, (run id, error) of each failed run)."""
        packs = self._packs(to_run)
        job_overrides = self._write_packs(sweep_dir, packs)
        assert self.config is not None, "setup() gives the sweeper its config"
        launcher = self.config.hydra.runtime.choices.get("hydra/launcher", "?")
        largest = max(len(p) for p in packs)
        _say(
            f"launching {_count(len(to_run), 'run')} as {_count(len(packs), 'job')} of up to {largest} "
            f"{'run' if largest == 1 else 'runs'} each (hydra.sweeper.runs_per_job) on hydra/launcher={launcher}, "
            f"{min(self._parallel_slots(), len(packs))} at a time; each run's log: <run folder>/run.log"
        )
        batch_size = self.max_batch_size or len(packs)
        returns: list[Sequence[JobReturn]] = []
        failed: list[tuple[str, str]] = []
        progress = Progress(
            {p.run_id: p.run_dir for p in to_run},
            packs=[[run.run_id for run in pack] for pack in packs],
            workers=self._parallel_slots(),
        )
        with _quiet_launcher_banner(), progress, _stop_on_term():
            for start in range(0, len(packs), batch_size):
                batch = packs[start : start + batch_size]
                results = self._launch_batch(job_overrides[start : start + batch_size], start, progress)
                progress.stop()
                outcomes = _outcomes(batch, results, failed)
                progress.settle(outcomes)
                returns.append(results)
                if start + batch_size < len(packs):
                    progress.start()
        progress.close()
        return returns, failed

    def _launch_batch(self, overrides: list[list[str]], start: int, progress: Progress) -> Sequence[JobReturn]:
        from pipeline.run import RunInterrupted

        assert self.launcher is not None, "setup() gives the sweeper its launcher"
        try:
            return self.launcher.launch(overrides, initial_job_idx=start)
        except (KeyboardInterrupt, RunInterrupted) as exc:
            # the launcher stops its workers (their runs mark themselves interrupted)
            progress.close()
            name = getattr(exc, "signal_name", "SIGINT/SIGTERM")
            _say(
                f"\n[study] stopped by {name}: {progress.summary()}; finished runs are recorded, "
                f"interrupted ones say so in their folders; `python -m pipeline.status` shows what is "
                f"missing; relaunch the same command to compute only those.",
                prefix=False,
            )
            sys.exit(130)
        except Exception as exc:
            # A job died without a result (scancel, node failure, time limit).
            # The runs that finished are recorded in their folders already.
            progress.close()
            _say(
                f"the launcher lost jobs of this sweep: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}\n"
                f"[study] {progress.summary()}; finished runs are recorded; `python -m pipeline.status` "
                f"shows what is missing; relaunch the same command to run only those."
            )
            sys.exit(1)

    def _finish(self, planned: list[PlannedRun], to_run: list[PlannedRun], failed: list[tuple[str, str]]) -> None:
        """Exit 0 only when every planned run's folder says done and its records check out: runs another
        process computes are awaited, then every run is verified; anything else ends non-zero, listed."""
        from pipeline.runfolder import done_check
        from pipeline.schema import DONE, RUNNING

        _await_claimed([p for p in planned if p.state == RUNNING])
        reported = {rid for rid, _ in failed}
        unverified = []
        for run in planned:
            state, why = done_check(run.run_dir)
            if state != DONE and run.run_id not in reported:
                unverified.append((run.run_id, _not_done_reason(state, why)))
        if failed:
            # every failed run, by its id (a pack counts each of its runs)
            lines = "\n".join(f"  {rid}: {err}" for rid, err in failed)
            _say(
                f"{len(failed)} of {len(to_run)} runs failed (each folder's status.json holds the traceback; "
                f"`python -m pipeline.status` lists them; relaunch the same command to rerun them):\n{lines}"
            )
        if unverified:
            lines = "\n".join(f"  {rid}: {why}" for rid, why in unverified)
            _say(
                f"{len(unverified)} of the {len(planned)} planned runs are not done, though no job reported them "
                f"failed (`python -m pipeline.status` lists them; relaunch the same command to compute them):\n"
                f"{lines}"
            )
        if failed or unverified:
            # SystemExit, not an exception: Hydra would print its own stack trace
            # over the summary above. The finished runs are all recorded already.
            sys.exit(1)
        summary = f"all {len(planned)} runs done (verified)" if len(planned) > 1 else "the run is done (verified)"
        _say(summary if to_run else f"nothing to run: {summary}")

    def _parallel_slots(self) -> int:
        """How many jobs the launcher runs at once (local job processes, Slurm array slots)."""
        assert self.config is not None, "setup() comes first"
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
        packs: list[list[PlannedRun]] = []
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


def _say(text: str, prefix: bool = True) -> None:
    print(f"[study] {text}" if prefix else text, file=sys.stderr, flush=True)


def _refuse(exc: BaseException) -> None:
    # SystemExit, not an exception: Hydra would print a stack trace over the message
    _say(f"error in the configuration: {exc}")
    sys.exit(1)


def _refuse_duplicates(planned: list[PlannedRun]) -> None:
    """ConfigError when two lines of the sweep name the same run (it would be computed once, counted twice)."""
    from pipeline.config import ConfigError

    first: dict[str, PlannedRun] = {}

    def line(run: PlannedRun) -> str:
        return " ".join(o for o in run.given if not o.split("=", 1)[0].lstrip("+~").startswith(("paths.", "hydra.")))

    for run in planned:
        if run.run_id in first:
            raise ConfigError(
                f"the sweep names run {run.run_id} twice (`{line(first[run.run_id])}` and `{line(run)}`): "
                f"give each seed (or cell and seed) once"
            )
        first[run.run_id] = run


def _outcomes(batch: list[list[PlannedRun]], results: Sequence[JobReturn], failed: list) -> list[tuple]:
    """(run id, state, detail) of each run of a batch of packs, as its job reported it; failures are added
    to ``failed``."""
    from pipeline.runfolder import is_done
    from pipeline.schema import FAILED

    outcomes: list[tuple[str, str, str | None]] = []
    for pack, result in zip(batch, results):
        if result.status == JobStatus.FAILED:
            error = job_error(result)
            failures = getattr(error, "failures", None)
            if isinstance(failures, list):
                # the pack's own list: (run id, error) of each run that failed
                lines = [(str(rid), str(err)) for rid, err in failures]
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
    return outcomes


def _not_done_reason(state: str, why: str | None) -> str:
    from pipeline.schema import ABSENT, DAMAGED

    if state == ABSENT:
        return "no status.json: the run never started (its job ended without it)"
    if state == DAMAGED:
        return f"damaged: {why}"
    return f"its status.json says {state}"


def _await_claimed(runs: list[PlannedRun], poll_s: float = 5.0, say_every_s: float = 300.0) -> None:
    """Wait until the runs other processes own are released (each claim lives as long as its owner: a dead
    owner's claim is stale at once on this host or in Slurm, after its heartbeat bound elsewhere)."""
    from pipeline.runfolder import claim_state

    waiting = [r for r in runs if claim_state(r.run_dir)]
    if not waiting:
        return
    _say(
        f"waiting for {_count(len(waiting), 'run')} that other processes are computing (this sweep succeeds "
        f"only once every run of it is done; Ctrl-C stops waiting, they go on)"
    )
    last = time.monotonic()
    try:
        while waiting:
            time.sleep(poll_s)
            waiting = [r for r in waiting if claim_state(r.run_dir)]
            if waiting and time.monotonic() - last > say_every_s:
                _say(f"still waiting for {_count(len(waiting), 'run')} computed elsewhere, e.g. {waiting[0].run_id}")
                last = time.monotonic()
    except KeyboardInterrupt:
        _say("stopped waiting: the runs computed elsewhere are not verified; relaunch to check them")
        sys.exit(130)


def check_sweep_keys(config: Any, max_batch_size: Any, params: Any, runs_per_job: Any) -> None:
    """The sweeper's and the launcher's keys (ConfigError naming the key and what is allowed)."""
    from pipeline.config import ConfigError

    for key, value in (("max_batch_size", max_batch_size), ("runs_per_job", runs_per_job)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"hydra.sweeper.{key}={value!r}: must be an integer >= 1 or null (automatic)")
    if params is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in dict(params).items()):
        raise ConfigError(f"hydra.sweeper.params={params!r}: must map keys to sweep values, e.g. {{seed: range(0,25)}}")
    check_launcher_keys(config.hydra.launcher, str(config.hydra.sweep.dir))


# the launchers' numeric keys: (minimum, null allowed)
_LAUNCHER_INTS = {
    "timeout_min": (1, False),
    "cpus_per_task": (1, True),
    "gpus_per_node": (0, True),
    "tasks_per_node": (1, False),
    "mem_gb": (1, True),
    "nodes": (1, False),
    "array_parallelism": (1, False),
    "max_num_timeout": (0, False),
}


def check_launcher_keys(launcher: Any, sweep_dir: str) -> None:
    """hydra.launcher's keys: the local launcher's n_jobs, submitit's sizes, partition, setup lines and
    folder (which must lie in the sweep's private folder: it holds the jobs' pickles)."""
    from pipeline.config import ConfigError, check_inside

    if "n_jobs" in launcher:
        value = launcher.n_jobs
        if isinstance(value, bool) or not isinstance(value, int) or value == 0:
            raise ConfigError(
                f"hydra.launcher.n_jobs={value!r}: must be an integer >= 1, or -1 (every core), -2 (all but one), ..."
            )
    for key, (minimum, nullable) in _LAUNCHER_INTS.items():
        if key not in launcher:
            continue
        value = launcher[key]
        if value is None and nullable:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            allowed = f"an integer >= {minimum}" + (" or null" if nullable else "")
            raise ConfigError(f"hydra.launcher.{key}={value!r}: must be {allowed}")
    if "partition" in launcher and launcher.partition is not None and not str(launcher.partition).strip():
        raise ConfigError("hydra.launcher.partition='': must name a Slurm partition, or be null (the default one)")
    if "setup" in launcher and launcher.setup is not None:
        lines = list(launcher.setup) if not isinstance(launcher.setup, str) else None
        if lines is None or not all(isinstance(line, str) for line in lines):
            raise ConfigError(f"hydra.launcher.setup={launcher.setup!r}: must be a list of shell lines")
    if "submitit_folder" in launcher:
        check_inside(
            "hydra.launcher.submitit_folder",
            str(launcher.submitit_folder).replace("%j", "0"),
            sweep_dir,
            "submitit keeps the jobs' pickles there, in the sweep's private folder",
        )


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
