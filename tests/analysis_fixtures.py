"""Synthetic run folders in the pipeline's record format, for the analysis tests and benchmark.

Writes ``<root>/<study>/runs/<run_id>/`` exactly as ``docs/architecture.md``
describes the run record (``config.yaml`` with its design block,
``status.json``, ``curves.parquet``, ``readouts.parquet``, ``summary.json``,
``run.log``), with plain pandas/pyarrow/yaml: no torch, no pipeline import.
The learning-curve maps are smooth functions of epoch and time slice with
run-to-run and pair-to-pair differences and noise, rounded to multiples of
1/n_train like real KNN accuracies (so the smoother meets ties).

``make_study`` can add broken folders that the analysis must skip and list:
a truncated ``curves.parquet``, a run still running, a failed run, a folder
without ``status.json``, and a done run whose map misses cells.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

CLASS_NAMES = {
    "gesture": ("no gesture", "body", "head", "hand", "body-head", "head-hand"),
    "sentence": ("sadness", "joy", "love", "anger", "fear", "surprise"),
}
BROKEN_KINDS = ("truncated_curves", "running", "failed", "no_status", "incomplete_map")


def class_pair(source: str, pair: int) -> tuple[str, str]:
    names = CLASS_NAMES[source]
    a, b = list(itertools.combinations(range(len(names)), 2))[pair]
    return names[a], names[b]


def synthetic_map(
    rng: np.random.Generator, source: str, pair: int, labels: str, epochs: int, slices: int, n_train: int = 200
) -> np.ndarray:
    """An epochs x time slices map of KNN accuracies (multiples of 1/n_train)."""
    e = np.arange(1, epochs + 1)[:, None] / epochs
    t = np.arange(1, slices + 1)[None, :] / slices
    learn = 1.0 - np.exp(-3.0 * e)
    base = 0.78 if source == "gesture" else 0.5
    pair_effect = 0.03 * (((pair * 7) % 5) - 2)
    run_effect = rng.normal(0.0, 0.02)
    if labels == "real":
        peak = 0.2 + 0.6 * learn + rng.normal(0.0, 0.03)
        height = 0.78 + 0.15 * learn + pair_effect + run_effect
    else:
        peak = 0.5 + 0.3 * learn
        height = 0.62 + 0.05 * learn + run_effect
    curve = base + (height - base) * np.exp(-(((t - peak) / 0.35) ** 2))
    curve = curve + rng.normal(0.0, 0.015, size=(epochs, slices))
    return np.clip(np.round(curve * n_train) / n_train, 0.0, 1.0)


def _run_id(study: str, source: str, pair: int, replicate: int, labels: str, epochs: int) -> str:
    semantic = {
        "study": study,
        "design": {"data_source": source, "pair": pair, "replicate": replicate, "labels": labels},
        "trainer": {"epochs": epochs},
    }
    digest = hashlib.sha256(json.dumps(semantic, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:10]
    return f"{source}-p{pair:02d}-r{replicate:03d}-{digest}"


def _curves_table(lc_map: np.ndarray, rng: np.random.Generator, extra_rows: bool) -> pa.Table:
    epochs, slices = lc_map.shape
    ep = np.repeat(np.arange(1, epochs + 1, dtype=np.int32), slices)
    ts = np.tile(np.arange(1, slices + 1, dtype=np.int32), epochs)
    parts = [("knn", "train", lc_map.reshape(-1))]
    if extra_rows:  # rows the analysis must ignore: the held-out readout of the same probe
        parts.append(("knn", "test", np.clip(lc_map.reshape(-1) - 0.05 + rng.normal(0, 0.01, ep.size), 0, 1)))
    n = ep.size
    return pa.table(
        {
            "probe": pa.array(np.concatenate([np.full(n, p, dtype=object) for p, _, _ in parts]), pa.string()),
            "split": pa.array(np.concatenate([np.full(n, s, dtype=object) for _, s, _ in parts]), pa.string()),
            "epoch": pa.array(np.tile(ep, len(parts)), pa.int32()),
            "time_slice": pa.array(np.tile(ts, len(parts)), pa.int32()),
            "value": pa.array(np.concatenate([v for _, _, v in parts]).astype(np.float64), pa.float64()),
        }
    )


def write_run(
    root,
    *,
    study: str,
    source: str,
    pair: int,
    replicate: int,
    labels: str = "real",
    epochs: int = 6,
    slices: int = 12,
    rng: np.random.Generator | None = None,
    lc_map: np.ndarray | None = None,
    state: str = "done",
    extra_rows: bool = True,
) -> tuple[str, Path, np.ndarray]:
    """Write one run folder; returns (run_id, folder, learning-curve map)."""
    rng = rng if rng is not None else np.random.default_rng([pair, replicate, len(source)])
    if lc_map is None:
        lc_map = synthetic_map(rng, source, pair, labels, epochs, slices)
    epochs, slices = lc_map.shape
    run_id = _run_id(study, source, pair, replicate, labels, epochs)
    folder = Path(root) / study / "runs" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    class_a, class_b = class_pair(source, pair)
    config = {
        "study": {"name": study},
        "design": {
            "data_source": source,
            "pair": pair,
            "replicate": replicate,
            "participant": replicate * 30 + pair,
            "class_names": [class_a, class_b],
            "labels": labels,
        },
        "trainer": {"epochs": epochs, "lr": 0.001, "batch_size": 128},
        "probe": {"knn": {"k": 3}},
        "paths": {"root": str(root)},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    pq.write_table(_curves_table(lc_map, rng, extra_rows), folder / "curves.parquet")
    readouts = pa.table(
        {
            "epoch": pa.array(np.repeat(np.arange(1, epochs + 1, dtype=np.int32), 4), pa.int32()),
            "split": pa.array(["train", "train", "val", "val"] * epochs, pa.string()),
            "metric": pa.array(["loss", "accuracy"] * 2 * epochs, pa.string()),
            "value": pa.array(rng.random(4 * epochs), pa.float64()),
        }
    )
    pq.write_table(readouts, folder / "readouts.parquet")
    summary = {
        "run_id": run_id,
        "study": study,
        "data_source": source,
        "pair": pair,
        "class_names": [class_a, class_b],
        "replicate": replicate,
        "labels": labels,
        "test_accuracy": float(lc_map[-1].max()),
        "n_train": 200,
        "n_val": 50,
        "n_test": 62,
        "time_slices": slices,
        "epochs": epochs,
        "durations": {"total_s": 1.0},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "run.log").write_text("synthetic run written by tests/analysis_fixtures.py\n")
    if state is not None:
        write_status(folder, state, run_id)
    return run_id, folder, lc_map


def write_status(folder, state: str, run_id: str | None = None) -> None:
    folder = Path(folder)
    status = {
        "state": state,
        "run_id": run_id or folder.name,
        "host": "fixture",
        "pid": 0,
        "started": "2025-01-01T00:00:00",
        "ended": None if state == "running" else "2025-01-01T00:01:00",
        "error": "RuntimeError: boom" if state == "failed" else None,
        "traceback": "Traceback ...\nRuntimeError: boom" if state == "failed" else None,
    }
    (folder / "status.json").write_text(json.dumps(status))


def break_run(folder, how: str) -> None:
    """Damage a run folder the way real ones get damaged."""
    folder = Path(folder)
    if how == "truncated_curves":
        data = (folder / "curves.parquet").read_bytes()
        (folder / "curves.parquet").write_bytes(data[: len(data) // 2])
    elif how in ("running", "failed"):
        write_status(folder, how)
    elif how == "no_status":
        (folder / "status.json").unlink(missing_ok=True)
    elif how == "incomplete_map":
        table = pq.read_table(folder / "curves.parquet")
        pq.write_table(table.slice(0, table.num_rows // 2 - 3), folder / "curves.parquet")
    else:
        raise ValueError(f"unknown breakage {how!r} (one of {BROKEN_KINDS})")


def make_study(
    root,
    study: str = "fixture",
    sources=("gesture", "sentence"),
    pairs=(0, 1, 2),
    replicates: int = 3,
    epochs: int = 6,
    slices=None,
    shuffled_replicates: int = 2,
    broken: bool = True,
    seed: int = 0,
    extra_rows: bool = True,
    progress: bool = False,
) -> dict:
    """A small study: sources x pairs x replicates real runs, optional shuffled-label runs and broken folders.

    Returns ``{"root", "study", "runs": {run_id: info}, "broken": {run_id: kind}}``; ``info`` holds
    ``source, labels, pair, replicate, map``.
    """
    slices = slices or {"gesture": 12, "sentence": 9}
    if isinstance(slices, int):
        slices = {s: slices for s in sources}
    rng = np.random.default_rng(seed)
    runs: dict[str, dict] = {}
    plan = [(s, p, r, "real") for s in sources for p in pairs for r in range(1, replicates + 1)]
    plan += [(s, p, r, "shuffled") for s in sources for p in pairs for r in range(1, shuffled_replicates + 1)]
    for i, (source, pair, replicate, labels) in enumerate(plan, 1):
        run_id, folder, lc_map = write_run(
            root,
            study=study,
            source=source,
            pair=pair,
            replicate=replicate,
            labels=labels,
            epochs=epochs,
            slices=slices[source],
            rng=rng,
            extra_rows=extra_rows,
        )
        runs[run_id] = {
            "source": source,
            "labels": labels,
            "pair": pair,
            "replicate": replicate,
            "map": lc_map,
            "folder": folder,
        }
        if progress and i % 100 == 0:
            print(f"  wrote {i}/{len(plan)} runs", flush=True)
    broken_runs: dict[str, str] = {}
    if broken:
        for j, how in enumerate(BROKEN_KINDS):
            source = sources[j % len(sources)]
            run_id, folder, _ = write_run(
                root,
                study=study,
                source=source,
                pair=pairs[0],
                replicate=900 + j,
                epochs=epochs,
                slices=slices[source],
                rng=rng,
            )
            break_run(folder, how)
            broken_runs[run_id] = how
    return {"root": Path(root), "study": study, "runs": runs, "broken": broken_runs}
