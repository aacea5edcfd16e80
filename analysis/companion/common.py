"""Formatting and summaries shared by the companion report sections (no torch)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.runfolder import CONFIG, STATUS, SUMMARY


def mean_ci(values) -> tuple[float, float, float, int]:
    """Mean and 95% t interval over runs (the interval is the mean itself for one run)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(v.mean())
    if n < 2 or float(v.std(ddof=1)) == 0.0:
        return m, m, m, n
    half = float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return m, m - half, m + half, n


def summarise(frame: pd.DataFrame, by: list[str], value: str = "value") -> pd.DataFrame:
    rows = []
    for key, part in frame.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        m, lo, hi, n = mean_ci(part[value])
        rows.append({**dict(zip(by, key)), "mean": m, "ci_low": lo, "ci_high": hi, "n_runs": n})
    return pd.DataFrame(rows, columns=[*by, "mean", "ci_low", "ci_high", "n_runs"])


def fmt(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return ""
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4g}"
    return html.escape(str(value))


def table_html(frame: pd.DataFrame, caption: str, max_rows: int = 60) -> str:
    shown = frame.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>" for row in shown.itertuples(index=False)
    )
    more = f" (first {max_rows} of {len(frame)} rows; all in the CSV)" if len(frame) > max_rows else ""
    return (
        f'<table border="1" cellspacing="0" cellpadding="3"><caption>{html.escape(caption + more)}'
        f"</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def para(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def skipped_note(skipped: list[tuple[str, str]]) -> str:
    if not skipped:
        return ""
    items = "".join(f"<li>{html.escape(r)}: {html.escape(why)}</li>" for r, why in skipped[:20])
    more = f"<li>... and {len(skipped) - 20} more</li>" if len(skipped) > 20 else ""
    return f"<details><summary>{len(skipped)} run folders not used</summary><ul>{items}{more}</ul></details>"


def done_runs(
    study_dir: Path, tables: tuple[str, ...], *, missing_note: str = "", summary_required: bool = True
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Done runs holding every ``<table>.parquet``: [{run_id, dir, design, summary, config, <table>...}],
    and the folders skipped with the reason (``missing_note`` is added to "no <table>.parquet")."""
    runs, skipped = [], []
    root = Path(study_dir) / "runs"
    for run_dir in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        try:
            status = json.loads((run_dir / STATUS).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            skipped.append((run_dir.name, "no readable status.json"))
            continue
        if status.get("state") != "done":
            skipped.append((run_dir.name, f"state {status.get('state')}"))
            continue
        missing = [t for t in tables if not (run_dir / f"{t}.parquet").exists()]
        if missing:
            skipped.append((run_dir.name, f"no {', '.join(t + '.parquet' for t in missing)}{missing_note}"))
            continue
        try:
            config = yaml.safe_load((run_dir / CONFIG).read_text()) or {}
            summary = (
                json.loads((run_dir / SUMMARY).read_text()) if summary_required or (run_dir / SUMMARY).exists() else {}
            )
            frames = {t: pd.read_parquet(run_dir / f"{t}.parquet") for t in tables}
        except Exception as exc:
            skipped.append((run_dir.name, f"unreadable: {type(exc).__name__}: {exc}"))
            continue
        design = config.get("design") or {}
        if "replicate" not in design:
            skipped.append((run_dir.name, "config.yaml has no design block"))
            continue
        runs.append(
            {"run_id": run_dir.name, "dir": run_dir, "design": design, "summary": summary, "config": config, **frames}
        )
    return runs, skipped
