"""Shared by the companion report sections (no torch): reading done runs, summaries, and the
figures, tables, pages and CSV outputs, rendered through the companion_*.html.j2 templates."""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml

from pipeline.runfolder import atomic_write_bytes, atomic_write_csv, atomic_write_text
from pipeline.schema import CONFIG, STATUS, SUMMARY, run_folders, table_file

from ..templating import Markup, render


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
    """A table cell as text (the template escapes it)."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return ""
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.4g}"
    return str(value)


def table_html(frame: pd.DataFrame, caption: str, max_rows: int = 60) -> Markup:
    shown = frame.head(max_rows)
    more = f" (first {max_rows} of {len(frame)} rows; all in the CSV)" if len(frame) > max_rows else ""
    rows = [[fmt(v) for v in row] for row in shown.itertuples(index=False)]
    return Markup(render("companion_table.html.j2", caption=caption + more, columns=list(shown.columns), rows=rows))


def para(text: str) -> Markup:
    return Markup(render("companion_note.html.j2", text=text))


def section_html(title: str, parts: list, level: int = 2) -> Markup:
    """A heading and its parts (each already HTML: made by the helpers here)."""
    return Markup(render("companion_section.html.j2", title=title, level=level, parts=list(parts)))


def error_html(trace: str) -> Markup:
    return Markup(render("companion_error.html.j2", trace=trace))


def skipped_note(skipped: list[tuple[str, str]]) -> Markup:
    if not skipped:
        return Markup("")
    more = len(skipped) - 20 if len(skipped) > 20 else 0
    return Markup(render("companion_skipped.html.j2", count=len(skipped), shown=skipped[:20], more=more))


def save_figure(fig, out_dir: Path | None, name: str, dpi: int = 90) -> str:
    """Write ``<out_dir>/<name>.png`` (when out_dir is given) and return the PNG as a data URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = buffer.getvalue()
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out_dir / f"{name}.png", data)
    return "data:image/png;base64," + base64.b64encode(data).decode()


def figure_html(uri: str, caption: str) -> Markup:
    return Markup(render("companion_figure.html.j2", uri=uri, caption=caption))


def check_row(check: str, passed: bool | None, measured: str, criterion: str) -> dict:
    verdict = "not measured" if passed is None else ("holds" if passed else "does NOT hold")
    return {"check": check, "result": verdict, "measured": measured, "criterion": criterion}


def standalone_page(title: str, body: str) -> str:
    return render("companion_page.html.j2", title=title, body=body)


def write_outputs(section: dict, out_dir: Path, stem: str) -> Path:
    """``<stem>.html`` (the section as a page) and ``<stem>_<table>.csv`` per table, written atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / f"{stem}.html"
    atomic_write_text(page, standalone_page(section["title"], section["html"]))
    for name, frame in section["tables"].items():
        atomic_write_csv(out_dir / f"{stem}_{name}.csv", frame)
    return page


def main_cli(
    argv, *, prog: str, stem: str, build: Callable[[Path, str | None, Path], dict], default_study: str | None
) -> int:
    """The CLI of a section: ``--root`` outputs, ``--study`` folder, ``--out`` (default <root>/companion);
    ``build(root, study, out)`` makes the section."""
    parser = argparse.ArgumentParser(
        prog=prog, description=f"Write {stem}.html (figures, checks) and its tables (CSV)."
    )
    parser.add_argument("--root", default=os.environ.get("LCM_OUTPUTS", "outputs"), help="outputs root")
    parser.add_argument("--study", default=default_study, help="study folder under the root")
    parser.add_argument("--out", default=None, help="output folder (default: <root>/companion)")
    args = parser.parse_args(argv)
    root = Path(args.root).expanduser()
    out = Path(args.out) if args.out else root / "companion"
    result = build(root, args.study, out)
    page = write_outputs(result, out, stem)
    print(f"{result['title']}: {page}")
    return 0


def done_runs(
    study_dir: Path, tables: tuple[str, ...], *, missing_note: str = "", summary_required: bool = True
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Done runs holding every ``<table>.parquet``: [{run_id, dir, design, summary, config, <table>...}],
    and the folders skipped with the reason (``missing_note`` is added to "no <table>.parquet")."""
    runs, skipped = [], []
    for run_dir in run_folders(study_dir):
        try:
            status = json.loads((run_dir / STATUS).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            skipped.append((run_dir.name, "no readable status.json"))
            continue
        if status.get("state") != "done":
            skipped.append((run_dir.name, f"state {status.get('state')}"))
            continue
        missing = [t for t in tables if not (run_dir / table_file(t)).exists()]
        if missing:
            skipped.append((run_dir.name, f"no {', '.join(table_file(t) for t in missing)}{missing_note}"))
            continue
        try:
            config = yaml.safe_load((run_dir / CONFIG).read_text()) or {}
            summary = (
                json.loads((run_dir / SUMMARY).read_text()) if summary_required or (run_dir / SUMMARY).exists() else {}
            )
            frames = {t: pd.read_parquet(run_dir / table_file(t)) for t in tables}
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


def read_table(run: dict, table: str) -> pd.DataFrame | None:
    """A run's ``<table>.parquet``, or None where the run has none."""
    path = Path(run["dir"]) / table_file(table)
    return pd.read_parquet(path) if path.exists() else None
