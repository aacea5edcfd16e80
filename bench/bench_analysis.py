"""Benchmark of the analysis stage on a study the size of Jiang & Dale's.

    .venv/bin/python bench/bench_analysis.py [--pairs 15] [--replicates 25] [--epochs 50] [--slices 150]
                                             [--keep DIR] [--jobs N]

Writes 2 sources x 15 class pairs x 25 replicates = 750 synthetic run folders
(50 epochs x 150 time slices each, in the pipeline's record format, via
tests/analysis_fixtures.py) into a temporary folder, then times

1. the metrics: reading every run's learning-curve map and computing start,
   end, max and tmax for all 37,500 curves (``collect_runs``, no cache), and
   the vectorised smoother + metrics alone;
2. the whole command, ``python -m analysis --root ...`` (fresh cache);
3. the same command again: statistics and figures from the cache.

Targets on a 2-core machine: metrics < 30 s, whole command < 3 min, cached
rerun < 60 s. Prints the machine (CPU model, cores) with the numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--replicates", type=int, default=25)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--slices", type=int, default=150)
    parser.add_argument("--jobs", type=int, default=None, help="passed to python -m analysis (default: its own)")
    parser.add_argument("--keep", metavar="DIR", help="write the runs here and keep them (default: a temp folder)")
    args = parser.parse_args()

    from analysis import collect
    from pipeline.curve_metrics import map_metrics
    from tests.analysis_fixtures import make_study

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-analysis-"))
    root = base / "outputs"
    n_runs = 2 * args.pairs * args.replicates
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; load average "
        f"{os.getloadavg()[0]:.2f} at start (other work on the machine slows every number below)",
        flush=True,
    )
    print(
        f"study: 2 sources x {args.pairs} pairs x {args.replicates} replicates = {n_runs} runs, "
        f"{args.epochs} epochs x {args.slices} time slices ({n_runs * args.epochs} curves)",
        flush=True,
    )
    try:
        t0 = time.perf_counter()
        if not (root / "bench" / "runs").is_dir():
            make_study(
                root,
                study="bench",
                pairs=tuple(range(args.pairs)),
                replicates=args.replicates,
                epochs=args.epochs,
                slices=args.slices,
                shuffled_replicates=0,
                broken=False,
                seed=1,
                progress=True,
            )
        print(f"wrote the runs in {time.perf_counter() - t0:.1f} s ({root})", flush=True)

        # 1. metrics: read every map + smoother + metrics, no cache
        t0 = time.perf_counter()
        c0 = time.process_time()
        collection = collect.collect_runs(root, cache_dir=None, progress=False)
        t_collect = time.perf_counter() - t0
        cpu_collect = time.process_time() - c0
        stack = next(iter(collection.maps.values()))
        t0 = time.perf_counter()
        map_metrics(stack)
        t_metrics_only = time.perf_counter() - t0
        assert len(collection.runs) == n_runs, len(collection.runs)

        # 2. the whole command, fresh cache; 3. again, from the cache
        out = base / "analysis"
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "analysis", "--root", str(root), "--out", str(out), "--quiet"]
        if args.jobs:
            command += ["--jobs", str(args.jobs)]
        timings = []
        for label in ("whole command (fresh)", "rerun from the cache"):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            timings.append((label, wall, cpu))
            if result.returncode != 0:
                print(result.stdout, result.stderr, file=sys.stderr)
                return 1
            print(f"  {label}: {wall:.1f} s wall, {cpu:.1f} s CPU -- {result.stdout.strip()}", flush=True)
        # ru_maxrss of children: the largest of the analysis processes (main or model workers)
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

        print("\nresults")
        print(
            f"  metrics (read {n_runs} maps + 3RS3R + start/end/max/tmax): {t_collect:.1f} s wall, "
            f"{cpu_collect:.1f} s CPU   (target < 30 s)"
        )
        print(f"    of which smoother + metrics on {stack.shape[0] * stack.shape[1]} curves: {t_metrics_only:.1f} s")
        print(f"  whole command, fresh:   {timings[0][1]:.1f} s wall, {timings[0][2]:.1f} s CPU   (target < 180 s)")
        print(f"  cached rerun:           {timings[1][1]:.1f} s wall, {timings[1][2]:.1f} s CPU   (target < 60 s)")
        print(f"  peak resident memory of an analysis process: {peak_mib:.0f} MiB   (target < 2048 MiB)")
        print(f"  load average at the end: {os.getloadavg()[0]:.2f}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
