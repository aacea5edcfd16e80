"""The informative study timed end to end: one replicate of every design cell, then the analysis; the
750-run study extrapolated from it.

    python bench/bench_study.py [--root /tmp/lcm-study-bench] [--wandb disabled|offline] [--cells 25] [--quick]

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
meanwhile (about 10-15 minutes on 2 free cores); the load average is sampled
every 5 s during the sweep and printed beside the extrapolation, so that a
figure taken on a busy machine says so. --cells 10: a subset of the cells in
the study's proportion of data sources (6 gesture, 4 sentence), extrapolated
per data source (about half the time). --quick: 4 cells, 2 epochs, a small
synthetic study: checks that the script works, in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, load, measured

REPO = Path(__file__).resolve().parent.parent
CELLS_BY_SOURCE = {"gesture": 15, "sentence": 10}  # seed i = cell i: the gesture pairs first (conf/study)
CELLS = sum(CELLS_BY_SOURCE.values())
STUDY_RUNS = 750


def chosen_seeds(cells: int) -> list[int]:
    """Seeds of ``cells`` design cells (replicate 0) in the study's proportion of data sources, evenly spread
    over each source's pairs; all 25 for 25."""
    seeds, start = [], 0
    for source_cells in CELLS_BY_SOURCE.values():
        share = max(1, round(cells * source_cells / CELLS))
        seeds += [start + (i * source_cells) // share for i in range(share)]
        start += source_cells
    return seeds


class LoadSampler:
    """The 1-minute load average sampled every ``every`` seconds while a command runs (min / mean / max)."""

    def __init__(self, every: float = 5.0):
        self.every, self.samples, self._stop = every, [os.getloadavg()[0]], threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def text(self) -> str:
        mean = sum(self.samples) / len(self.samples)
        return (
            f"1-min load average during the sweep {min(self.samples):.1f} / {mean:.1f} / {max(self.samples):.1f} "
            f"(min / mean / max of {len(self.samples)} samples, on {len(os.sched_getaffinity(0))} cores)"
        )


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


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/lcm-study-bench")
    parser.add_argument("--wandb", default="disabled", choices=("disabled", "offline"), help="WANDB_MODE of the runs")
    parser.add_argument("--cells", type=int, default=CELLS, help=f"design cells to run, 2..{CELLS} (default: all)")
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
    if not 2 <= args.cells <= CELLS:
        parser.error(f"--cells {args.cells}: must be in 2..{CELLS} (one cell of each data source at least)")
    if args.quick:
        args.cells = 4
    return args


def run_summaries(root: Path) -> dict[str, list[dict]]:
    """Per data source, the runs' seconds (summary.json); prints the runs' N, T and H and each run's seconds."""
    by_source: dict[str, list[dict]] = {}
    shapes: dict[str, set] = {}  # (N, T, H) of the probe's states: the default data may change
    for summary_file in (root / "headline" / "runs").glob("*/summary.json"):
        summary = json.loads(summary_file.read_text())
        by_source.setdefault(summary["data_source"], []).append(summary["seconds"])
        shapes.setdefault(summary["data_source"], set()).add(
            (summary["n_train"], summary["time_slices"], summary["hidden_size"])
        )
    for source, found in sorted(shapes.items()):
        n_values = sorted(n for n, _, _ in found)
        print(
            f"  {source}: n_train {n_values[0]}-{n_values[-1]}, T {sorted({t for _, t, _ in found})}, "
            f"H {sorted({h for *_, h in found})}"
        )
    print("per run, seconds (total = data + training + probes + writing):")
    for source, seconds in sorted(by_source.items()):
        listed = ", ".join(
            f"{s['total']:.0f} ({s['training']:.0f} + knn {s['probes'].get('knn', 0.0):.0f})" for s in seconds
        )
        print(f"  {source:<9} {listed}")
    return by_source


def run_shares(by_source: dict[str, list[dict]]) -> float:
    """Prints what the runs' time goes to; returns the mean run's compute (training + probes) in seconds."""
    for source, seconds in sorted(by_source.items()):
        total = sum(s["total"] for s in seconds) / len(seconds)
        knn = sum(s["probes"].get("knn", 0.0) for s in seconds) / len(seconds)
        training = sum(s["training"] for s in seconds) / len(seconds)
        print(
            f"  {source:<9} {len(seconds):>2} runs, mean {total:.1f} s per run: training {training:.1f} s "
            f"({training / total:.0%}), knn probe {knn:.1f} s ({knn / total:.0%})"
        )
    compute = [s["training"] + sum(s["probes"].values()) for v in by_source.values() for s in v]
    return sum(compute) / len(compute)


def full_sweep_seconds(sweep_s: float, by_source: dict[str, list[dict]]) -> float:
    """The 25-cell sweep's wall time from a subset's: the sweep's wall scaled by the runs' totals, each data
    source's mean run weighted by its cells (the measured sweep itself when every cell ran)."""
    measured_total = sum(s["total"] for v in by_source.values() for s in v)
    full_total = sum(
        CELLS_BY_SOURCE[source] * sum(s["total"] for s in seconds) / len(seconds)
        for source, seconds in by_source.items()
    )
    return sweep_s * full_total / measured_total


def main() -> None:
    args = arguments()
    root = Path(args.root)
    if root.exists():
        shutil.rmtree(root)
    cores = len(os.sched_getaffinity(0))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": args.wandb}
    if args.compile_cache == "fresh":
        env["LCM_COMPILE_CACHE"] = str(root / "compile-cache")
    seeds = chosen_seeds(args.cells)
    print(describe(1))
    print(
        f"study: {len(seeds)} runs (seed i = design cell i, replicate 0: seeds {seeds}), W&B {args.wandb}, "
        f"root {root}, probe's compile cache: {env.get('LCM_COMPILE_CACHE', 'the user default')}",
        flush=True,
    )
    sweep = [sys.executable, "-m", "pipeline", "-m", "seed=" + ",".join(map(str, seeds)), f"paths.root={root}"]
    if args.quick:
        sweep.append("trainer.epochs=2")
    with LoadSampler() as sampled:
        sweep_s, sweep_cpu, sweep_gib = measured(sweep, cwd=REPO, env=env)
    print(f"sweep: {sweep_s / 60:.1f} min wall, {sweep_cpu / 60:.1f} min CPU; {sampled.text()}", flush=True)
    analysis = [sys.executable, "-m", "analysis", "--root", str(root), "--study", "headline", "--quiet"]
    analysis_s, analysis_cpu, analysis_gib = measured(analysis, cwd=REPO, env=env)

    by_source = run_summaries(root)
    runs = sum(len(v) for v in by_source.values())
    print(
        f"{runs} runs: sweep {sweep_s / 60:.1f} min + analysis {analysis_s:.0f} s = "
        f"{(sweep_s + analysis_s) / 60:.1f} min wall on {cores} cores "
        f"(CPU: sweep {sweep_cpu / 60:.1f} min, analysis {analysis_cpu:.0f} s)"
    )
    mean = run_shares(by_source)
    print(f"mean run compute {mean:.1f} s; per-run overhead {sweep_s * cores / runs / mean - 1:+.1%}")
    print(
        f"peak resident memory: sweep's largest process {sweep_gib:.2f} GiB (target < 1.5), "
        f"analysis of {runs} runs {analysis_gib:.2f} GiB"
    )
    replicates = STUDY_RUNS // CELLS
    study_sweep = full_sweep_seconds(sweep_s, by_source) * replicates
    subset = "" if runs == CELLS else f", its 25 cells extrapolated per data source from these {runs}"
    line = (
        f"750-run study on this machine: sweep ~ {replicates} x the 25-cell sweep{subset} = {study_sweep / 3600:.1f} h"
    )
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
    print(f"{line}; measured at {sampled.text()}")
    print(load())


if __name__ == "__main__":
    main()
