"""Shared by the companion report sections (no torch): reading done runs, summaries, and the
figures, tables, pages and CSV outputs, rendered through the companion_*.html.j2 templates."""

from __future__ import annotations

import argparse
import base64
import functools
import io
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml

from pipeline.config_schema import DESIGN_BLOCK, FACTOR, PER_SOURCE, RUNNERS, groups_ignored, rules, with_analysis
from pipeline.identity import semantic_view
from pipeline.runfolder import atomic_write_bytes, atomic_write_csv, atomic_write_text
from pipeline.schema import CONFIG, DONE, STATUS, SUMMARY, run_folders, table_file

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


CLAIM_COLUMNS = [
    "claim",
    "our test",
    "unit",
    "n",
    "tests in family",
    "p (Holm)",
    "smallest attainable p (Holm)",
    "verdict",
    "numbers",
]


def claim_row(
    claim: str,
    test: str,
    family,
    *,
    holds: bool | None,
    p_holm: float = math.nan,
    numbers: str = "",
    n=None,
    claimed_way: bool = True,
    shown_d: float = math.nan,
) -> dict:
    """One claim of a companion study, its test and the verdict by the replicate rule (power.Family): 'holds'
    / 'does not hold' where the family can decide, 'underpowered (n = ..., needs >= ...)' where its smallest
    attainable p after Holm is 0.05 or above, or where a result that is not significant but points the
    claimed way (``claimed_way``) comes from fewer units than power 0.8 needs at half the effect the family's
    significant tests show (``shown_d``, power.shown_effect; NaN where none is significant: a result's own
    effect never decides its own verdict); 'not measured' where ``holds`` is None."""
    n_text = None if n is None else str(n)
    significant = bool(np.isfinite(p_holm) and p_holm < 0.05)
    if holds is None:
        verdict = "not measured"
    elif family is not None and not family.decidable:
        verdict = family.underpowered(n_text)
    elif holds:
        verdict = "holds"
    elif not significant and claimed_way and family is not None and family.lacks_power_at(shown_d):
        verdict = family.underpowered_for_power(shown_d, n_text)
    else:
        verdict = "does not hold"
    return {
        "claim": claim,
        "our test": test,
        "unit": family.unit if family is not None else "",
        "n": (n if n is not None else family.n) if family is not None else "",
        "tests in family": family.m if family is not None else "",
        "p (Holm)": p_holm,
        "smallest attainable p (Holm)": family.floor_holm if family is not None else math.nan,
        "verdict": verdict,
        "numbers": numbers,
    }


def claims_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


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


WHERE_HELP = (
    "only the runs whose config.yaml has KEY = VALUE (dotted key, e.g. probe.gradient_spectrum.enabled=true); "
    "repeat for several keys. Runs of one study that differ in a setting beyond the study's factors are not "
    "replicates of one condition: the analysis refuses to pool them and names the keys to select on"
)


def parse_where(items) -> dict[str, str]:
    """``["a.b=1", ...]`` -> ``{"a.b": "1"}`` (the --where option)."""
    out = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--where {item!r}: expected KEY=VALUE, e.g. probe.gradient_spectrum.enabled=true")
        out[key.strip()] = value.strip()
    return out


def main_cli(
    argv,
    *,
    prog: str,
    stem: str,
    build: Callable[[Path, str | None, Path, dict], dict],
    default_study: str | None,
) -> int:
    """The CLI of a section: ``--root`` outputs, ``--study`` folder, ``--out`` (default <root>/companion),
    ``--where KEY=VALUE``; ``build(root, study, out, where)`` makes the section."""
    parser = argparse.ArgumentParser(
        prog=prog, description=f"Write {stem}.html (figures, checks) and its tables (CSV)."
    )
    parser.add_argument("--root", default=os.environ.get("LCM_OUTPUTS", "outputs"), help="outputs root")
    parser.add_argument("--study", default=default_study, help="study folder under the root")
    parser.add_argument("--out", default=None, help="output folder (default: <root>/companion)")
    parser.add_argument("--where", action="append", metavar="KEY=VALUE", default=[], help=WHERE_HELP)
    args = parser.parse_args(argv)
    root = Path(args.root).expanduser()
    out = Path(args.out) if args.out else root / "companion"
    try:
        result = build(root, args.study, out, parse_where(args.where))
    except MixedConditions as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    page = write_outputs(result, out, stem)
    print(f"{result['title']}: {page}")
    return 0


# ---------------------------------------------------------------------------
# one condition per analysis
# ---------------------------------------------------------------------------


class MixedConditions(RuntimeError):
    """Done runs of one study whose settings differ beyond the study's factors (the message names the keys
    and the --where selection that keeps one condition)."""


# The top-level keys each study's runner ignores: the registry's (pipeline/config_schema.py, torch-free).
IGNORED_KEYS = {runner: groups_ignored(runner) for runner in RUNNERS}
# the headline study's design (compared as cells, not conditions) and what each data source sets for itself
_HEADLINE_DESIGN = tuple(k for k in (*with_analysis(FACTOR, True), *with_analysis(PER_SOURCE, True)) if k != "study")
_PER_SOURCE = tuple(k for k in with_analysis(PER_SOURCE) if "." in k)


def _flat(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def _text(value) -> str:
    """A config value as a --where value is written: true, false, null, 0.001, [1, 2]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return json.dumps(value, default=str) if isinstance(value, (list, dict)) else str(value)


def run_condition(config: dict) -> dict[str, str]:
    """What a run computed beyond its design cell and replicate, as flat ``key -> value`` text: the config as
    its run id sees it (``pipeline.identity.semantic_view``: no plumbing, none of the keys its runner ignores,
    no switched-off probe or deficit, speed-only keys as one value, moved keys where they were), without the
    study's factors and the design factors the analysis keeps apart. Runs whose conditions differ are not
    replicates."""
    study = config.get("study") or {}
    rest = semantic_view(config)
    rest.pop(DESIGN_BLOCK, None)
    if str(study.get("runner", "")) == "sequence":
        for top in _HEADLINE_DESIGN:
            rest.pop(top, None)
    skip = {*_PER_SOURCE, *(str(f) for f in study.get("factors") or [])}
    where_now = moved_keys(str(study.get("runner", "")))
    flat = {where_now.get(k, k): v for k, v in _flat(rest).items()}
    return {k: _text(v) for k, v in flat.items() if k not in skip}


@functools.cache
def moved_keys(runner: str) -> dict[str, str]:
    """A runner's moved keys, old path -> the path a config has them at now (``trainer.lr`` for
    ``study.lr``): the run id's view hashes them where they were, but a condition names them, and --where
    selects them, where a user's config has them."""
    return {rule.moved_from: path for path, rule in rules(runner).items() if rule.moved_from}


def _per_source_condition(config: dict) -> dict[str, str]:
    """The settings of a headline run that its data source sets (its data set and batch size)."""
    flat = _flat({"dataset": config.get("dataset") or {}, "trainer": config.get("trainer") or {}})
    return {k: _text(v) for k, v in flat.items() if k.startswith("dataset.") or k in _PER_SOURCE}


def _selected(config: dict, where: dict[str, str]) -> str | None:
    """None when the run's config matches every KEY=VALUE of ``where``; else the first that it does not."""
    flat = _flat(config)
    for key, value in where.items():
        if key not in flat or _text(flat[key]).lower() != value.lower():
            return f"{key}={value}"
    return None


def _split_key(groups: dict[str, list[dict]], keys: list[str]) -> str | None:
    """A key whose raw config value is constant within each group and differs between them: what --where
    selects a group by (a probe switched off has enabled=false in its config, not the probe's options)."""
    for key in keys:
        values = []
        for runs in groups.values():
            seen = {_text(_flat(r["config"]).get(key)) for r in runs}
            if len(seen) != 1:
                break
            values.append(seen.pop())
        else:
            if len(set(values)) == len(values):
                return key
    return None


def check_one_condition(runs: list[dict], study: str) -> None:
    """MixedConditions when ``runs`` (of ``done_runs``) differ in a setting beyond the study's factors, or, in a
    headline study, in their data set or batch size within one data source."""
    checks = [("", lambda r: run_condition(r["config"]), runs)]
    for source in sorted({str(r["design"].get("data_source")) for r in runs if r["design"].get("data_source")}):
        subset = [r for r in runs if str(r["design"].get("data_source")) == source]
        checks.append((f" of data source {source}", lambda r: _per_source_condition(r["config"]), subset))
    for where, condition, subset in checks:
        groups: dict[str, list[dict]] = {}
        for run in subset:
            groups.setdefault(json.dumps(condition(run), sort_keys=True), []).append(run)
        if len(groups) > 1:
            raise MixedConditions(_mixed_message(groups, study, where))


def _mixed_message(groups: dict[str, list[dict]], study: str, where: str) -> str:
    flats = [json.loads(k) for k in groups]
    # a probe or option switched on or off shows as its "enabled" key first
    keys = sorted(
        {k for f in flats for k in f if len({f_.get(k) for f_ in flats}) > 1},
        key=lambda k: (not k.endswith(".enabled"), k),
    )
    listing = "; ".join(
        f"{len(runs)} run(s) with "
        + ", ".join(f"{k}={flat.get(k, '(absent)')}" for k in keys[:4])
        + f" (e.g. {runs[0]['run_id']})"
        for flat, runs in zip(flats, groups.values())
    )
    key = _split_key(groups, keys) or _split_key(
        groups, sorted({k for r in groups.values() for k in _flat(r[0]["config"])})
    )
    choose = (
        f"--where {key}=VALUE ("
        + ", ".join(f"{_text(_flat(r[0]['config']).get(key))}: {len(r)} runs" for r in groups.values())
        + ")"
        if key
        else "--where KEY=VALUE"
    )
    return (
        f"the done runs of {study}{where} differ in settings beyond the study's factors, so they are not "
        f"replicates of one condition: {listing}. Analyse one condition at a time with {choose} (python -m "
        "analysis, or the section's own command), or keep each condition under its own outputs root."
    )


def done_runs(
    study_dir: Path,
    tables: tuple[str, ...],
    *,
    missing_note: str = "",
    summary_required: bool = True,
    where: dict[str, str] | None = None,
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Done runs holding every ``<table>.parquet``: [{run_id, dir, design, summary, config, <table>...}],
    and the folders skipped with the reason (``missing_note`` is added to "no <table>.parquet"). ``where``
    keeps the runs whose config has each KEY = VALUE; the runs kept must be of one condition
    (``check_one_condition``: MixedConditions otherwise)."""
    runs, skipped = _read_done_runs(study_dir, tables, missing_note, summary_required)
    if where:
        kept = []
        for run in runs:
            unmatched = _selected(run["config"], where)
            if unmatched:
                skipped.append((run["run_id"], f"not selected (--where {unmatched})"))
            else:
                kept.append(run)
        runs = kept
    check_one_condition(runs, Path(study_dir).name)
    return runs, skipped


def _read_done_runs(
    study_dir: Path, tables: tuple[str, ...], missing_note: str, summary_required: bool
) -> tuple[list[dict], list[tuple[str, str]]]:
    runs, skipped = [], []
    for run_dir in run_folders(study_dir):
        try:
            status = json.loads((run_dir / STATUS).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            skipped.append((run_dir.name, "no readable status.json"))
            continue
        if status.get("state") != DONE:
            skipped.append((run_dir.name, f"state {status.get('state')}"))
            continue
        copy_of = _copied_from(run_dir, status)
        if copy_of:
            skipped.append((run_dir.name, copy_of))
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


def _copied_from(run_dir: Path, status: dict) -> str | None:
    """Why a done folder is not a run of its own: its name is not the run id its status.json records (a copy
    of that run, e.g. ``<id>.bak``, which would count one run twice), as the headline analysis reads it."""
    recorded = status.get("run_id")
    if recorded is not None and str(recorded) != run_dir.name:
        return f"folder name differs from the run id its status.json records ({recorded}): a copy? not counted"
    return None


def read_table(run: dict, table: str) -> pd.DataFrame | None:
    """A run's ``<table>.parquet``, or None where the run has none."""
    path = Path(run["dir"]) / table_file(table)
    return pd.read_parquet(path) if path.exists() else None
