"""Where a run's log lines go: all of them to its run.log; to the console, a single run's lines (one per
epoch) and a sweep job's warnings.

A single run (``lcm ...`` without ``-m``) shows its INFO lines on the console: where it writes, one
line per epoch with the epoch's seconds and the time left, its end. ``hydra/job_logging=quiet`` (or
``hydra.job_logging.root.level=WARNING``) keeps only warnings. A sweep runs hundreds of runs in
parallel workers; their epoch lines interleaved on one console are unreadable, and the study
sweeper reports each finished run itself, so a sweep job's console handler (conf/hydra/
job_logging/lcm.yaml) drops the project's records below WARNING, unless the record's logger was
asked for with Hydra's ``hydra.verbose`` (e.g. ``hydra.verbose=pipeline.train``: epoch lines;
``hydra.verbose=pipeline``: every line of the run). ``run_log`` keeps run.log complete whatever
the console level.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

PROJECT_LOGGER = "pipeline"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def single_run() -> bool:
    """True inside ``lcm ...`` without ``-m`` (Hydra's RUN mode); False in a sweep's jobs and outside Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN


class ConsoleFilter(logging.Filter):
    """Pass the project's records to the console at the root's level in a single run; in a sweep's jobs
    only from WARNING up, or when their logger is verbose."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != PROJECT_LOGGER and not record.name.startswith(PROJECT_LOGGER + "."):
            return True  # the root logger's level already decided
        # hydra.verbose=<logger> sets that logger to DEBUG: the user asked to see it
        if logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return True
        # run_log may hold the project's logger below the root's level (for run.log's sake);
        # the console keeps the level the user set on the root
        floor = logging.getLogger().level
        return record.levelno >= (floor if single_run() else max(logging.WARNING, floor))


@contextlib.contextmanager
def run_log(path: Path) -> Iterator[logging.Handler]:
    """Append every INFO (or, when verbose, DEBUG) record of the run to ``path`` while the block runs.

    Hydra's ``hydra.job_logging.root.level=WARNING`` quiets the console by
    raising the root logger's level, which would also stop INFO records before
    they reach this file; the project's logger is therefore held at INFO for
    the duration (the console handler's filter still keeps those lines off the
    console).
    """
    project = logging.getLogger(PROJECT_LOGGER)
    saved_level = project.level
    if not project.isEnabledFor(logging.INFO):
        project.setLevel(logging.INFO)
    handler = logging.FileHandler(path, mode="a")
    handler.setLevel(logging.DEBUG if project.isEnabledFor(logging.DEBUG) else logging.INFO)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        handler.close()
        project.setLevel(saved_level)
