"""``python -m analysis ... --wandb``: mirrors the analysis to the study's W&B group as a run of job type
``analysis`` (mode from ``WANDB_MODE``; nothing reads it back).

On its page: the report's figures as images (``figures/<name>``), the replication, model and metrics
tables, and the study's runs (``runs``: each run with its W&B run and a link to it, ``runs/links``);
an artifact of type ``analysis`` holds the tables, report.html and the figures. The analysis is written
before it is mirrored: a W&B failure costs only the mirror (one warning; online without an answering
server, the mirror goes offline into ``<out>/wandb`` after ``WANDB_INIT_TIMEOUT``, default 30 s).
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import re
from pathlib import Path

import pandas as pd

from pipeline.config import wandb_mode
from pipeline.schema import run_folder
from pipeline.wandb_state import (
    check_room,
    describe,
    keep_wandb_files_in,
    mirror_entry,
    mirrored_as,
    quiet_wandb_log,
)

__all__ = ["MODEL_TABLES", "analysis_group", "log_analysis", "study_runs"]

log = logging.getLogger(__name__)
DEFAULT_PROJECT = "learning-curve-maps"
MODEL_TABLES = ("mixed_effects", "lrt", "ols", "contrasts", "effect_sizes", "models", "random_effects")
# wandb.Table refuses more rows than this in a run's history; bigger tables go into the artifact only
HISTORY_ROWS = 10_000
INIT_TIMEOUT = 30.0  # seconds; the runs' default too (logger.wandb.init_timeout)
RUN_COLUMNS = ["study", "run_id", "source", "labels", "pair", "replicate"]


def analysis_group(table: pd.DataFrame, study: str | None) -> str:
    """The W&B group: the study analysed (``--study``, or the only study in the table), else ``analysis``."""
    if study:
        return study
    if "study" in table.columns:
        studies = sorted(set(table["study"].dropna().astype(str)))
        if len(studies) == 1:
            return studies[0]
        if studies:
            return "+".join(studies)
    return "analysis"


def _frame_for_wandb(frame: pd.DataFrame) -> pd.DataFrame:
    """Plain column types W&B tables accept (categoricals, objects and strings as strings; missing as '')."""
    out = frame.copy()
    for column in out.columns:
        dtype = out[column].dtype
        if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):  # object dtype too
            out[column] = out[column].astype(object).where(out[column].notna(), "").astype(str)
    return out


def _mirror_of(run_dir: Path) -> dict:
    """The W&B run that mirrors a run folder whole, and the project and entity it was logged to."""
    entry = mirror_entry(run_dir) or {}
    return {"wandb_id": mirrored_as(run_dir), "project": entry.get("project"), "entity": entry.get("entity")}


def study_runs(root: Path | None, table: pd.DataFrame) -> pd.DataFrame:
    """One row per analysed run: its design, its W&B run (None where it has no complete mirror) and the
    project and entity it was logged to, read from its run folder under ``root``."""
    columns = [c for c in RUN_COLUMNS if c in table.columns]
    if "run_id" not in columns:
        return pd.DataFrame(columns=[*RUN_COLUMNS, "wandb_id", "project", "entity"])
    runs = table[columns].drop_duplicates("run_id").reset_index(drop=True)
    mirrors = [
        _mirror_of(run_folder(root, str(row.get("study", "")), str(row["run_id"]))) if root is not None else {}
        for _, row in runs.iterrows()
    ]
    return pd.concat([runs, pd.DataFrame(mirrors, index=runs.index, columns=["wandb_id", "project", "entity"])], axis=1)


def _run_links(runs: pd.DataFrame, app_url: str, project: str, entity: str | None) -> pd.DataFrame:
    """``runs`` with a ``link`` column: the run's W&B page, where its entity is known (the run's own, else
    the analysis run's)."""

    def text(value) -> str | None:
        return value if isinstance(value, str) and value else None

    links = []
    for _, row in runs.iterrows():
        owner, wandb_id = text(row.get("entity")) or entity, text(row.get("wandb_id"))
        where = text(row.get("project")) or project
        links.append(f"{app_url.rstrip('/')}/{owner}/{where}/runs/{wandb_id}" if wandb_id and owner else None)
    return runs.assign(link=links)


def _links_page(runs: pd.DataFrame, group: str) -> str:
    """An HTML list of the study's runs, each a link to its W&B page where one is known."""
    items = []
    for _, row in runs.iterrows():
        label = html.escape(
            f"{row.get('source', '')} pair {row.get('pair', '')} r{row.get('replicate', '')} "
            f"{row.get('labels', '')} ({row['run_id']})"
        )
        items.append(
            f'<li><a href="{html.escape(row["link"])}" target="_blank">{label}</a></li>'
            if isinstance(row["link"], str)
            else f"<li>{label}: no W&B run linked</li>"
        )
    linked = int(runs["link"].notna().sum())
    note = (
        ""
        if linked == len(runs)
        else ("<p>Runs without a link: no complete W&B mirror, or its entity unknown (set WANDB_ENTITY).</p>")
    )
    return f"<h3>{html.escape(group)}: {len(runs)} runs, {linked} linked</h3>{note}<ul>{''.join(items)}</ul>"


def init_timeout() -> float:
    """Seconds the analysis run's start waits for W&B's server: ``WANDB_INIT_TIMEOUT`` (W&B's own variable),
    else 30."""
    value = os.environ.get("WANDB_INIT_TIMEOUT", "")
    try:
        seconds = float(value) if value.strip() else INIT_TIMEOUT
    except ValueError:
        raise ValueError(f"WANDB_INIT_TIMEOUT={value!r}: must be a number of seconds > 0") from None
    if not seconds > 0:
        raise ValueError(f"WANDB_INIT_TIMEOUT={value!r}: must be a number of seconds > 0")
    return seconds


def _start(wandb, group: str, out: Path, config: dict):
    """The analysis run: online if W&B's server answers, else offline into ``out/wandb`` (one warning)."""
    keep_wandb_files_in(out / "wandb")
    check_room(out / "wandb")
    init_args = dict(
        project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
        group=group,
        job_type="analysis",
        name=f"{group} analysis",
        tags=[group, "analysis"],
        dir=str(out),
        config=config,
        reinit="finish_previous",
        # an unreachable server costs the analysis at most this long (W&B's own default is 90 s)
        settings=wandb.Settings(init_timeout=init_timeout(), finish_timeout=60.0),
    )
    try:
        return wandb.init(**init_args)
    except Exception as exc:  # CommError, UsageError (no login), timeouts: the analysis is written already
        if wandb_mode() != "online":
            raise
        log.warning("W&B online start failed (%s): the analysis is mirrored offline in %s/wandb", describe(exc), out)
        return wandb.init(**init_args, mode="offline")


def log_analysis(
    out: Path, table: pd.DataFrame, study: str | None = None, description: str = "", root: Path | None = None
) -> str:
    """Log the analysis in ``out`` to W&B; returns one line for the console: the W&B run, or why nothing
    was mirrored.

    ``root``: the outputs root the runs were read from (their run folders name their W&B runs). The
    analysis is written before this runs, so a W&B failure costs only the mirror: one warning, the
    W&B run left failed, and the analysis in ``out`` as written."""
    import wandb  # imported only with --wandb: it costs about a second

    out = Path(out)
    os.environ.setdefault("WANDB_SILENT", "true")
    group = analysis_group(table, study)
    runs = study_runs(root, table)
    config = {
        "study": group,
        "source": description,
        "n_runs": int(table["run_id"].nunique()) if "run_id" in table.columns else None,
        "n_rows": int(len(table)),
        # the study's runs are in these W&B groups (pipeline/tracking.py: <study>-<labels>)
        "run_groups": sorted({f"{s}-{lab}" for s, lab in zip(runs.get("study", []), runs.get("labels", []))}),
    }
    run = None
    try:
        run = _start(wandb, group, out, config)
        if run.disabled:
            run.finish()
            return "disabled (WANDB_MODE), nothing logged"
        mirror_file = Path(run.settings.sync_file) if run.offline else None
        _log_run(wandb, run, out, table, runs, group, description)
        run_id, offline = run.id, run.offline
        run.finish()
        # offline, W&B writes through a file handle it holds: a deleted folder goes unnoticed by W&B itself
        if mirror_file is not None and not mirror_file.is_file():
            raise FileNotFoundError(f"the offline W&B file {mirror_file} is gone (its folder deleted?)")
    except Exception as exc:  # W&B raises many kinds; none may cost the analysis, which is written already
        log.warning(
            "W&B mirror of the analysis lost (%s); the analysis in %s is whole: rerun with --wandb to mirror it",
            describe(exc),
            out,
        )
        quiet_wandb_log(out / "wandb")
        if run is not None:
            with contextlib.suppress(Exception):
                run.finish(exit_code=1)
        return f"the mirror failed ({describe(exc)}); the analysis in {out} is whole"
    where = f"offline in {out / 'wandb'}, upload with slurm/wandb_sync.sh" if offline else "online"
    return f"analysis run {run_id} ({where})"


def _log_run(wandb, run, out: Path, table: pd.DataFrame, runs: pd.DataFrame, group: str, description: str) -> None:
    """The analysis run's page: tables, figures, the study's runs with links; its artifact and summary."""
    runs = _run_links(
        runs, run.settings.app_url, run.project or DEFAULT_PROJECT, os.environ.get("WANDB_ENTITY") or run.entity
    )
    logged, tables = _tables(wandb, out, table, runs)
    logged.update(_figures(wandb, out))
    logged["runs/links"] = wandb.Html(_links_page(runs, group))
    run.log(logged)
    run.log_artifact(_artifact(wandb, out, group, description, tables))
    run.summary.update(
        {
            "tables": sorted(name for name, _ in tables),
            "report": (out / "report.html").is_file(),
            "figures": sorted(k.split("/", 1)[1] for k in logged if k.startswith("figures/")),
            "runs/linked": int(runs["link"].notna().sum()),
        }
    )


def _tables(wandb, out: Path, table: pd.DataFrame, runs: pd.DataFrame) -> tuple[dict, list]:
    """The W&B tables to log (those small enough for a run's history) and every table, by name."""
    tables = [("metrics", table), ("runs", runs)]
    replication = out / "replication.csv"
    if replication.is_file():
        tables.append(("replication", pd.read_csv(replication)))
    for name in MODEL_TABLES:
        path = out / f"{name}.csv"
        if path.is_file():
            tables.append((f"models/{name}", pd.read_csv(path)))
    logged = {}
    converted = []
    for name, frame in tables:
        wandb_table = wandb.Table(dataframe=_frame_for_wandb(frame))
        converted.append((name, wandb_table))
        if len(frame) <= HISTORY_ROWS:
            logged[name] = wandb_table
    return logged, converted


def _figures(wandb, out: Path) -> dict:
    """The report's figures as images on the run's page, ``figures/<name>``."""
    folder = out / "figures"
    pngs = sorted(folder.glob("*.png")) if folder.is_dir() else []
    return {f"figures/{png.stem}": wandb.Image(str(png), caption=png.stem.replace("_", " ")) for png in pngs}


def _artifact(wandb, out: Path, group: str, description: str, tables: list):
    artifact = wandb.Artifact(
        re.sub(r"[^A-Za-z0-9_.-]", "_", f"analysis-{group}"),
        type="analysis",
        description=f"python -m analysis: {description}",
    )
    for name, wandb_table in tables:
        artifact.add(wandb_table, name.replace("/", "_"))
    report = out / "report.html"
    if report.is_file():
        artifact.add_file(str(report), name="report.html")
    figures = out / "figures"
    if figures.is_dir():
        for png in sorted(figures.glob("*.png")):
            artifact.add_file(str(png), name=f"figures/{png.name}")
    return artifact
