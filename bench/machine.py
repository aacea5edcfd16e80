"""What a benchmark ran on: printed at the top of every benchmark's output."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(torch_threads: int | None = None) -> str:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"machine: {cpu_model()}, {cores} cores available, {platform.system()} {platform.release()}; "
        f"python {platform.python_version()}, torch {torch.__version__} "
        f"({torch_threads or torch.get_num_threads()} threads); GPU: {gpu}; {load()}"
    )


def load() -> str:
    """The load average: other processes on a shared machine inflate every time printed."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def matmul_gflops(threads: int, n: int = 1024, dtype=None, device: str = "cpu", repeat: int = 5) -> float:
    """The machine's measured dense matrix-multiply rate (the hardware reference)."""
    import time

    import torch

    dtype = dtype or torch.float32
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = float("inf")
        for _ in range(repeat):
            tic = time.perf_counter()
            torch.mm(a, b)
            if device != "cpu":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - tic)
        return 2 * n**3 / best / 1e9
    finally:
        torch.set_num_threads(previous)


# A fresh intermediate process per command, so that its children's peak RSS (a
# running maximum per process) and CPU time are that command's alone.
_MEASURE = (
    "import json, resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(json.dumps([u.ru_maxrss, u.ru_utime + u.ru_stime]))"
)


def measured(command: list[str], cwd=None, env=None) -> tuple[float, float, float]:
    """Run ``command``; its wall seconds, CPU seconds (it and its children) and the peak RSS in GiB of its
    largest process."""
    import json
    import subprocess
    import sys
    import time

    tic = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    peak_kib, cpu = json.loads(out.stdout.strip().splitlines()[-1])
    return time.perf_counter() - tic, cpu, peak_kib / 2**20
