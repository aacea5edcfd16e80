"""One run: from a validated configuration to a finished run folder (any study)."""

from __future__ import annotations

import functools
import logging
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from .logs import run_log
from .planning import Plan
from .record import RunRecord
from .runfolder import claim_state, is_done, try_claim
from .schema import DONE, LOG, RUNNING, VERSION
from .studies import RunContext
from .tracking import Tracker

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    state: str  # DONE, or RUNNING when another process computes it (pipeline/schema.py); a failed run raises
    computed: bool = True  # False: found done, or left to the process that owns it

    @property
    def note(self) -> str | None:
        """Why this process did not compute the run, or None when it did."""
        if self.computed:
            return None
        return "already done: skipped" if self.state == DONE else "another process computes it: left alone"


@functools.lru_cache(maxsize=1)
def _git_commit() -> str | None:
    """The commit of the code this process imported (asked once: a process runs many runs)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def execute(plan: Plan) -> RunOutcome:
    """Compute a planned run (pipeline/planning.py) unless its folder is done or claimed."""
    cfg, rid, run_dir = plan.cfg, plan.run_id, plan.run_dir
    expected = cfg.get("expected_run_id")
    if expected and expected != rid:
        raise RuntimeError(
            f"this job was launched as run {expected}, but the configuration it composes now gives "
            f"run {rid}: conf/ or the code changed while the job waited. Relaunch the sweep."
        )
    if is_done(run_dir):
        log.info("run %s is already done: skipping (%s)", rid, run_dir)
        return RunOutcome(rid, run_dir, DONE, computed=False)
    claim = try_claim(run_dir)
    if claim is None:
        owner = claim_state(run_dir) or {}
        log.warning(
            "run %s is being computed by %s (pid %s): leaving it alone", rid, owner.get("host"), owner.get("pid")
        )
        return RunOutcome(rid, run_dir, RUNNING, computed=False)
    if is_done(run_dir):
        # another process finished it between the check above and the claim
        claim.release()
        log.info("run %s was finished by another process meanwhile: skipping (%s)", rid, run_dir)
        return RunOutcome(rid, run_dir, DONE, computed=False)

    record = RunRecord(run_dir, rid, cell=cfg.design.cell)
    try:
        with run_log(run_dir / LOG), _interrupts_raise():
            return _execute_claimed(plan, record, claim)
    except RunInterrupted as exc:
        # the folder says so and the claim goes, before the process ends as the signal asked
        try:
            record.mark_interrupted(exc.signal_name)
        except OSError as unwritten:
            log.error("run %s interrupted; its status.json could not say so: %s", rid, unwritten)
        log.error("run %s interrupted by %s: a relaunch computes it again", rid, exc.signal_name)
        raise
    finally:
        claim.release()


class RunInterrupted(BaseException):
    """SIGTERM or SIGINT arrived during a run (BaseException: no run code may swallow it)."""

    def __init__(self, signum: int):
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {self.signal_name}")


@contextmanager
def _interrupts_raise():
    """SIGTERM/SIGINT raise RunInterrupted in this (main) thread for the run's duration."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame):
        raise RunInterrupted(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _execute_claimed(plan: Plan, record: RunRecord, claim) -> RunOutcome:
    """The run itself, once its folder is claimed; every failure is recorded in status.json."""
    cfg, rid, run_dir = plan.cfg, plan.run_id, plan.run_dir
    tracker = None
    try:
        record.write_config(OmegaConf.to_yaml(cfg, resolve=True))
        record.mark_running()
        log.info("run %s -> %s", rid, run_dir)
        t0, cpu0 = time.perf_counter(), time.process_time()
        tracker = Tracker(cfg, rid, run_dir, plan.runner)

        def on_step(step: int, readouts: dict, curves) -> None:
            claim.heartbeat()
            tracker.log_epoch(step, readouts, curves)

        result = plan.runner.run(cfg, RunContext(int(cfg.design.rng_seed), on_step))
        summary = {
            "run_id": rid,
            "study": cfg.study.name,
            "cell": cfg.design.cell,
            "replicate": int(cfg.design.replicate),
            **result.summary,
            "version": VERSION,
            "git_commit": _git_commit(),
            "seconds_total": time.perf_counter() - t0,
            # this process's CPU time during the run (all its threads): the sweep's ETA weighs runs by it
            "cpu_seconds_total": time.process_time() - cpu0,
        }
        mirror = tracker.mirror_record()  # the W&B mirror's state, in summary.json when W&B is on
        if mirror is not None:
            summary["wandb"] = mirror
        record.write_results(result.curves, result.readouts, summary, result.tables)
        final = tracker.finish(result.curves, summary, ok=True)
        if final != mirror:  # the mirror failed at its end: summary.json says so
            record.write_summary({**summary, "wandb": final})
        record.mark_done(**{k: summary[k] for k in ("test_accuracy",) if k in summary})
        log.info(
            "run %s done%s",
            rid,
            f": test accuracy {summary['test_accuracy']:.3f}" if "test_accuracy" in summary else "",
        )
        return RunOutcome(rid, run_dir, DONE)
    except Exception as exc:
        try:
            record.mark_failed(exc)
        except OSError as unwritten:
            # not even the space set aside took it: the run's own error is what the caller must see
            log.error("run %s failed (%s); its status.json could not say so: %s", rid, exc, unwritten)
        if tracker is not None:
            tracker.finish(None, {}, ok=False)
        log.error("run %s failed: %s", rid, exc)
        raise
