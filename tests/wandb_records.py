"""Reading W&B's offline runs back without its servers, for the W&B tests: `wandb leet inspect --json`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WANDB_CLI = [sys.executable, "-c", "import sys; from wandb.cli.cli import cli; sys.exit(cli())"]


def read_offline(wandb_file: Path) -> list[dict]:
    """Every record of an offline run, read with `wandb leet inspect --json` (no network)."""
    out = subprocess.run(
        [*WANDB_CLI, "leet", "inspect", "--json", str(wandb_file)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def history(records: list[dict]) -> list[dict]:
    return [r["history"]["item"] for r in records if r["type"] == "history"]


def run_record(records: list[dict]) -> dict:
    return next(r["run"] for r in records if r["type"] == "run")


def summary(records: list[dict]) -> dict:
    out: dict = {}
    for r in records:
        if r["type"] == "summary":
            out.update(r["summary"].get("update", {}))
    return out


def final_results(records: list[dict]) -> dict:
    """The summary update the tracker sends at the end of a completed run (its results)."""
    return next(
        r["summary"]["update"]
        for r in records
        if r["type"] == "summary" and "run/complete" in r["summary"].get("update", {})
    )


def exit_code(records: list[dict]) -> int | None:
    return next((r["exit"].get("exit_code", 0) for r in records if r["type"] == "exit"), None)


def config_value(run: dict, key: str):
    item = run["config"]["update"][key]
    return json.loads(item["value_json"]) if isinstance(item, dict) and "value_json" in item else item


def wandb_files(run_dir: Path) -> dict[str, Path]:
    """W&B id -> its offline .wandb file, for every attempt logged in a run folder."""
    return {p.stem[len("run-") :]: p for p in run_dir.glob("wandb/offline-run-*/run-*.wandb")}
