"""Do the data put the probe in the study's regime? Per data source and metric, the spread of start, end,
max and tmax over runs at the first and the last epoch, ours beside the authors' (their 50-epoch table),
so that a reader sees where the runs sit before reading the verdicts (docs/analysis.md, "The regime")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .formatting import html_table
from .templating import Markup, render

__all__ = ["QUANTILES", "default_reference_table", "authors_metrics", "regime_table", "regime_section"]

QUANTILES = (0.05, 0.5, 0.95)
METRICS = ("start", "end", "max", "tmax")
COLUMNS = [
    "source",
    "metric",
    "epoch",
    "runs",
    "p5",
    "p50",
    "p95",
    "authors_epoch",
    "authors_runs",
    "authors_p5",
    "authors_p50",
    "authors_p95",
    "median_inside_authors_5_95",
]


def default_reference_table() -> Path:
    """``../shared/reference/jiang_dale_2025/metrics_50epoch.csv`` beside the repository."""
    return (
        Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "jiang_dale_2025" / "metrics_50epoch.csv"
    )


def authors_metrics(path=None) -> pd.DataFrame | None:
    """The authors' real-label metrics table (read through ``analysis.tables``), or None where it is absent."""
    from .tables import read_metrics_table

    path = Path(path) if path is not None else default_reference_table()
    if not path.is_file():
        return None
    table = read_metrics_table(path)
    return table[table["labels"] == "real"]


def _spread(frame: pd.DataFrame, metric: str) -> tuple[int, list[float]]:
    values = frame[metric].to_numpy(dtype=np.float64)
    if values.size == 0:
        return 0, [np.nan] * len(QUANTILES)
    return int(frame["run"].nunique()), [float(q) for q in np.quantile(values, QUANTILES)]


def regime_table(table: pd.DataFrame, authors: pd.DataFrame | None) -> pd.DataFrame:
    """One row per source, metric and epoch (the first and the last): our 5th/50th/95th percentiles over
    real-label runs, the authors' at the same epoch (at their first or last where they lack it), and whether
    our median lies within the authors' 5th-95th percentile range."""
    real = table[table["labels"] == "real"]
    rows = []
    for source, ours in real.groupby("source"):
        theirs = authors[authors["source"] == source] if authors is not None else pd.DataFrame()
        for metric in METRICS:
            for which in ("first", "last"):
                rows.append(_regime_row(str(source), metric, which, ours, theirs))
    return pd.DataFrame(rows, columns=COLUMNS)


def _regime_row(source: str, metric: str, which: str, ours: pd.DataFrame, theirs: pd.DataFrame) -> dict:
    epoch = int(ours["epoch"].min() if which == "first" else ours["epoch"].max())
    runs, (p5, p50, p95) = _spread(ours[ours["epoch"] == epoch], metric)
    row = {"source": source, "metric": metric, "epoch": epoch, "runs": runs, "p5": p5, "p50": p50, "p95": p95}
    if len(theirs):
        # like for like: the authors' runs at our epoch where they have it (a short sweep's last epoch beside
        # theirs at that epoch, not at their 50th), else at their own first or last
        their_epochs = set(theirs["epoch"].astype(int))
        their_epoch = (
            epoch if epoch in their_epochs else int(min(their_epochs) if which == "first" else max(their_epochs))
        )
        a_runs, (a5, a50, a95) = _spread(theirs[theirs["epoch"] == their_epoch], metric)
        row.update(
            authors_epoch=their_epoch,
            authors_runs=a_runs,
            authors_p5=a5,
            authors_p50=a50,
            authors_p95=a95,
            median_inside_authors_5_95=bool(a5 <= p50 <= a95),
        )
    else:
        row.update(authors_epoch=np.nan, authors_runs=0, authors_p5=np.nan, authors_p50=np.nan, authors_p95=np.nan)
        row["median_inside_authors_5_95"] = None
    return row


def regime_section(table: pd.DataFrame, reference=None) -> dict:
    """The report's regime section: {"title", "html", "tables": {"regime": frame}} (a diagnostics section)."""
    path = Path(reference) if reference is not None else default_reference_table()
    authors = authors_metrics(path)
    frame = regime_table(table, authors)
    inside = frame["median_inside_authors_5_95"].dropna()
    html = render(
        "report_regime.html.j2",
        # the report's number formats (by column kind) and headers that wrap to fit the page
        table=html_table(frame),
        reference=str(path) if authors is not None else "",
        missing=str(path) if authors is None else "",
        inside=f"{int(inside.sum())} of {len(inside)}" if len(inside) else "",
    )
    return {
        "title": "The regime: where the runs sit, beside the authors'",
        "html": Markup(html),
        "tables": {"regime": frame},
    }
