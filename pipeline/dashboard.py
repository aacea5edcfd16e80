"""A saved W&B workspace for one study, built with wandb-workspaces.

    python -m pipeline.dashboard --entity E --project P --study NAME [--runs N | --root DIR] [--dry-run]

The workspace shows the runs of study NAME whose attempt completed (summary
``run/complete``, see pipeline/tracking.py): one history per done run, real and
shuffled labels alike, every one of them in each panel (``--runs``: how many the
study has; by default the run folders of the study under ``--root``, at least
the headline study's 750 runs and their 750 null runs). Its
sections: the study overview (the four metrics against epoch by data source,
mean with a standard-error band), class pairs (by pair within source), the
learning-curve maps (media panels of ``map/image``), real vs shuffled labels,
and training health. ``--dry-run`` prints the workspace spec as JSON and never
touches the network. See docs/wandb.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .schema import iter_run_folders, study_folder
from .tracking import COMPLETE_KEY, IMAGE_KEY, MOVEMENT_KEY

LABELS = ("real", "shuffled")  # the sequence runner's label conditions (pipeline/studies/sequence.py)

METRICS = (
    ("start", "start: accuracy at the first time slice"),
    ("end_minus_start", "end - start: gain over the sequence"),
    ("max", "max: peak accuracy"),
    ("tmax", "tmax: where the peak is (share of the sequence)"),
)
X_AXIS = "epoch"
# the headline study (README: seed=range(0,750)) with its shuffled-label null runs
STUDY_RUNS = 2 * 750
HEALTH = (
    ("train/loss", "training loss"),
    ("val/loss", "validation loss"),
    ("train/accuracy", "training accuracy"),
    ("val/accuracy", "validation accuracy"),
    ("knn/mean", "mean KNN accuracy over time slices (raw curve)"),
    ("knn/tie_share", "share of KNN decisions with tied distances"),
)


def _wandb_workspaces():
    """The two wandb-workspaces modules (imported late: pydantic v1-style validators warn on import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    return wr, ws


def _metric_plots(group_key: str, suffix: str, band: str = "stderr") -> list:
    wr, _ = _wandb_workspaces()

    return [
        wr.LinePlot(
            title=f"{title} {suffix}",
            x=X_AXIS,
            y=[f"map/{name}"],
            groupby=wr.Config(group_key),
            groupby_aggfunc="mean",
            groupby_rangefunc=band,
            title_x="epoch",
            title_y=name,
        )
        for name, title in METRICS
    ]


def _note(text: str):
    wr, _ = _wandb_workspaces()

    return wr.MarkdownPanel(markdown=text)


def study_run_count(root: Path, study: str) -> int:
    """The run folders of ``study`` under the outputs root (done or not; each is at most one complete run)."""
    return sum(1 for p in iter_run_folders(study_folder(root, study)) if not p.is_symlink())


def _runset_settings(ws, study: str):
    """Which runs the workspace shows (the study's finished runs) and the columns pinned in its run table."""
    return ws.RunsetSettings(
        # the run groups are <study>-<labels> (pipeline/tracking.py); a group is a plain run field,
        # so the filter needs no nested config key
        filters=(
            f"Metric('Group') in {[f'{study}-{labels}' for labels in LABELS]} "
            f"and Metric('JobType') = 'run' and SummaryMetric('{COMPLETE_KEY}') = 1"
        ),
        pinned_columns=[
            "config:data_source",
            "config:class_pair",
            "config:labels",
            "config:replicate",
            "summary:test_accuracy",
            "summary:map/max",
            f"summary:{MOVEMENT_KEY}",
        ],
    )


def _health_plots(wr) -> list:
    """One line plot per training-health key, mean and standard deviation per data source."""
    return [
        wr.LinePlot(
            title=title,
            x=X_AXIS,
            y=[key],
            groupby=wr.Config("source_group"),
            groupby_aggfunc="mean",
            groupby_rangefunc="stddev",
            title_x="epoch",
            title_y=key,
        )
        for key, title in HEALTH
    ]


def build_workspace(entity: str, project: str, study: str, n_runs: int = STUDY_RUNS):
    """The workspace object (nothing is sent anywhere until ``.save()``); every panel shows up to ``n_runs`` runs."""
    wr, ws = _wandb_workspaces()

    section = lambda name, panels, is_open=True: ws.Section(
        name=name,
        panels=panels,
        is_open=is_open,
        layout_settings=ws.SectionLayoutSettings(columns=3, rows=2),
        panel_settings=ws.SectionPanelSettings(x_axis=X_AXIS),
    )
    overview = section(
        "Study overview",
        [
            _note(
                f"**{study}**: the four metrics of each epoch's information-processing curve (3RS3R-smoothed KNN "
                "accuracy over time slices), mean over runs with a standard-error band, one line per data source "
                "(shuffled-label runs, if any, as their own lines). Same numbers as `python -m analysis`."
            ),
            *_metric_plots("source_group", "by data source"),
        ],
    )
    pairs = section(
        "Class pairs",
        [
            _note(
                "The four metrics per class pair within each data source (config `source_pair`), mean over "
                "replicates with a standard-error band."
            ),
            *_metric_plots("source_pair", "by class pair"),
        ],
        is_open=False,
    )
    maps = section(
        "Learning-curve maps",
        [
            _note(
                "Each run's learning-curve map so far (KNN accuracy, epoch across and time slice up as in the "
                "report; one colour scale for the whole study, chance marked on the scale) and its current curve; "
                "the step slider is the epoch (W&B's step is the epoch) and walks through the epochs at which a "
                "map was logged (`logger.wandb.media_every`, and the last epoch)."
            ),
            wr.MediaBrowser(title="learning-curve maps", media_keys=[IMAGE_KEY], gallery_axis="step", num_columns=3),
        ],
    )
    labels = section(
        "Real vs shuffled labels",
        [
            _note(
                "Real against label-shuffled runs (config `labels`), all sources pooled, mean with a standard-error "
                "band: the shuffled runs are the null that the real maps are read against."
            ),
            *_metric_plots("labels", "real vs shuffled"),
        ],
        is_open=False,
    )
    health = section("Training health", _health_plots(wr), is_open=False)
    return ws.Workspace(
        entity=entity,
        project=project,
        name=f"{study}: learning-curve maps",
        sections=[overview, pairs, maps, labels, health],
        # every run of the study in every panel (W&B shows only the first max_runs runs of the run set)
        settings=ws.WorkspaceSettings(x_axis=X_AXIS, max_runs=max(int(n_runs), 1), tooltip_number_of_runs="default"),
        runset_settings=_runset_settings(ws, study),
    )


def workspace_spec(workspace) -> dict:
    """The spec the W&B app stores for the workspace (what ``save`` sends)."""
    return workspace._to_model().model_dump(by_alias=True, exclude_none=True, mode="json")


def panel_keys(spec: dict) -> set[str]:
    """Every history key a line or media panel of a spec reads (its metrics, x-axis and media keys)."""
    keys: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            config = node.get("config") if node.get("viewType") in ("Run History Line Plot", "Media Browser") else None
            if isinstance(config, dict):
                keys.update(config.get("metrics") or [])
                keys.update(config.get("mediaKeys") or [])
                if config.get("xAxis"):
                    keys.add(config["xAxis"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entity", required=True, help="W&B entity (user or team) that owns the project")
    parser.add_argument(
        "--project",
        required=True,
        help="W&B project the runs were logged to (logger.wandb.project; default learning-curve-maps)",
    )
    parser.add_argument("--study", required=True, help="study name (study.name, e.g. headline)")
    parser.add_argument(
        "--runs",
        type=int,
        help=f"how many runs the study has, null runs included (default: its run folders under --root, at least {STUDY_RUNS})",
    )
    parser.add_argument(
        "--root", type=Path, help="outputs root whose run folders of the study are counted (paths.root)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the workspace spec as JSON; send nothing")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error(f"--runs={args.runs}: must be a number of runs >= 1")
    if args.root is not None and not args.root.is_dir():
        parser.error(f"--root {args.root}: no such folder")
    for name in ("entity", "project", "study"):
        if not getattr(args, name).strip() or "'" in getattr(args, name):
            parser.error(f"--{name} must be a non-empty name without quotes")
    found = study_run_count(args.root, args.study) if args.root is not None else 0
    n_runs = max(args.runs if args.runs is not None else STUDY_RUNS, found)
    if args.runs is not None and found > args.runs:
        print(
            f"dashboard: {found} run folders of {args.study} under {args.root}: showing up to {found}", file=sys.stderr
        )
    workspace = build_workspace(args.entity, args.project, args.study, n_runs)
    if args.dry_run:
        json.dump(workspace_spec(workspace), sys.stdout, indent=1, sort_keys=True)
        print()
        return 0
    workspace.save()
    print(f"workspace saved: {workspace.url}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
