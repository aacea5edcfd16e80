"""The tidy metrics table (one row per run x epoch, the format of the authors' tables): its columns and
reading one from a file. (The analysis writes its outputs with the run folder's atomic writers,
pipeline/runfolder.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "REQUIRED_COLUMNS",
    "MetricsTableError",
    "read_metrics_table",
    "finish_metrics_table",
]

REQUIRED_COLUMNS: tuple[str, ...] = ("source", "labels", "pair", "replicate", "epoch", "start", "end", "max", "tmax")


class MetricsTableError(ValueError):
    """A metrics table that cannot be used, with a message that says why."""


def finish_metrics_table(table: pd.DataFrame, origin: str = "metrics table") -> pd.DataFrame:
    """Check the required columns and types; add ``end_minus_start`` and ``run``."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise MetricsTableError(
            f"{origin} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(a metrics table needs {', '.join(REQUIRED_COLUMNS)}; end_minus_start is derived)"
        )
    out = table.copy()
    for c in ("source", "labels", "pair"):
        out[c] = out[c].astype(str)
    for c in ("replicate", "epoch"):
        values = pd.to_numeric(out[c], errors="coerce")
        if values.isna().any():
            raise MetricsTableError(f"{origin}: column {c} holds non-numeric or empty values")
        out[c] = values.astype(np.int64) if np.all(values == np.round(values)) else values
    for c in ("start", "end", "max", "tmax"):
        values = pd.to_numeric(out[c], errors="coerce")
        if values.isna().any():
            bad = int(values.isna().sum())
            raise MetricsTableError(f"{origin}: column {c} holds {bad} non-numeric or empty value(s)")
        out[c] = values.astype(np.float64)
    out["end_minus_start"] = out["end"] - out["start"]
    if "run_id" in out.columns and out["run_id"].notna().all():
        _refuse_copied_runs(out, origin)
        prefix = out["study"].astype(str) + "/" if "study" in out.columns else ""
        out["run"] = prefix + out["run_id"].astype(str)
    else:
        out["run"] = out["source"] + "|" + out["labels"] + "|" + out["pair"] + "|" + out["replicate"].astype(str)
    duplicated = out.duplicated(["run", "epoch"])
    if duplicated.any():
        example = out.loc[duplicated, ["run", "epoch"]].iloc[0]
        raise MetricsTableError(
            f"{origin}: {int(duplicated.sum())} duplicated run x epoch row(s), e.g. run {example['run']!r} "
            f"epoch {example['epoch']} (one row per source x labels x pair x replicate x epoch expected)"
        )
    return out


def _refuse_copied_runs(table: pd.DataFrame, origin: str) -> None:
    """A run id names what a run computed (its semantic configuration), so the same id under two studies is one
    run copied, which pooling would count twice."""
    if "study" not in table.columns:
        return
    studies = table.groupby("run_id")["study"].nunique()
    copied = studies[studies > 1]
    if len(copied):
        run_id = copied.index[0]
        where = sorted(table.loc[table["run_id"] == run_id, "study"].astype(str).unique())
        raise MetricsTableError(
            f"{origin}: {len(copied)} run id(s) appear under more than one study, e.g. {run_id} under "
            f"{', '.join(where)}: the same run copied, which pooling would count twice. Analyse one study "
            "(--study NAME) or remove the copies."
        )


def read_metrics_table(paths) -> pd.DataFrame:
    """Read one or more metrics tables (CSV or parquet) into one checked table."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise MetricsTableError(f"metrics table {path} does not exist")
        suffix = path.suffix.lower()
        try:
            if suffix in (".parquet", ".pq"):
                frame = pd.read_parquet(path)
            elif suffix in (".csv", ".txt") or path.name.endswith(".csv.gz"):
                frame = pd.read_csv(path)
            else:
                raise MetricsTableError(f"metrics table {path}: unknown format {suffix!r} (use .csv or .parquet)")
        except MetricsTableError:
            raise
        except Exception as exc:  # a truncated or malformed file
            raise MetricsTableError(f"metrics table {path} could not be read: {type(exc).__name__}: {exc}") from exc
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise MetricsTableError(
                f"metrics table {path} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(needs {', '.join(REQUIRED_COLUMNS)}; end_minus_start is derived)"
            )
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return finish_metrics_table(table, origin=", ".join(str(p) for p in paths))
