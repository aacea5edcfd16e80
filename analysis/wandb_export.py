"""``python -m analysis ... --wandb``: mirrors the analysis' tables and report.html to the study's W&B
group as a run of job type ``analysis`` (mode from ``WANDB_MODE``; nothing reads it back)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

__all__ = ["MODEL_TABLES", "analysis_group", "log_analysis"]

DEFAULT_PROJECT = "learning-curve-maps"
MODEL_TABLES = ("mixed_effects", "lrt", "ols", "contrasts", "effect_sizes", "models", "random_effects")
# wandb.Table refuses more rows than this in a run's history; bigger tables go into the artifact only
HISTORY_ROWS = 10_000


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
    """Plain column types W&B tables accept (categoricals and objects as strings)."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.CategoricalDtype) or out[column].dtype == object:
            out[column] = out[column].astype(str)
    return out


def log_analysis(out: Path, table: pd.DataFrame, study: str | None = None, description: str = "") -> str | None:
    """Log the analysis in ``out`` to W&B; returns the W&B run's id (None when W&B is disabled)."""
    import wandb  # imported only with --wandb: it costs about a second

    out = Path(out)
    os.environ.setdefault("WANDB_SILENT", "true")
    group = analysis_group(table, study)
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
        group=group,
        job_type="analysis",
        name=f"{group} analysis",
        tags=[group, "analysis"],
        dir=str(out),
        config={
            "study": group,
            "source": description,
            "n_runs": int(table["run"].nunique()) if "run" in table.columns else None,
            "n_rows": int(len(table)),
        },
        reinit="finish_previous",
    )
    if run.disabled:
        run.finish()
        return None
    artifact = wandb.Artifact(
        re.sub(r"[^A-Za-z0-9_.-]", "_", f"analysis-{group}"),
        type="analysis",
        description=f"python -m analysis: {description}",
    )
    logged: dict[str, object] = {}
    tables = [("metrics", table)]
    replication = out / "replication.csv"
    if replication.is_file():
        tables.append(("replication", pd.read_csv(replication)))
    for name in MODEL_TABLES:
        path = out / f"{name}.csv"
        if path.is_file():
            tables.append((f"models/{name}", pd.read_csv(path)))
    for name, frame in tables:
        wandb_table = wandb.Table(dataframe=_frame_for_wandb(frame))
        artifact.add(wandb_table, name.replace("/", "_"))
        if len(frame) <= HISTORY_ROWS:
            logged[name] = wandb_table
    report = out / "report.html"
    if report.is_file():
        artifact.add_file(str(report), name="report.html")
    figures = out / "figures"
    if figures.is_dir():
        for png in sorted(figures.glob("*.png")):
            artifact.add_file(str(png), name=f"figures/{png.name}")
    run.log(logged)
    run.log_artifact(artifact)
    run.summary.update({"tables": sorted(name for name, _ in tables), "report": report.is_file()})
    run_id = run.id
    run.finish()
    return run_id
