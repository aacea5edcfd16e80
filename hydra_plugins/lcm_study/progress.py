"""A launched sweep's progress, read from its run folders: one line per finished run and k/N done, ETA.

The launchers (local job processes, a Slurm job array) block until a whole batch has
ended and say nothing meanwhile, so the sweeper watches the runs' status.json
files instead, from a thread: this works the same on this machine and while
waiting on Slurm (the run folders are on a shared file system). On a terminal
tqdm keeps a live bar below the lines; in a log file each line carries the
counts, and a line every few minutes says the sweep is still waiting.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from pipeline.schema import CLAIM, DONE, FAILED, STATUS, SUMMARY

FINAL = (DONE, FAILED)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _seconds(run_dir: Path, status: dict) -> float | None:
    """The run's own time: summary.json's total for a done run, else the status file's start to end."""
    if status.get("state") == DONE:
        try:
            return float(json.loads((run_dir / SUMMARY).read_text())["seconds_total"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    try:
        return (datetime.fromisoformat(status["ended"]) - datetime.fromisoformat(status["started"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


class Progress:
    """Reports each run of ``runs`` (run id -> run folder) once, when it ends."""

    def __init__(self, runs: dict[str, Path], stream: TextIO = sys.stderr, poll_s: float = 1.0, quiet_s: float = 300.0):
        # a status.json written before the launch (a failure being retried) is not news
        self.pending = {rid: (Path(d), _mtime(Path(d) / STATUS)) for rid, d in runs.items()}
        self.total = len(runs)
        self.counts = {DONE: 0, FAILED: 0, "other": 0}
        self.stream = stream
        self.poll_s = poll_s
        self.quiet_s = quiet_s
        self.t0 = time.monotonic()
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
            bar_format="[study] {desc} {bar:20} {elapsed} elapsed, ETA {remaining}",
        )

    # -- reporting --------------------------------------------------------
    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def eta(self) -> str:
        if not self.finished:
            return "?"
        elapsed = time.monotonic() - self.t0
        return tqdm.format_interval(elapsed / self.finished * (self.total - self.finished))

    def _counts(self) -> str:
        return f"{self.counts[DONE]}/{self.total} done, {self.counts[FAILED]} failed"

    def summary(self) -> str:
        return f"{self._counts()}, ETA {self.eta()}"

    def _print(self, line: str) -> None:
        if self.bar.disable:
            print(line, file=self.stream, flush=True)
        else:
            self.bar.write(line, file=self.stream)
        self.last_line = time.monotonic()

    def report(self, rid: str, state: str, seconds: float | None, detail: str | None = None) -> None:
        with self._lock:
            if rid not in self.pending:
                return
            del self.pending[rid]
            self.counts[state if state in FINAL else "other"] += 1
            took = f"{seconds:6.1f} s" if seconds is not None else "       "
            what = f"  {detail}" if detail else ""
            self._print(f"[study] {rid}  {state:<7} {took}  ({self.summary()}){what}")
            self.bar.set_description_str(self._counts(), refresh=False)
            self.bar.update(1)

    # -- watching ---------------------------------------------------------
    def poll(self) -> None:
        for rid, (run_dir, before) in list(self.pending.items()):
            now = _mtime(run_dir / STATUS)
            if now is None or now == before:
                continue
            try:
                status = json.loads((run_dir / STATUS).read_text())
            except (OSError, ValueError):
                continue  # replaced while read: the next poll sees it
            state = status.get("state")
            if state not in FINAL:
                self.pending[rid] = (run_dir, now)  # running: read again only when it changes
            else:
                error = (status.get("error") or "").strip().splitlines()
                self.report(rid, state, _seconds(run_dir, status), error[0] if state == FAILED and error else None)
        if self.bar.disable and time.monotonic() - self.last_line >= self.quiet_s:
            running = sum((d / CLAIM).exists() for d, _ in self.pending.values())
            with self._lock:
                self._print(
                    f"[study] waiting: {self._counts()}, {running} running, "
                    f"{tqdm.format_interval(time.monotonic() - self.t0)} elapsed, ETA {self.eta()}"
                )
        else:
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
                status = None
                try:
                    status = json.loads((run_dir / STATUS).read_text())
                except (OSError, ValueError):
                    pass
                self.report(rid, state, _seconds(run_dir, status) if status else None, detail)

    def close(self) -> None:
        self.stop()
        self.bar.close()
