"""Cost of the model zoo at the default sizes: one default run per model, side by side, from a cold process.

    python bench/bench_models.py [--models lstm,gru,transformer] [--sources gesture,sentence] [--epochs 50]
    python bench/bench_runs.py --sections 3 ...     # the same, as section 3 of the runs benchmark
    python bench/bench_models.py --study-root ROOT   # the costs of a finished sweep, per model and source

For each data source and model: one run of the default configuration (`model=<name>`, everything else the
study's defaults, pair 0, W&B disabled), each in a fresh process as a user starts it. Printed per run: the
process's wall and CPU seconds and peak memory, the run's own seconds by part (training, KNN probe) and
per epoch, the state size H the probe reads, the test accuracy; and each model's cost against the LSTM's
(training per epoch, probe per epoch, CPU). The probe's work is N^2 T H per epoch, so a model whose states
are as wide as the LSTM's costs the probe the same; training differs by the model's own work per step.

The LSTM default runs through the same module and code as before the zoo existed (records byte-identical,
tools/record_digests.py); the one thing the zoo adds to its run is the protocol check at run start (one
forward pass of two training sequences, no gradients), timed here on its own.

`--study-root ROOT` measures nothing new: it reads every finished run of ``ROOT/architectures/runs`` (a
sweep of ``study=architectures``) and prints, per data source and model, the runs' median CPU seconds, and
training and probe seconds per epoch, their mean test accuracy, and each model's medians against the
LSTM's: the same comparison over every class pair instead of pair 0 alone.

Everything runs on this machine as is: other processes inflate wall times (the load average is printed);
CPU seconds move much less. `--epochs` below 50 measures the per-epoch figures at less cost (the run's
fixed costs then weigh more in its totals).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, load, measured

REPO = Path(__file__).resolve().parent.parent


def one_run(model: str, source: str, epochs: int, scratch: Path) -> dict:
    root = scratch / f"{source}-{model}"
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "pipeline",
        f"model={model}",
        f"data_source={source}",
        f"trainer.epochs={epochs}",
        f"paths.root={root}",
    ]
    wall, cpu, peak = measured(command, cwd=REPO, env=env)
    (summary_file,) = root.glob("headline/runs/*/summary.json")
    summary = json.loads(summary_file.read_text())
    return {"wall": wall, "cpu": cpu, "peak": peak, "summary": summary}


def protocol_check_seconds(repeat: int = 20) -> float:
    """The protocol check of a default gesture LSTM (one no-grad forward of two sequences of 150 slices)."""
    import torch
    from omegaconf import OmegaConf

    from pipeline.model import build_model, check_protocol

    torch.set_num_threads(1)
    model = build_model(OmegaConf.load(REPO / "conf" / "model" / "lstm.yaml"), 150, 6)
    x = torch.randn(2, 150, 6)
    best = float("inf")
    for _ in range(repeat):
        tic = time.perf_counter()
        check_protocol(model, x, 2, "lstm")
        best = min(best, time.perf_counter() - tic)
    return best


def report(model: str, run: dict) -> tuple[float, float]:
    s = run["summary"]
    sec, epochs = s["seconds"], s["epochs"]
    knn = sum(sec["probes"].values())
    print(
        f"   {model:<12} H {s['hidden_size']:>3}: process {run['wall']:7.1f} s wall, {run['cpu']:7.1f} s CPU, "
        f"{run['peak']:.2f} GiB; run {sec['total']:7.1f} s = training {sec['training']:6.1f} "
        f"({sec['training'] / epochs:5.2f}/epoch) + probe {knn:6.1f} ({knn / epochs:5.2f}/epoch); "
        f"test accuracy {s['test_accuracy']:.3f}",
        flush=True,
    )
    return sec["training"] / epochs, knn / epochs


def models_section(models: list[str], sources: list[str], epochs: int) -> None:
    print(f"\n3. one default run per model and data source (pair 0, {epochs} epochs), fresh process, W&B disabled")
    print(f"   the LSTM's protocol check at run start: {protocol_check_seconds() * 1e3:.2f} ms (best of 20)")
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources:
            print(f"   {source}:")
            costs = {}
            for model in models:
                run = one_run(model, source, epochs, Path(tmp))
                costs[model] = (*report(model, run), run["cpu"])
            base = costs.get("lstm")
            if base:
                for model, (train, probe, cpu) in costs.items():
                    if model != "lstm":
                        print(
                            f"      {model} / lstm: training per epoch x{train / base[0]:.2f}, probe per epoch "
                            f"x{probe / base[1]:.2f}, process CPU x{cpu / base[2]:.2f}"
                        )
            print(f"   {load()}", flush=True)


def study_section(root: Path, study: str = "architectures") -> None:
    """Per data source and model, the medians of a finished sweep's run summaries."""
    import pandas as pd

    rows = []
    for path in sorted((root / study / "runs").glob("*/summary.json")):
        s = json.loads(path.read_text())
        sec, epochs = s["seconds"], s["epochs"]
        model = s["cell"].split("model=")[-1]
        rows.append(
            {
                "source": s["data_source"],
                "model": model,
                "cpu": s["cpu_seconds_total"],
                "training": sec["training"] / epochs,
                "probe": sum(sec["probes"].values()) / epochs,
                "accuracy": s["test_accuracy"],
            }
        )
    table = pd.DataFrame(rows)
    print(f"\n3b. the finished runs of {root / study}: medians per data source and model")
    for source, runs in table.groupby("source", sort=True):
        medians = runs.groupby("model").agg(
            runs=("cpu", "size"),
            cpu=("cpu", "median"),
            training=("training", "median"),
            probe=("probe", "median"),
            accuracy=("accuracy", "mean"),
        )
        base = medians.loc["lstm"] if "lstm" in medians.index else None
        print(f"   {source}:")
        for model, m in medians.iterrows():
            versus = (
                ""
                if base is None or model == "lstm"
                else (f"; / lstm: CPU x{m.cpu / base.cpu:.2f}, training per epoch x{m.training / base.training:.2f}")
            )
            print(
                f"   {model:<12} {int(m.runs):3d} runs: CPU {m.cpu:6.1f} s, training {m.training:5.2f} s/epoch, "
                f"probe {m.probe:5.2f} s/epoch, mean test accuracy {m.accuracy:.3f}{versus}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="lstm,gru,transformer", help="comma-separated model names")
    parser.add_argument("--sources", default="gesture,sentence", help="comma-separated data sources")
    parser.add_argument("--epochs", type=int, default=50, help="epochs of each run (default: a default run's)")
    parser.add_argument("--study-root", type=Path, help="summarise the finished runs of this outputs root instead")
    args = parser.parse_args()
    print(describe(1))
    if args.study_root:
        study_section(args.study_root)
        return
    models_section(args.models.split(","), args.sources.split(","), args.epochs)


if __name__ == "__main__":
    main()
