"""Digests of a few headline and companion runs, for checking that a refactor changes no record.

Runs a fixed set of small runs (real Hydra, one process each) under one root and prints, per run,
its run id and the SHA-256 of each record table and its summary. Run it before and after a change on the same
machine and compare the two outputs with `diff`: records are bit-identical for the same config
and seed on one machine (the project's determinism rule), so any difference is a change of
behaviour. config.yaml is left out of the comparison only for its absolute paths, which depend on
the root, and summary.json is hashed without its timings (`seconds`, `seconds_total`,
`cpu_seconds_total`) and
`git_commit`, which differ between any two runs; curves and readouts must match byte for byte.

    python tools/record_digests.py --root /tmp/digests > before.txt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

# Small but real runs: every runner and both data sources of the headline study.
RUNS = [
    ["debug=quick", "seed=0", "paths.root={root}"],
    ["debug=quick", "seed=1", "paths.root={root}"],
    ["debug=quick", "seed=3", "paths.root={root}", "probe.knn.mode=leave_one_out"],
    ["study=critical_pathways", "seed=0", "trainer.steps=120", "paths.root={root}"],
    [
        "study=critical_matrix_completion",
        "seed=5",
        "trainer.steps=100",
        "study.size=30",
        "study.n_observed=300",
        "paths.root={root}",
    ],
    [
        "study=multitask",
        "seed=1",
        "trainer.single_epochs=4",
        "trainer.finetune_epochs=2",
        "study.eval_every=2",
        "paths.root={root}",
    ],
    [
        "study=dense_sample",
        "seed=0",
        "trainer.epochs=1",
        "study.data.per_class=60",
        "study.data.train_per_class=40",
        "probe.category_structure.per_class=10",
        "paths.root={root}",
    ],
]
# every table of a run (curves, readouts, a companion study's or probe's tables), and its summary
RECORD_PATTERNS = ("*.parquet", "summary.json")
# what differs between two runs of one config and seed by design
VOLATILE_SUMMARY_KEYS = ("seconds", "seconds_total", "cpu_seconds_total", "git_commit")


def digest(path: Path) -> str:
    data = path.read_bytes()
    if path.name == "summary.json":
        summary = json.loads(data)
        for key in VOLATILE_SUMMARY_KEYS:
            summary.pop(key, None)
        data = json.dumps(summary, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/record_digests", help="output root (emptied first)")
    args = parser.parse_args()
    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    for overrides in RUNS:
        cmd = [sys.executable, "-m", "pipeline", *(o.format(root=root) for o in overrides)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"FAILED: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}", file=sys.stderr)
            return 1
    for run_dir in sorted(p.parent for p in root.rglob("status.json")):
        print(f"{run_dir.relative_to(root)}")
        for path in sorted(p for pattern in RECORD_PATTERNS for p in run_dir.glob(pattern)):
            print(f"  {path.name:26s} {digest(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
