"""On a GPU node: the probe against scikit-learn at study N, runs per hour for 1 vs K concurrent runs per GPU,
and the Slurm settings that follow.

    python bench/bench_gpu.py                  # on a GPU node, about 3-5 minutes
    python bench/bench_gpu.py --device cpu --quick   # smoke test of the script itself, anywhere

1. The KNN probe (default rule) on the device against scikit-learn's
   KNeighborsClassifier(3) fit+predict per time slice on the CPU (all cores),
   on LSTM-like states with a third of the samples at shared fixed points, at
   the study's N (--probe-n, T 150, H 64): seconds and ratio.
2. Runs per hour with K worker processes sharing the device (K = 1, 2, 4, 8):
   K local sweeps at once, each with one worker (`python -m pipeline -m
   'seed=range(a,b)' hydra.launcher.n_jobs=1 trainer.device=<device>`), each
   computing --runs-per-worker default runs of --epochs epochs (its runs
   packed into one job, as a Slurm task computes its pack). Runs per hour =
   K x runs per worker / wall; the peak resident memory of a worker.
3. The recommended Slurm settings: the K with the most runs per hour (a larger
   K only where it gains at least 10%), as overrides of hydra/launcher=slurm
   (tasks_per_node=K tasks share the job's GPU and its pack; docs/slurm.md).

Run it on the node type the study will use (srun --gpus=1 --cpus-per-task=8
--pty python bench/bench_gpu.py); nothing else should run on that GPU.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_knn import fixed_point_states
from machine import describe, load, measured

from pipeline.probes.knn import knn_curve

REPO = Path(__file__).resolve().parent.parent


def probe_vs_sklearn(n: int, t: int, h: int, device: str) -> None:
    states, labels = fixed_point_states(n, t, h, ties=True)
    cores = len(os.sched_getaffinity(0))
    x, y = states.numpy(), labels.numpy()
    tic = time.perf_counter()
    with threadpool_limits(cores):
        theirs = np.array(
            [np.mean(KNeighborsClassifier(n_neighbors=3).fit(x[:, i], y).predict(x[:, i]) == y) for i in range(t)]
        )
    t_sk = time.perf_counter() - tic
    on_device = states.to(device), labels.to(device)
    best = {}
    for dtype in (torch.float32, torch.float64):
        knn_curve(*on_device, gram_dtype=dtype)  # warm-up: kernels, allocator
        for _ in range(2):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            tic = time.perf_counter()
            curve = knn_curve(*on_device, gram_dtype=dtype)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best[dtype] = min(best.get(dtype, math.inf), time.perf_counter() - tic)
    ours = min(best.values())
    print(
        f"1. probe, N {n}, T {t}, H {h}, tie share {curve.tie_share.mean():.2f}: scikit-learn ({cores} CPU cores) "
        f"{t_sk:.2f} s; ours on {device}: float32 {best[torch.float32]:.2f} s, float64 "
        f"{best[torch.float64]:.2f} s -> {t_sk / ours:.1f}x; largest difference from scikit-learn's one order "
        f"{np.abs(curve.accuracy - theirs).max():.4f} (ties: its value depends on the sample order)",
        flush=True,
    )


def wave(k: int, runs_per_worker: int, epochs: int, device: str, source: str, scratch: Path, start: int):
    """K single-worker sweeps at once; their wall time, and each worker's peak RSS."""
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}

    def one(i: int):
        first = start + i * runs_per_worker
        return measured(
            [
                sys.executable,
                "-m",
                "pipeline",
                "-m",
                f"seed=range({first},{first + runs_per_worker})",
                f"data_source={source}",
                f"trainer.epochs={epochs}",
                f"trainer.device={device}",
                "hydra.launcher.n_jobs=1",
                f"paths.root={scratch}",
            ],
            cwd=REPO,
            env=env,
        )

    tic = time.perf_counter()
    with ThreadPoolExecutor(k) as pool:
        results = list(pool.map(one, range(k)))
    return time.perf_counter() - tic, max(peak for _, _, peak in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--probe-n", type=int, default=4000)
    parser.add_argument("--ks", default="1,2,4,8", help="concurrent workers per device to compare")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--runs-per-worker", type=int, default=2)
    parser.add_argument("--source", default="gesture", choices=("gesture", "sentence"))
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible here (use --device cpu for a smoke test)")
    if args.quick:
        args.probe_n, args.epochs, args.runs_per_worker, args.ks = 600, 1, 1, "1,2"
    print(describe())
    probe_vs_sklearn(args.probe_n, 30 if args.quick else 150, 64, args.device)

    ks = [int(k) for k in args.ks.split(",")]
    print(
        f"2. runs per hour, {args.source} default runs of {args.epochs} epochs, {args.runs_per_worker} per worker, "
        f"K workers sharing {args.device}"
    )
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = 0
        for k in ks:
            wall, peak = wave(k, args.runs_per_worker, args.epochs, args.device, args.source, Path(tmp), start)
            start += k * args.runs_per_worker
            rates[k] = (3600 * k * args.runs_per_worker / wall, peak)
            print(
                f"   K {k}: {wall:6.1f} s wall, {rates[k][0]:7.0f} runs/hour "
                f"({rates[k][0] / rates[ks[0]][0]:.2f}x K {ks[0]}), worker peak RSS {peak:.2f} GiB",
                flush=True,
            )
    best = ks[0]
    for k in ks[1:]:
        if rates[k][0] >= 1.1 * rates[best][0]:
            best = k
    mem_gb = max(1, math.ceil(rates[best][1] * 1.5))
    print(
        f"3. recommended: K = {best} runs per GPU ({rates[best][0]:.0f} runs/hour on this node at {args.epochs} "
        "epochs); with hydra/launcher=slurm:\n"
        f"   hydra.launcher.gpus_per_node=1 hydra.launcher.tasks_per_node={best} hydra.launcher.cpus_per_task=1 "
        f"hydra.launcher.mem_gb={mem_gb * best} hydra.sweeper.runs_per_job={4 * best} trainer.device=cuda\n"
        f"   (mem_gb is per job: {mem_gb} GB per task, 1.5x the measured peak; runs_per_job a multiple of K so "
        "that the K tasks of a job share its pack)"
    )
    print(load())


if __name__ == "__main__":
    main()
