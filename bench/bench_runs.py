"""Cost of runs: the probe's share, the achieved FLOP rate, per-run overhead, peak memory.

    python bench/bench_runs.py [--runs 8] [--epochs 50]

1. One default run per data source, in a fresh process each: the probe's cost as
   a fraction of the run, and the run's achieved FLOP rate (a count of the
   LSTM's and the probe's floating-point work) against this machine's measured
   single-thread matrix-multiply rate (a run uses one thread).
2. Runs per hour for the same sweep three ways, side by side: one Python process
   per run (`python -m pipeline seed=i`, two at a time: the plain way, paying
   interpreter start, imports and data loading every run); the local launcher
   with one Hydra job per run (`hydra.sweeper.runs_per_job=1`: workers reused,
   but Hydra composes every job's config); and the project's default local
   execution (`python -m pipeline -m seed=...`: one worker per core, runs packed
   several to a job, see pipeline/packs.py). Per-run overhead = wall time x cores / runs over
   the mean of the runs' own compute time (training + probes), minus 1.
3. Peak resident memory of one run's process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, matmul_gflops

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def pipeline(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=REPO, env=ENV, capture_output=True, text=True, check=True
    )


def run_summaries(root: Path) -> list[tuple[dict, dict]]:
    out = []
    for run_dir in sorted((root / "headline" / "runs").iterdir()):
        out.append(
            (json.loads((run_dir / "summary.json").read_text()), yaml.safe_load((run_dir / "config.yaml").read_text()))
        )
    return out


def lstm_flops(summary: dict) -> float:
    """Floating-point operations of the run's training, evaluation and probe work (approximate)."""
    f, h, t, e = summary["n_features"], summary["hidden_size"], summary["time_slices"], summary["epochs"]
    per_step = 8 * h * (f + h) + 20 * h  # 4 gates: matrix-vector products + pointwise
    train = summary["n_train"] * t * per_step * 3  # forward + backward ~ 3x forward
    evaluate = summary["n_val"] * t * per_step  # validation pass every epoch
    probe = t * summary["n_train"] ** 2 * (2 * h + 4)  # Gram matrix + distances per time slice
    return e * (train + evaluate + probe) + summary["n_test"] * t * per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=24, help="runs per mode in the runs-per-hour comparison")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--sections", default="1,2", help="which parts to run, e.g. 2")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(describe(1))
    peak1 = matmul_gflops(threads=1)
    print(f"matrix multiply (1024^2 float32, 1 thread): {peak1:.1f} GFLOP/s")

    sections = {int(x) for x in args.sections.split(",")}
    if 1 in sections:
        single_runs(args, peak1)
    if 2 in sections:
        runs_per_hour(args, cores)


def single_runs(args, peak1: float) -> None:
    print("\n1. one default run per data source (fresh process)")
    with tempfile.TemporaryDirectory() as tmp:
        for source in ("gesture", "sentence"):
            pipeline(f"data_source={source}", f"trainer.epochs={args.epochs}", f"paths.root={tmp}")
            peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        # the companion probes' cost on the same gesture run (issue 6): both on, every epoch
        probes_root = Path(tmp) / "with-probes"
        pipeline(
            "data_source=gesture",
            f"trainer.epochs={args.epochs}",
            f"paths.root={probes_root}",
            "probe.gradient_spectrum.enabled=true",
            "probe.gradient_spectrum.schedule=every_epoch",
            "probe.category_structure.enabled=true",
        )
        for summary, _ in run_summaries(probes_root):
            sec = summary["seconds"]
            shares = ", ".join(f"{name} {t:.2f} s = {t / sec['total']:.0%}" for name, t in sec["probes"].items())
            print(f"   gesture run with every probe on, every epoch: {sec['total']:.2f} s ({shares} of the run)")
        for summary, _ in run_summaries(Path(tmp)):
            sec = summary["seconds"]
            compute = sec["training"] + sum(sec["probes"].values())
            flops = lstm_flops(summary)
            print(
                f"   {summary['data_source']:<9} run {sec['total']:.2f} s (data {sec['data']:.2f}, training "
                f"{sec['training']:.2f}, knn probe {sec['probes']['knn']:.2f} = "
                f"{sec['probes']['knn'] / sec['total']:.0%} of the run); {flops / 1e9:.2f} GFLOP -> "
                f"{flops / compute / 1e9:.2f} GFLOP/s = {flops / compute / 1e9 / peak1:.1%} of the matmul rate"
            )
        print(f"   peak resident memory of a run's process: {peak_rss:.0f} MiB")


def runs_per_hour(args, cores: int) -> None:
    print(f"\n2. runs per hour, {args.runs} runs of seeds 0..{args.runs - 1}, {cores} cores")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "per-process"
        tic = time.perf_counter()
        with ThreadPoolExecutor(cores) as pool:
            list(
                pool.map(
                    lambda i: pipeline(f"seed={i}", f"trainer.epochs={args.epochs}", f"paths.root={root}"),
                    range(args.runs),
                )
            )
        results["one process per run"] = (time.perf_counter() - tic, root)
        for mode, extra in (
            ("local, one job per run", ["hydra.sweeper.runs_per_job=1"]),
            ("default local (packed)", []),
        ):
            root = Path(tmp) / "".join(c if c.isalnum() else "-" for c in mode)  # no commas: Hydra would sweep
            tic = time.perf_counter()
            pipeline("-m", f"seed=range(0,{args.runs})", f"trainer.epochs={args.epochs}", f"paths.root={root}", *extra)
            results[mode] = (time.perf_counter() - tic, root)
        for mode, (wall, root) in results.items():
            # a run's own work: its training and probes; everything else (interpreter
            # start, imports, data loading, config, writing) is overhead
            compute = [s["seconds"]["training"] + sum(s["seconds"]["probes"].values()) for s, _ in run_summaries(root)]
            mean = sum(compute) / len(compute)
            overhead = wall * cores / len(compute) / mean - 1
            print(
                f"   {mode:<26} {wall:7.1f} s wall, {3600 * len(compute) / wall:6.0f} runs/hour, "
                f"mean run compute {mean:.2f} s, per-run overhead {overhead:+.0%}"
            )


if __name__ == "__main__":
    main()
