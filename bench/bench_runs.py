"""Cost of a default run at the study's sizes: its FLOP bound, per-run overhead with W&B off and offline, memory.

    python bench/bench_runs.py [--epochs 50] [--runs 6] [--overhead-epochs 2] [--sections 1,2] [--models ...]

1. One default run per data source (pair 0), each in a fresh process, with W&B
   disabled and then offline (WANDB_MODE), side by side. For each: seconds by
   part (data, training, KNN probe), the floating-point work of training
   (LSTM forward + backward, validation pass) and of the probe (N^2 distances
   per time slice), the run's FLOP bound (that work over this machine's
   one-thread float32 matrix-multiply rate; a run uses one thread) and the run
   over its bound; what bounds each part (its achieved rate, and the LSTM's
   time per sequential step); W&B offline's extra wall and CPU seconds; the peak
   resident memory of the run's process.
2. Per-run overhead at study scale: the default local sweep (`python -m
   pipeline -m 'seed=range(0,R)'`: runs packed into jobs, one worker per core)
   of R and of 3R runs of E epochs, W&B disabled and offline. Overhead = wall x
   cores / runs over the runs' mean compute (training + probes), minus 1, as
   the issue defines it, printed for each sweep; at study scale (750 runs) the
   workers' start is spread over hundreds of runs, so the overhead per run is
   taken from the difference of the two sweeps. That cost (config, data,
   records, W&B's init and finish) does not grow with the epochs, so short runs
   measure it cheaply; it is then stated against a default run's compute from
   section 1 (W&B's per-epoch logging, which does grow with the epochs, is in
   section 1's full-length difference).
3. The model zoo (bench/bench_models.py, `--sections 3`): one default run per
   model (`--models`, default lstm,gru,transformer) and data source, side by side.

Everything runs on this machine as is: other processes inflate wall times (the
load average is printed); CPU times move much less.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, load, matmul_gflops, measured

REPO = Path(__file__).resolve().parent.parent


def env(wandb: str, scratch: Path) -> dict:
    out = {**os.environ, "WANDB_MODE": wandb, "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        out[var] = str(scratch / "wandb")
    return out


def run_summaries(root: Path) -> list[tuple[dict, dict]]:
    out = []
    for run_dir in sorted((root / "headline" / "runs").iterdir()):
        if (run_dir / "summary.json").exists():
            out.append(
                (
                    json.loads((run_dir / "summary.json").read_text()),
                    yaml.safe_load((run_dir / "config.yaml").read_text()),
                )
            )
    return out


def lstm_step_flops(summary: dict) -> float:
    f, h = summary["n_features"], summary["hidden_size"]
    return 8 * h * (f + h) + 20 * h  # 4 gates: matrix-vector products + pointwise, per sample and time step


def flops(summary: dict) -> tuple[float, float]:
    """Floating-point operations of the run's training (+ validation) and of its KNN probe."""
    t, e, h = summary["time_slices"], summary["epochs"], summary["hidden_size"]
    step = lstm_step_flops(summary)
    train = e * (summary["n_train"] * t * step * 3 + summary["n_val"] * t * step) + summary["n_test"] * t * step
    # the upper triangle of the Gram matrix (each product serves both of its rows) + both rows' searches
    probe = e * t * summary["n_train"] ** 2 * (h + 4)
    return train, probe


def lstm_step_seconds(summary: dict, threads: int = 1) -> tuple[float, float]:
    """Seconds per sequential time step of one training batch (forward + backward) of the run's LSTM, and its
    FLOP rate: the time a run's training cannot go below on this machine with this batch size."""
    import torch

    torch.set_num_threads(threads)
    batch = summary["batch_size"]
    lstm = torch.nn.LSTM(summary["n_features"], summary["hidden_size"], batch_first=True)
    x = torch.randn(batch, summary["time_slices"], summary["n_features"])
    best = float("inf")
    for _ in range(5):
        tic = time.perf_counter()
        lstm(x)[0].sum().backward()
        best = min(best, time.perf_counter() - tic)
    per_step = best / summary["time_slices"]
    return per_step, batch * lstm_step_flops(summary) * 3 / per_step / 1e9


def single_runs(args, peak1: float) -> dict:
    print(f"\n1. one default run per data source, fresh process, {args.epochs} epochs, W&B disabled vs offline")
    compute = {}
    with tempfile.TemporaryDirectory() as tmp:
        for source in ("gesture", "sentence"):
            result = {}
            for mode in ("disabled", "offline"):
                root = Path(tmp) / f"{source}-{mode}"
                wall, cpu, peak = measured(
                    [
                        sys.executable,
                        "-m",
                        "pipeline",
                        f"data_source={source}",
                        f"trainer.epochs={args.epochs}",
                        f"paths.root={root}",
                    ],
                    cwd=REPO,
                    env=env(mode, Path(tmp)),
                )
                (summary, _), *_ = run_summaries(root)
                result[mode] = (wall, cpu, peak, summary)
            wall, cpu, peak, summary = result["disabled"]
            sec = summary["seconds"]
            knn = sec["probes"]["knn"]
            own = sec["training"] + sum(sec["probes"].values())
            compute[source] = own / summary["epochs"]
            train_flops, probe_flops = flops(summary)
            bound = (train_flops + probe_flops) / (peak1 * 1e9)
            per_step, step_rate = lstm_step_seconds(summary)
            batches = -(-summary["n_train"] // summary["batch_size"])
            print(
                f"   {source:<9} N {summary['n_train']}, T {summary['time_slices']}, H {summary['hidden_size']}: "
                f"process {wall:.1f} s wall, {cpu:.1f} s CPU; run {sec['total']:.1f} s (data {sec['data']:.2f}, "
                f"training {sec['training']:.1f}, knn probe {knn:.1f} = {knn / sec['total']:.0%})"
            )
            print(
                f"      work: training {train_flops / 1e9:.1f} GFLOP, probe {probe_flops / 1e9:.1f} GFLOP; "
                f"FLOP bound {bound:.1f} s -> run compute {own:.1f} s = {own / bound:.1f}x its bound"
            )
            print(
                f"      training at {train_flops / sec['training'] / 1e9:.2f} GFLOP/s: an LSTM time step of one "
                f"batch ({summary['batch_size']} x {summary['hidden_size']}) takes {per_step * 1e6:.0f} us forward + "
                f"backward ({step_rate:.2f} GFLOP/s), and {summary['epochs']} epochs x {batches} batches x "
                f"{summary['time_slices']} steps x that = {summary['epochs'] * batches * summary['time_slices'] * per_step:.1f} s"
            )
            print(
                f"      probe at {probe_flops / knn / 1e9:.2f} GFLOP/s (N^2 / 2 products; identical states are searched "
                f"once; each slice's list search and bookkeeping are comparisons, not FLOPs; the first seconds of a "
                f"process use the torch search, then the compiled one)"
            )
            w_wall, w_cpu, w_peak, w_summary = result["offline"]
            print(
                f"      W&B offline: process {w_wall:.1f} s wall ({w_wall - wall:+.1f} s, {(w_wall - wall) / wall:+.1%}), "
                f"{w_cpu:.1f} s CPU ({w_cpu - cpu:+.1f} s, {(w_cpu - cpu) / cpu:+.1%}); "
                f"run total {w_summary['seconds']['total']:.1f} s"
            )
            print(f"      peak resident memory: {peak:.2f} GiB (W&B offline {w_peak:.2f} GiB)", flush=True)
    print(
        "   what bounds a run: the LSTM's sequential time steps (each a small product that takes a few "
        "microseconds of work and tens of microseconds of per-operation cost; moved by fewer, larger "
        "batches or several runs batched in one model, item 5), and the probe: its products (about a third "
        "of its time) and its per-slice list search and bookkeeping (about two thirds, docs/performance.md), "
        "moved by a GPU or by fewer epochs measured."
    )
    return compute


def sweep(runs: int, epochs: int, mode: str, scratch: Path) -> tuple[float, float, float, list[float]]:
    """One default local sweep: wall, CPU, peak RSS of its largest process, and each run's own compute."""
    root = scratch / f"{mode}-{runs}"
    wall, cpu, peak = measured(
        [
            sys.executable,
            "-m",
            "pipeline",
            "-m",
            f"seed=range(0,{runs})",
            f"trainer.epochs={epochs}",
            f"paths.root={root}",
        ],
        cwd=REPO,
        env=env(mode, scratch),
    )
    own = [s["seconds"]["training"] + sum(s["seconds"]["probes"].values()) for s, _ in run_summaries(root)]
    assert len(own) == runs, (len(own), runs)
    return wall, cpu, peak, own


def overhead(args, cores: int, compute_per_epoch: dict | None) -> None:
    small, large = args.runs, 3 * args.runs
    print(
        f"\n2. per-run overhead at study scale: default local sweeps of {small} and {large} runs x "
        f"{args.overhead_epochs} epochs, {cores} cores; the study-scale overhead per run is the difference "
        f"between them (each worker's start, paid once per sweep, drops out)"
    )
    marginal = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("disabled", "offline"):
            done = {}
            for runs in (small, large):
                wall, cpu, peak, own = sweep(runs, args.overhead_epochs, mode, Path(tmp))
                mean = sum(own) / len(own)
                done[runs] = (wall, sum(own))
                print(
                    f"   W&B {mode:<9} {runs:>3} runs: {wall:6.1f} s wall, {cpu:6.1f} s CPU, mean run compute "
                    f"{mean:.2f} s; overhead {wall * cores / runs / mean - 1:+.0%} = "
                    f"{wall * cores / runs - mean:.2f} s per run; peak RSS {peak:.2f} GiB",
                    flush=True,
                )
            (w1, c1), (w2, c2) = done[small], done[large]
            marginal[mode] = ((w2 - w1) * cores - (c2 - c1)) / (large - small)
            print(f"   W&B {mode:<9} per additional run: {marginal[mode]:.2f} s beyond its own compute")
    print(f"   W&B offline adds {marginal['offline'] - marginal['disabled']:+.2f} s per run in a packed sweep")
    if compute_per_epoch:
        for source, per_epoch in compute_per_epoch.items():
            default = per_epoch * args.default_epochs
            print(
                f"   against a default {source} run ({args.default_epochs} epochs, compute {default:.0f} s from "
                f"section 1): overhead {marginal['disabled'] / default:.1%} with W&B off, "
                f"{marginal['offline'] / default:.1%} with W&B offline"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=50, help="epochs of section 1's runs (default: a default run)")
    parser.add_argument("--runs", type=int, default=6, help="runs of section 2's smaller sweep (the larger: 3x)")
    parser.add_argument("--overhead-epochs", type=int, default=2, help="epochs of section 2's runs")
    parser.add_argument("--default-epochs", type=int, default=50, help="a default run's epochs, for section 2")
    parser.add_argument("--sections", default="1,2", help="which parts to run, e.g. 2 (3: the model zoo)")
    parser.add_argument("--models", default="lstm,gru,transformer", help="section 3's models")
    parser.add_argument("--sources", default="gesture,sentence", help="section 3's data sources")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(describe(1))
    peak1 = matmul_gflops(threads=1)
    print(f"matrix multiply (1024^2 float32, 1 thread): {peak1:.1f} GFLOP/s")
    sections = {int(x) for x in args.sections.split(",")}
    compute = single_runs(args, peak1) if 1 in sections else None
    if 2 in sections:
        overhead(args, cores, compute)
    if 3 in sections:
        from bench_models import models_section

        models_section(args.models.split(","), args.sources.split(","), args.epochs)
    print(load())


if __name__ == "__main__":
    main()
