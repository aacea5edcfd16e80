"""The timings of a finished sweep, as JSON: when it launched, its jobs (packs of runs) in launch order,
how many ran at once, and each run's start, end, clock and CPU seconds and the seconds it spent on
one-off work (from its run.log).

The sweep ETA's test (tests/test_sweep_eta.py) replays such a record: at every moment a run ended it
asks the ETA what is left and compares it with what really was left.

    python tools/sweep_timings.py OUTPUTS_ROOT/.hydra/sweeps/<sweep> OUTPUTS_ROOT/<study>/runs --workers 2 \\
        --note "machine, load, command" > tests/data/recorded_sweep.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from hydra_plugins.lcm_study.progress import one_off_seconds


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def sweep_timings(sweep_dir: Path, runs_dir: Path, workers: int, note: str) -> dict:
    pack_files = sorted((sweep_dir / "packs").glob("pack-*.json"))
    if not pack_files:
        raise SystemExit(f"{sweep_dir}/packs holds no pack files: not a study sweep's folder")
    packs = [[run["run_id"] for run in json.loads(p.read_text())["runs"]] for p in pack_files]
    runs = {}
    for rid in (rid for pack in packs for rid in pack):
        status = json.loads((runs_dir / rid / "status.json").read_text())
        summary = json.loads((runs_dir / rid / "summary.json").read_text())
        runs[rid] = {
            "state": status["state"],
            "started": _seconds(status["started"]),
            "ended": _seconds(status["ended"]),
            "seconds": summary["seconds_total"],
            "cpu_seconds": summary.get("cpu_seconds_total"),
            "one_off_seconds": one_off_seconds(runs_dir / rid / "run.log"),
            "pid": status.get("pid"),
        }
    return {
        "note": note,
        # the pack files are written just before the launcher starts the jobs
        "launched": max(p.stat().st_mtime for p in pack_files),
        "workers": workers,
        "packs": packs,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="the sweep's folder under <root>/.hydra/sweeps/")
    parser.add_argument("runs_dir", type=Path, help="<root>/<study>/runs")
    parser.add_argument("--workers", type=int, required=True, help="jobs at once (the launch line says it)")
    parser.add_argument("--note", default="", help="where and how it was recorded")
    args = parser.parse_args(argv)
    json.dump(sweep_timings(args.sweep_dir, args.runs_dir, args.workers, args.note), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
