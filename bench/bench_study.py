"""The informative study timed end to end: one replicate of every design cell, then the analysis; the
750-run study extrapolated from it.

    python bench/bench_study.py [--root /tmp/lcm-study-bench] [--wandb disabled|offline] [--quick]

Runs exactly what a user runs, into a fresh root, at the default sizes:
`python -m pipeline -m 'seed=range(0,25)'` (seed i = design cell i,
replicate 0: every cell once) and `python -m analysis --root ... --study
headline`. Prints the machine with its load, wall and CPU time and the peak
resident memory of each command's largest process, the per-run overhead
(wall x cores / runs over a run's own training + probe time, minus 1), what
the runs' time goes to, and the 750-run study (30 replicates of each cell) on
this machine: 30 x the sweep, plus the analysis of 750 runs, measured by
bench/bench_analysis.py on 750 synthetic run folders of the study's shape
(skip with --no-analysis-750). Nothing else should run on the machine
meanwhile (about 20-30 minutes on 2 free cores). --quick: 4 cells, 2 epochs,
a small synthetic study: checks that the script works, in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, load, measured

REPO = Path(__file__).resolve().parent.parent
CELLS = 25  # 15 gesture pairs + 10 sentence pairs
STUDY_RUNS = 750


def analysis_750(quick: bool) -> tuple[float, float] | None:
    """Wall seconds of `python -m analysis` on 750 synthetic run folders (fresh cache) and its peak RSS (GiB)."""
    extra = ["--pairs", "2", "--replicates", "2", "--epochs", "5", "--slices", "20"] if quick else []
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_analysis.py"), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wall = re.search(r"whole command, fresh:\s+([\d.]+) s wall", out)
    peak = re.search(r"peak resident memory of an analysis process: (\d+) MiB", out)
    if not (wall and peak):
        print(out)
        return None
    return float(wall.group(1)), int(peak.group(1)) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/lcm-study-bench")
    parser.add_argument("--wandb", default="disabled", choices=("disabled", "offline"), help="WANDB_MODE of the runs")
    parser.add_argument("--quick", action="store_true", help="4 cells x 2 epochs and a small synthetic analysis")
    parser.add_argument("--no-analysis-750", action="store_true", help="skip the synthetic 750-run analysis")
    parser.add_argument(
        "--compile-cache",
        choices=("fresh", "user"),
        default="fresh",
        help="the probe's compile cache: a fresh folder under --root (a machine's first study: the first workers "
        "compile, later ones load) or the user's own (LCM_COMPILE_CACHE or ~/.cache)",
    )
    args = parser.parse_args()
    root = Path(args.root)
    if root.exists():
        shutil.rmtree(root)
    cells = 4 if args.quick else CELLS
    cores = len(os.sched_getaffinity(0))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": args.wandb}
    if args.compile_cache == "fresh":
        env["LCM_COMPILE_CACHE"] = str(root / "compile-cache")
    print(describe(1))
    print(
        f"study: {cells} runs (seed i = design cell i, replicate 0), W&B {args.wandb}, root {root}, "
        f"probe's compile cache: {env.get('LCM_COMPILE_CACHE', 'the user default')}",
        flush=True,
    )
    sweep = [sys.executable, "-m", "pipeline", "-m", f"seed=range(0,{cells})", f"paths.root={root}"]
    if args.quick:
        sweep.append("trainer.epochs=2")
    sweep_s, sweep_cpu, sweep_gib = measured(sweep, cwd=REPO, env=env)
    print(f"sweep: {sweep_s / 60:.1f} min wall, {sweep_cpu / 60:.1f} min CPU; {load()}", flush=True)
    analysis = [sys.executable, "-m", "analysis", "--root", str(root), "--study", "headline", "--quiet"]
    analysis_s, analysis_cpu, analysis_gib = measured(analysis, cwd=REPO, env=env)

    by_source: dict[str, list[dict]] = {}
    shapes: dict[str, set] = {}  # (N, T, H) of the probe's states: the default data may change
    for summary_file in (root / "headline" / "runs").glob("*/summary.json"):
        summary = json.loads(summary_file.read_text())
        by_source.setdefault(summary["data_source"], []).append(summary["seconds"])
        shapes.setdefault(summary["data_source"], set()).add(
            (summary["n_train"], summary["time_slices"], summary["hidden_size"])
        )
    runs = sum(len(v) for v in by_source.values())
    for source, found in sorted(shapes.items()):
        n_values = sorted(n for n, _, _ in found)
        print(
            f"  {source}: n_train {n_values[0]}-{n_values[-1]}, T {sorted({t for _, t, _ in found})}, H {sorted({h for *_, h in found})}"
        )
    print("per run, seconds (total = data + training + probes + writing):")
    for source, seconds in sorted(by_source.items()):
        listed = ", ".join(
            f"{s['total']:.0f} ({s['training']:.0f} + knn {s['probes'].get('knn', 0.0):.0f})" for s in seconds
        )
        print(f"  {source:<9} {listed}")
    compute = [s["training"] + sum(s["probes"].values()) for v in by_source.values() for s in v]
    mean = sum(compute) / len(compute)
    print(
        f"{runs} runs: sweep {sweep_s / 60:.1f} min + analysis {analysis_s:.0f} s = "
        f"{(sweep_s + analysis_s) / 60:.1f} min wall on {cores} cores "
        f"(CPU: sweep {sweep_cpu / 60:.1f} min, analysis {analysis_cpu:.0f} s)"
    )
    for source, seconds in sorted(by_source.items()):
        total = sum(s["total"] for s in seconds) / len(seconds)
        knn = sum(s["probes"].get("knn", 0.0) for s in seconds) / len(seconds)
        training = sum(s["training"] for s in seconds) / len(seconds)
        print(
            f"  {source:<9} {len(seconds):>2} runs, mean {total:.1f} s per run: training {training:.1f} s "
            f"({training / total:.0%}), knn probe {knn:.1f} s ({knn / total:.0%})"
        )
    print(f"mean run compute {mean:.1f} s; per-run overhead {sweep_s * cores / runs / mean - 1:+.1%}")
    print(
        f"peak resident memory: sweep's largest process {sweep_gib:.2f} GiB (target < 1.5), "
        f"analysis of {runs} runs {analysis_gib:.2f} GiB"
    )
    replicates = STUDY_RUNS // CELLS
    study_sweep = sweep_s * replicates * (CELLS / cells)
    line = f"750-run study on this machine: sweep ~ {replicates} x this sweep = {study_sweep / 3600:.1f} h"
    if not args.no_analysis_750:
        measured_750 = analysis_750(args.quick)
        if measured_750:
            seconds, gib = measured_750
            what = "a small synthetic study (--quick)" if args.quick else "750 synthetic runs"
            line += f", + analysis {seconds / 60:.1f} min ({what}, peak {gib:.2f} GiB, target < 2)"
            study_sweep += seconds
        line += f" = {study_sweep / 3600:.1f} h (aim: under 4 h)"
    if args.quick:
        line += "; --quick: 2-epoch runs of 4 cells, not the study's cost"
    print(line)
    print(load())


if __name__ == "__main__":
    main()
