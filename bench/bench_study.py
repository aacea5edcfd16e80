"""The whole default study, timed end to end: the 750-run sweep, then the analysis.

    python bench/bench_study.py [--root /tmp/lcm-study-bench] [--seeds 750]

Runs exactly what a user runs (`python -m pipeline -m 'seed=range(0,750)'`,
then `python -m analysis --root ... --study headline`) into a fresh root and
prints the machine, both wall times, the per-run overhead (wall x cores / runs
over a run's own training + probe time) and the peak resident memory of the
sweep's largest process and of the analysis. About 50 minutes on 2 cores;
nothing else should run on the machine meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

REPO = Path(__file__).resolve().parent.parent


# A fresh intermediate process per command, so that its children's peak RSS
# (a running maximum per process) is that command's alone.
_MEASURE = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def timed(*args: str) -> tuple[float, float]:
    """Wall seconds and the peak RSS (GiB) of the largest process the command ran."""
    tic = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, sys.executable, *args],
        cwd=REPO,
        check=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - tic, int(out.stdout.split()[-1]) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/lcm-study-bench")
    parser.add_argument("--seeds", type=int, default=750)
    args = parser.parse_args()
    root = Path(args.root)
    if root.exists():
        shutil.rmtree(root)
    cores = len(os.sched_getaffinity(0))
    print(describe(1))
    sweep_s, sweep_gib = timed("-m", "pipeline", "-m", f"seed=range(0,{args.seeds})", f"paths.root={root}")
    analysis_s, analysis_gib = timed("-m", "analysis", "--root", str(root), "--study", "headline")
    compute = []
    for summary_file in (root / "headline" / "runs").glob("*/summary.json"):
        sec = json.loads(summary_file.read_text())["seconds"]
        compute.append(sec["training"] + sum(sec["probes"].values()))
    mean = sum(compute) / len(compute)
    print(
        f"{len(compute)} runs: sweep {sweep_s / 60:.1f} min + analysis {analysis_s:.0f} s = "
        f"{(sweep_s + analysis_s) / 60:.1f} min on {cores} cores"
    )
    print(f"mean run compute {mean:.2f} s; per-run overhead {sweep_s * cores / len(compute) / mean - 1:+.1%}")
    print(f"peak resident memory: sweep's largest process {sweep_gib:.2f} GiB, analysis {analysis_gib:.2f} GiB")


if __name__ == "__main__":
    main()
