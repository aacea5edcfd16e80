"""A launched sweep's progress, read from its run folders: one line per finished run with k/N done and
the time left (ETA), and while nothing finishes, a line a minute with the running runs' epochs.

The launchers (local job processes, a Slurm job array) block until a whole batch has
ended and say nothing meanwhile, so the sweeper watches the runs' status.json
files instead, from a thread: this works the same on this machine and while
waiting on Slurm (the run folders are on a shared file system). On a terminal
tqdm keeps a live bar below the lines; in a log file each line carries the
counts, and a line every minute (every five once a run has finished) says the
sweep is still working and how far its running runs are.

The ETA (:func:`remaining_seconds`) replays the sweep's jobs on its workers:
each run costs the mean CPU time of the finished runs of its kind (its data
source: a gesture run costs more than a sentence run), scaled by how much
longer than their CPU time the finished runs took on the clock (a busy
machine), and each job (a pack of runs, computed one after another) goes to
the first worker that is free, after the jobs already running. Before any run
has finished, the running runs' epochs give the cost (elapsed / share done).
"""

from __future__ import annotations

import heapq
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from statistics import fmean
from typing import NamedTuple, TextIO

from tqdm import tqdm

from pipeline.runfolder import (
    MAX_TEXT_BYTES,
    NotReadable,
    StatusUnreadable,
    open_entry,
    read_entry,
    read_status,
    read_text_entry,
)
from pipeline.schema import CLAIM, DONE, FAILED, LOG, RUNNING, STATUS, SUMMARY

FINAL = (DONE, FAILED)
#: a run's epoch line in its run.log (pipeline/train.py)
EPOCH_LINE = re.compile(rb"epoch (\d+)/(\d+)")
#: seconds between "still working" lines in a log file: before the first run ends, and after
FIRST_QUIET_S = 60.0
QUIET_S = 300.0


# NamedTuple, not a dataclass: Hydra's plugin scan runs this module outside sys.modules, where a
# dataclass with postponed annotations cannot be made
class FinishedRun(NamedTuple):
    """What a finished run cost: seconds on the clock and of CPU (either may be unknown), and of its clock
    seconds those spent on one-off work (:func:`one_off_seconds`; None: unknown)."""

    kind: str
    seconds: float | None
    cpu_seconds: float | None
    one_off: float | None = None


class RunningRun(NamedTuple):
    """A run in progress: seconds since it started and, from its run.log (None before its first epoch),
    the seconds its remaining epochs take at its usual pace, what a whole run takes at that pace, and
    the seconds it has spent so far on one-off work (loading its data, compiling; a stall under way)."""

    kind: str
    elapsed: float
    left: float | None = None
    steady: float | None = None
    one_off: float = 0.0


def run_kind(run_id: str) -> str:
    """What sets a run's cost: its data source (the run id's first part, ``gesture-p03-r001-...``)."""
    return run_id.split("-", 1)[0]


class CostModel:
    """What runs and jobs cost on the clock, from the finished runs.

    A run costs the mean CPU time of the finished runs of its kind that were not the first of their job;
    the first run of a job pays once for the job's process (imports, compilation) on top: ``job_extra``,
    the first runs' mean excess over their kind. CPU seconds become seconds on the clock through
    ``slowdown``, how much longer than their CPU time the finished runs took (1 on a free machine, more
    where the runs share their cores). A job also waits ``job_start`` seconds before its first run
    starts (the process start), measured on the sweep's first jobs.
    """

    def __init__(
        self,
        packs: Sequence[Sequence[str]],
        finished: dict[str, FinishedRun],
        job_start: float,
        running: dict[str, RunningRun] | None = None,
    ):
        self.first_runs = {pack[0] for pack in packs if pack}
        self.job_start = job_start
        clock = {rid: f.seconds for rid, f in finished.items() if f.seconds is not None}
        if not clock:
            self._from_running(running or {})
            return
        cpu = {rid: f.cpu_seconds for rid, f in finished.items() if rid in clock and f.cpu_seconds}
        # without CPU times (runs recorded before they were kept) the clock's seconds stand in for them
        work: dict[str, float] = cpu or clock
        used = {rid: finished[rid] for rid in work}
        self.slowdown = sum(clock[rid] for rid in work) / sum(work.values())
        later = _means((used[rid].kind, w) for rid, w in work.items() if rid not in self.first_runs)
        # a first run's one-off work: measured in its run.log (its stalled epochs), else its excess over
        # the later runs of its kind; in CPU seconds, as the share of the run's clock time it took
        extra: dict[str, float] = {}
        for rid in (r for r in work if r in self.first_runs):
            run = used[rid]
            if run.one_off is not None:
                extra[rid] = work[rid] * min(1.0, run.one_off / clock[rid])
            elif run.kind in later:
                extra[rid] = max(0.0, work[rid] - later[run.kind])
        self.job_extra = fmean(extra.values()) if extra else 0.0
        firsts = _means(
            (used[rid].kind, work[rid] - extra.get(rid, self.job_extra)) for rid in work if rid in self.first_runs
        )
        self.per_kind = {**firsts, **later}
        self.overall = fmean(self.per_kind.values()) if self.per_kind else None

    def _from_running(self, running: dict[str, RunningRun]) -> None:
        """Before any run has ended: a run costs what the running runs' epochs take at their usual pace, and
        a job's first run what the running first runs have spent on one-off work so far on top."""
        self.slowdown = 1.0  # these are seconds on the clock already
        paced = {rid: (r.kind, r.steady, r.one_off) for rid, r in running.items() if r.steady is not None}
        self.per_kind = _means((kind, steady) for kind, steady, _ in paced.values())
        self.overall = fmean(self.per_kind.values()) if self.per_kind else None
        firsts = [one_off for rid, (_, _, one_off) in paced.items() if rid in self.first_runs]
        self.job_extra = fmean(firsts) if firsts else 0.0

    @property
    def known(self) -> bool:
        return self.overall is not None

    def run(self, rid: str) -> float:
        """Seconds on the clock that run ``rid`` takes, its job's one-off costs included if it is a first run."""
        assert self.overall is not None, "known: a finished or a running run says what a run costs"
        cpu = self.per_kind.get(run_kind(rid), self.overall) + (self.job_extra if rid in self.first_runs else 0.0)
        return cpu * self.slowdown


def _means(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    by_kind: dict[str, list[float]] = {}
    for kind, value in pairs:
        by_kind.setdefault(kind, []).append(value)
    return {kind: fmean(values) for kind, values in by_kind.items()}


def remaining_seconds(
    packs: Sequence[Sequence[str]],
    workers: int,
    finished: dict[str, FinishedRun],
    running: dict[str, RunningRun],
    job_start: float = 0.0,
) -> float | None:
    """Seconds until the last job of the sweep ends, or None while no run's cost is known.

    ``packs``: the sweep's jobs in launch order, each the run ids it computes one after another;
    ``workers``: how many jobs run at once; ``job_start``: seconds a job takes to start its first run.
    Jobs under way keep their workers; the others go, in order, to the first worker that is free.
    Before any run has finished, the running runs' epochs give the cost (:class:`CostModel`).
    """
    model = CostModel(packs, finished, job_start, running)
    if not model.known:
        return None
    under_way: list[float] = []
    waiting: list[float] = []
    for pack in packs:
        left = [rid for rid in pack if rid not in finished]
        if not left:
            continue
        work = 0.0
        for rid in left:
            if rid not in running:
                work += model.run(rid)
            elif (its_own := running[rid].left) is not None:
                work += its_own  # its own epochs say best how long it has left
            else:
                work += max(model.run(rid) - running[rid].elapsed, 0.0)
        if len(left) < len(pack) or any(rid in running for rid in left):
            under_way.append(work)
        else:
            waiting.append(job_start + work)
    free_at = under_way + [0.0] * max(0, workers - len(under_way))
    if not free_at:
        return 0.0
    heapq.heapify(free_at)
    for work in waiting:
        heapq.heappush(free_at, heapq.heappop(free_at) + work)
    return max(free_at)


def clock(seconds: float | None) -> str:
    """``4:05`` / ``1:02:05`` (h:mm:ss), ``?`` when unknown."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _mtime(path: Path) -> int | None:
    """When a run folder's file last changed, never following a link (a loop, a crafted folder): None if
    it cannot tell."""
    try:
        return path.stat(follow_symlinks=False).st_mtime_ns
    except OSError:
        return None


def _status(run_dir: Path) -> dict | None:
    """The run's status.json, read as every reader of the project reads it (confined, bounded, never
    blocking on a FIFO); None while absent or unreadable (the next poll looks again)."""
    try:
        return read_status(run_dir)
    except (StatusUnreadable, OSError):
        return None


def _timestamp(text) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


#: a run.log line's time and what it marks: the run's start, an epoch, its end (pipeline/logs.py FORMAT,
#: pipeline/run.py, pipeline/train.py)
LOG_MARK = re.compile(
    rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ pipeline\.(?:run: run \S+ (->|done)|train: (epoch) \d)"
)


def _stamps(run_log: Path) -> list[float]:
    """The times of the last attempt's start line, its epoch lines and its end line in a run.log."""
    try:
        # confined as every run folder read: a link, a FIFO or a huge file is not read
        lines = read_entry(Path(run_log).parent, Path(run_log).name, MAX_TEXT_BYTES)[0].splitlines()
    except (OSError, NotReadable):
        return []
    stamps: list[float] = []
    for match in filter(None, map(LOG_MARK.match, lines)):
        if match.group(2) == b"->":
            stamps = []  # a relaunch appends to the same run.log: only its last attempt counts
        try:
            stamps.append(datetime.strptime(match.group(1).decode(), "%Y-%m-%d %H:%M:%S,%f").timestamp())
        except ValueError:
            continue
    return stamps


def _usual(epochs: list[float]) -> float:
    """A run's usual epoch: the lower median of its sorted epoch stretches (of two, the shorter: the other
    may be a stall)."""
    return epochs[(len(epochs) - 1) // 2]


def _excess(stretches: list[float], typical: float) -> float:
    """Seconds of the stretches that last over three usual epochs, beyond one usual epoch each."""
    return sum(d - typical for d in stretches if d > 3 * typical)


def one_off_seconds(run_log: Path) -> float | None:
    """Seconds of a run spent on one-off work (loading its data set into the process, compiling the
    probe's search): between the run's start, its epoch lines and its end, every stretch longer than
    three times the median epoch counts its excess over the median. None without epoch lines."""
    stamps = _stamps(run_log)
    stretches = [b - a for a, b in zip(stamps, stamps[1:])]
    if len(stretches) < 3:
        return None
    epochs = sorted(stretches[1:-1])  # the epochs: not the start (data loading), not the end (the test)
    return _excess(stretches, _usual(epochs))


def running_run(rid: str, run_dir: Path, elapsed: float, now: float) -> RunningRun:
    """A running run as its run.log tells it: its usual epoch, how long its remaining epochs take at that
    pace (less what the current epoch has run), a whole run at that pace, and its one-off work so far
    (a stretch under way that has lasted over three usual epochs counts too)."""
    share = _epoch_share(run_dir)
    stamps = _stamps(run_dir / LOG)
    if share is None or len(stamps) < 2:
        return RunningRun(run_kind(rid), elapsed)
    stretches = [b - a for a, b in zip(stamps, stamps[1:])]
    typical = _usual(sorted(stretches[1:] or stretches))
    (done, total), ongoing = share, max(0.0, now - stamps[-1])
    left = max(0.0, typical * (total - done) - min(ongoing, typical))
    one_off = _excess(stretches, typical) + (ongoing - typical if ongoing > 3 * typical else 0.0)
    return RunningRun(run_kind(rid), elapsed, left, typical * total, one_off)


def _finished_run(rid: str, run_dir: Path, status: dict | None) -> FinishedRun:
    """summary.json's timings for a done run, else the status file's start to end."""
    if status and status.get("state") == DONE:
        try:
            summary = json.loads(read_text_entry(run_dir, SUMMARY))
            cpu = summary.get("cpu_seconds_total")
            return FinishedRun(
                run_kind(rid),
                float(summary["seconds_total"]),
                None if cpu is None else float(cpu),
                one_off_seconds(run_dir / LOG),
            )
        except (OSError, ValueError, KeyError, TypeError):
            pass
    start, end = _timestamp((status or {}).get("started")), _timestamp((status or {}).get("ended"))
    return FinishedRun(run_kind(rid), None if start is None or end is None else end - start, None)


def _epoch_share(run_dir: Path) -> tuple[int, int] | None:
    """(epoch, epochs) of the last epoch line in the run's run.log, None before the first."""
    try:
        fd, info = open_entry(run_dir, LOG, MAX_TEXT_BYTES)
    except (OSError, NotReadable):
        return None
    try:
        matches = EPOCH_LINE.findall(os.pread(fd, 8192, max(0, info.st_size - 8192)))
    except OSError:
        return None
    finally:
        os.close(fd)
    return (int(matches[-1][0]), int(matches[-1][1])) if matches else None


class Progress:
    """Reports each run of ``runs`` (run id -> run folder) once, when it ends, with the sweep's ETA.

    ``packs`` (the jobs' run ids in launch order; default: one job per run) and ``workers`` (jobs at
    once) are what the ETA replays; ``now`` is the clock (seconds since the epoch).
    """

    def __init__(
        self,
        runs: dict[str, Path],
        stream: TextIO = sys.stderr,
        poll_s: float = 1.0,
        quiet_s: float = QUIET_S,
        packs: Sequence[Sequence[str]] | None = None,
        workers: int = 1,
        now: Callable[[], float] = time.time,
    ):
        # a status.json written before the launch (a failure being retried) is not news
        self.pending = {rid: (Path(d), _mtime(Path(d) / STATUS)) for rid, d in runs.items()}
        self.total = len(runs)
        self.counts = {DONE: 0, FAILED: 0, "other": 0}
        self.packs = [list(p) for p in packs] if packs else [[rid] for rid in runs]
        self.workers = max(1, int(workers))
        self.finished: dict[str, FinishedRun] = {}
        self.started: dict[str, float] = {}  # run id -> when it started (status.json), while it runs
        self.first_starts: dict[str, float] = {}  # the same for the first run of each job, kept
        self.stream = stream
        self.poll_s = poll_s
        self.quiet_s = quiet_s
        self.now = now
        self.t0 = now()
        self.last_line = self.t0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        tty = hasattr(stream, "isatty") and stream.isatty()
        self.bar = tqdm(
            total=self.total,
            file=stream,
            disable=not tty,
            dynamic_ncols=True,
            leave=False,
            desc=self._counts(),
            bar_format="[study] {desc} {bar:20} {elapsed} elapsed",
        )

    # -- reporting --------------------------------------------------------
    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def running(self) -> dict[str, RunningRun]:
        """The runs under way now, with their epochs from run.log."""
        now = self.now()
        return {
            rid: running_run(rid, self.pending[rid][0], max(0.0, now - started), now)
            for rid, started in self.started.items()
            if rid in self.pending
        }

    def job_start(self) -> float:
        """Seconds from the launch to the first run of each of the first jobs (their process's start)."""
        firsts = [
            self.first_starts[p[0]] - self.t0 for p in self.packs[: self.workers] if p and p[0] in self.first_starts
        ]
        return max(0.0, fmean(firsts)) if firsts else 0.0

    def remaining(self) -> float | None:
        return remaining_seconds(self.packs, self.workers, self.finished, self.running(), self.job_start())

    def eta(self) -> str:
        return "0:00" if self.done == self.total else clock(self.remaining())

    def _counts(self) -> str:
        return f"{self.counts[DONE]}/{self.total} done, {self.counts[FAILED]} failed"

    def summary(self) -> str:
        return f"{self._counts()}, ETA {self.eta()}"

    def _print(self, line: str) -> None:
        if self.bar.disable:
            print(line, file=self.stream, flush=True)
        else:
            self.bar.write(line, file=self.stream)
        self.last_line = self.now()

    def report(self, rid: str, state: str, timing: FinishedRun | None, detail: str | None = None) -> None:
        with self._lock:
            if rid not in self.pending:
                return
            del self.pending[rid]
            self.started.pop(rid, None)
            self.finished[rid] = timing or FinishedRun(run_kind(rid), None, None)
            self.counts[state if state in FINAL else "other"] += 1
            seconds = timing.seconds if timing else None
            took = f"{seconds:6.1f} s" if seconds is not None else "       "
            what = f"  {detail}" if detail else ""
            self._print(f"[study] {rid}  {state:<7} {took}  ({self.summary()}){what}")
            self.bar.set_description_str(f"{self._counts()}, ETA {self.eta()}", refresh=False)
            self.bar.update(1)

    def still_working(self) -> str:
        """The line a log file gets while no run ends: counts, the running runs' epochs, elapsed, ETA."""
        running = self.running()
        claimed = sum(os.path.lexists(d / CLAIM) for d, _ in self.pending.values())
        epochs = [_epoch_share(self.pending[rid][0]) for rid in running]
        known = [e for e in epochs if e]
        where = ""
        if known:
            low, high = min(e[0] for e in known), max(e[0] for e in known)
            where = f" at epoch {low}{'' if low == high else f'-{high}'} of {known[0][1]}"
        return (
            f"[study] working: {self._counts()}, {max(claimed, len(running))} running{where}; "
            f"{clock(self.now() - self.t0)} elapsed, ETA {self.eta()}"
        )

    # -- watching ---------------------------------------------------------
    def poll(self) -> None:
        for rid, (run_dir, before) in list(self.pending.items()):
            now = _mtime(run_dir / STATUS)
            if now is None or now == before:
                continue
            status = _status(run_dir)
            if status is None:
                continue  # replaced while read: the next poll sees it
            state = status.get("state")
            if state not in FINAL:
                self.pending[rid] = (run_dir, now)  # running: read again only when it changes
                started = _timestamp(status.get("started"))
                if state == RUNNING and started is not None:
                    self.started[rid] = started
                    if any(p and p[0] == rid for p in self.packs):
                        self.first_starts[rid] = started
            else:
                error = (status.get("error") or "").strip().splitlines()
                detail = error[0] if state == FAILED and error else None
                self.report(rid, state, _finished_run(rid, run_dir, status), detail)
        quiet_for = self.quiet_s if self.done else min(self.quiet_s, FIRST_QUIET_S)
        if self.bar.disable and self.now() - self.last_line >= quiet_for:
            with self._lock:
                self._print(self.still_working())
        elif not self.bar.disable:
            self.bar.set_description_str(f"{self._counts()}, ETA {self.eta()}", refresh=False)
            self.bar.refresh()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def start(self) -> Progress:
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="lcm-progress", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> Progress:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def settle(self, outcomes: Iterable[tuple[str, str, str | None]]) -> None:
        """After the launcher returned: the last status files, then what the jobs said about the rest.

        ``outcomes`` are (run id, state, detail) from the jobs' return values
        (e.g. a run skipped because another process had claimed it meanwhile,
        or a failure before the run's folder was written).
        """
        self.poll()
        for rid, state, detail in outcomes:
            if rid in self.pending:
                run_dir = self.pending[rid][0]
                status = _status(run_dir)
                self.report(rid, state, _finished_run(rid, run_dir, status) if status else None, detail)

    def close(self) -> None:
        self.stop()
        self.bar.close()
