"""``python -m pipeline.status``: how far a study is, per design cell and condition (done, failed,
running, missing), from the run folders and sweep plans under an outputs root; imports neither torch
nor Hydra, so it answers at once."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import yaml

from .runfolder import (
    MAX_TEXT_BYTES,
    NotReadable,
    StatusUnreadable,
    is_link,
    read_status,
    read_text_entry,
    run_state,
)
from .schema import (
    ABSENT,
    CONFIG,
    DAMAGED,
    DONE,
    FAILED,
    MISSING,
    RUNNING,
    iter_run_folders,
    plans_folder,
    runs_folder,
    study_folder,
    study_folders,
)

# The report's columns: a run's state (pipeline/schema.py), with the states a relaunch computes again
# (absent, interrupted, damaged) counted together as missing.
STATES = (DONE, FAILED, RUNNING, "missing")

#: where `lcm debug=quick` (conf/debug/quick.yaml) writes, under an outputs root
DEBUG_FOLDER = "debug"


def column_and_detail(run_dir: Path) -> tuple[str, str | None]:
    """(report column, detail) of one run folder. A done run whose records fail their check, or whose
    status.json cannot be read, counts as missing with the reason: a relaunch redoes it. A symbolic link in
    place of a run folder is not followed."""
    if is_link(run_dir):
        return "missing", "the run folder is a symbolic link: not read (remove it; a relaunch computes the run)"
    state, why = run_state(run_dir)
    if state in (DONE, RUNNING, FAILED):
        return state, why
    if state == ABSENT:
        return "missing", None
    assert state in MISSING, state
    return "missing", f"{'damaged: ' if state == DAMAGED else ''}{why}; a relaunch redoes it"


def _cell_of(run_dir: Path, planned_cell: str | None) -> str:
    """The run's design cell: from the plan that launched it, else as the run recorded it (status.json,
    else the design block of config.yaml); "?" for a folder that says neither."""
    if planned_cell:
        return planned_cell
    try:
        status = read_status(run_dir) or {}
    except StatusUnreadable:
        status = {}
    if status.get("cell"):
        return str(status["cell"])
    return _recorded_cell(run_dir) or "?"


def _recorded_cell(run_dir: Path) -> str | None:
    """``design.cell`` of config.yaml (records whose status.json predates its cell entry)."""
    try:
        config = yaml.safe_load(read_text_entry(run_dir, CONFIG))
    except (OSError, NotReadable, yaml.YAMLError):
        return None
    design = config.get("design") if isinstance(config, dict) else None
    cell = design.get("cell") if isinstance(design, dict) else None
    return str(cell) if cell else None


def _class_names(run_dir: Path) -> list[str] | None:
    """The class names of a run's cell (design.class_names in its config.yaml), None where unknown."""
    try:
        design = (yaml.safe_load(read_text_entry(run_dir, CONFIG)) or {}).get("design") or {}
    except (OSError, NotReadable, yaml.YAMLError, AttributeError):
        return None
    names = design.get("class_names")
    return [str(n) for n in names] if isinstance(names, list) and names else None


def debug_folder_hint(root: Path, study: str | None = None) -> str | None:
    """For a root without the studies asked for whose debug folder holds some (or ``study``): a sentence naming it."""
    debug = Path(root) / DEBUG_FOLDER
    studies = [s for s in list_studies(debug) if study is None or s == study]
    if not studies:
        return None
    runs = sum(len(list(iter_run_folders(study_folder(debug, s)))) for s in studies)
    return (
        f"{debug} holds {runs} run folder(s) of `lcm debug=quick` (studies: {', '.join(studies)}), kept apart "
        f"from the studies; to see them: --root {debug}"
    )


def natural_key(text: str) -> list:
    """``gesture/pair 10`` after ``gesture/pair 2``: digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def _plan_condition(row: dict) -> str:
    if "condition" in row and row["condition"] is not None:
        return row["condition"]
    # plans written before the condition column: labels are the one factor they can tell
    return "labels=shuffled" if "labels=shuffled" in (row.get("overrides") or "").split() else ""


def _labels_condition(run_dir: Path) -> str:
    """An unplanned run's condition: its labels, from the top-level ``labels:`` line of config.yaml."""
    try:
        match = re.search(r"^labels: *(\S+) *$", read_text_entry(run_dir, CONFIG), re.MULTILINE)
    except (OSError, NotReadable):
        return ""
    return f"labels={match.group(1)}" if match and match.group(1) != "real" else ""


def list_studies(root: Path) -> list[str]:
    """Study folders under an outputs root (those with runs/ or plans/), never a dot-folder such as .hydra."""
    return sorted((p.name for p in study_folders(root, with_plans=True)), key=natural_key)


def collect(root: Path, study: str | None = None) -> dict:
    root = Path(root)
    studies = [study] if study else list_studies(root)
    report = {}
    for name in studies:
        study_dir = study_folder(root, name)
        planned, notes = _read_plans(plans_folder(study_dir))
        runs_dir = runs_folder(study_dir)
        present = {p.name for p in iter_run_folders(study_dir, links=True)}
        cells: dict[str, Counter] = defaultdict(Counter)
        class_names: dict[str, list[str]] = {}
        conditions: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        problems = []
        for rid in sorted(present | set(planned), key=natural_key):
            run_dir = runs_dir / rid
            state, detail = column_and_detail(run_dir) if rid in present else ("missing", None)
            cell, condition = planned.get(rid, (None, None))
            cell = _cell_of(run_dir, cell)
            if condition is None:
                condition = _labels_condition(run_dir)
            cells[cell][state] += 1
            if cell not in class_names and rid in present:
                names = _class_names(run_dir)  # one config.yaml per cell: the first run folder that has one
                if names:
                    class_names[cell] = names
            conditions[condition][cell][state] += 1
            if state == FAILED or detail:
                problems.append(
                    {
                        "run_id": rid,
                        "cell": cell,
                        "condition": condition,
                        "state": state,
                        "detail": detail,
                        "folder": str(run_dir),
                    }
                )
        report[name] = {
            "cells": {c: dict(cells[c]) for c in sorted(cells, key=natural_key)},
            "conditions": {
                cond: {c: dict(by_cell[c]) for c in sorted(by_cell, key=natural_key)}
                for cond, by_cell in sorted(conditions.items(), key=lambda kv: natural_key(kv[0]))
            },
            "problems": problems,
            "notes": notes,
            "class_names": {c: class_names[c] for c in sorted(class_names, key=natural_key)},
        }
    return report


def cell_label(cell: str, class_names: dict[str, list[str]]) -> str:
    """``gesture/pair 0 PEN/ABD``: the cell with its class names, where a run folder of it says them."""
    names = class_names.get(cell)
    return f"{cell} {'/'.join(names)}" if names else cell


def _read_plans(plans_dir: Path) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """run id -> (cell, condition) from a study's sweep plans; files that are not plans (a link, a FIFO,
    damaged text) are skipped and named in the notes."""
    planned: dict[str, tuple[str, str]] = {}
    notes = []
    names = sorted(e.name for e in os.scandir(plans_dir) if e.name.endswith(".csv")) if plans_dir.is_dir() else []
    for name in names:
        try:
            text = read_text_entry(plans_dir, name, MAX_TEXT_BYTES)
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
            planned.update({row["run_id"]: (row["cell"], _plan_condition(row)) for row in rows})
        except (OSError, NotReadable, KeyError, csv.Error) as exc:
            notes.append(f"plan {plans_dir / name} skipped: {exc}")
    return planned, notes


def format_report(report: dict) -> str:
    lines = []
    for study, info in report.items():
        names = info.get("class_names", {})
        for condition, cells in info.get("conditions", {"": info["cells"]}).items():
            totals: Counter[str] = Counter()
            for cnt in cells.values():
                totals.update(cnt)
            label = f"study {study}" + (f" [{condition}]" if condition else "")
            lines.append(f"{label}: " + ", ".join(f"{totals.get(s, 0)} {s}" for s in STATES))
            labels = {cell: cell_label(cell, names) for cell in cells}
            width = max([len(c) for c in labels.values()] + [4])
            lines.append(f"  {'cell'.ljust(width)}  " + "  ".join(f"{s:>7}" for s in STATES))
            for cell, cnt in cells.items():
                lines.append(f"  {labels[cell].ljust(width)}  " + "  ".join(f"{cnt.get(s, 0):>7}" for s in STATES))
        for p in info["problems"]:
            where = f" [{p['condition']}]" if p.get("condition") else ""
            lines.append(f"  {p['state']:>7} {p['run_id']}{where}: {p['detail']}")
        lines.extend(f"  note: {note}" for note in info.get("notes", []))
    return "\n".join(lines) if lines else "no studies found"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.status", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root",
        default=os.environ.get("LCM_OUTPUTS", "outputs"),
        help="outputs root (paths.root of the runs; default: $LCM_OUTPUTS or ./outputs)",
    )
    parser.add_argument("--study", default=None, help="only this study (default: every study under the root)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    # the training-health table is the analysis's (the training side never imports analysis/)
    parser.add_argument("--health", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.health:
        print(
            "error: the training-health table is the analysis's: python -m analysis.health --root DIR "
            "[--study NAME] [--per-run] [--json]",
            file=sys.stderr,
        )
        return 2
    root = Path(args.root).expanduser()
    if not root.is_dir():
        print(
            f"error: outputs root {root} does not exist (run `python -m pipeline` first, or pass --root DIR)",
            file=sys.stderr,
        )
        return 2
    if args.study and not (root / args.study).is_dir():
        known = ", ".join(list_studies(root)) or "none"
        hint = debug_folder_hint(root, args.study)
        print(
            f"error: no study {args.study!r} under {root} (studies there: {known})" + (f"; {hint}" if hint else ""),
            file=sys.stderr,
        )
        return 2
    report = collect(root, args.study)
    if not report and not args.json:
        hint = debug_folder_hint(root)
        print(f"no studies found under {root}" + (f"; {hint}" if hint else ""))
        return 0
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
