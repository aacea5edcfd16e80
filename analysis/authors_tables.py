"""The authors' two extra metric tables: their 100-epoch gesture runs and their 6-way (multiclass) runs.

``python -m analysis --metrics-table <table>`` fits its usual statistics on either table (the study's
claims that a one-source table can test: class-pair differences, non-monotonic progress) and adds a
section for each of these tables, built here:

- 100-epoch gesture runs (``metrics_gesture_100epoch.csv``: 10 class pairs without "no gestures",
  10 replicates, 100 epochs): the metrics' course over the epochs; whether they still change after
  epoch 50 (per run, the mean of epochs 96-100 minus the mean of epochs 46-50); and, with the
  50-epoch table beside it, whether the first 50 epochs match the 50-epoch runs of the same pairs.
- multiclass runs (``metrics_multiclass_20epoch.csv``: sentence, one network trained on all six
  classes, 10 replicates, 20 epochs; its maps read out per class pair and for all six classes at
  once, the row ``MultiClass``): the course over the epochs; and, with the 50-epoch table beside it,
  the pairwise maps of the 6-way network against those of the networks trained on each pair alone.
  The ``MultiClass`` rows are a 6-way probe (another chance level): they are described here and left
  out of the statistics on class pairs.

Tests over class pairs: the unit is the class pair (the mean over its replicates), a one-sample or
paired t test with its 95% interval (p Holm-adjusted over the rows of each table), and the exact
Wilcoxon signed-rank test as a second, rank-based check. Class names are the authors' as written in their tables (their sentence names are assigned
alphabetically and do not match the data set's label coding: docs/science.md).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from .templating import Markup

__all__ = [
    "MULTICLASS_PAIR",
    "table_kind",
    "statistics_rows",
    "after_epoch_50",
    "against_50_epoch_runs",
    "multiclass_against_pairwise",
    "course",
    "extra_table_sections",
]

MULTICLASS_PAIR = "MultiClass"
METRICS = ("start", "end", "end_minus_start", "max", "tmax")
REFERENCE_50 = "metrics_50epoch.csv"
BLOCK = 5  # epochs averaged at each end of a comparison: one epoch's value is noisy


def table_kind(table: pd.DataFrame) -> str | None:
    """``multiclass`` (a ``MultiClass`` probe row), ``long`` (runs of more than 50 epochs) or None."""
    if (table["pair"].astype(str) == MULTICLASS_PAIR).any():
        return "multiclass"
    if table["epoch"].max() > 50:
        return "long"
    return None


def statistics_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows the class-pair statistics may use (the 6-way probe's rows left out), and a note if any were."""
    multi = table["pair"].astype(str) == MULTICLASS_PAIR
    if not multi.any():
        return table, []
    note = (
        f"{int(multi.sum())} rows of the 6-way probe ({MULTICLASS_PAIR}) are left out of the statistics on class "
        "pairs (another chance level); they are described in the section on the multiclass runs."
    )
    return table[~multi].reset_index(drop=True), [note]


def _block_mean(table: pd.DataFrame, last_epoch: int) -> pd.DataFrame:
    """Per run (source, labels, pair, replicate): each metric's mean over epochs last_epoch-BLOCK+1..last_epoch."""
    rows = table[(table["epoch"] > last_epoch - BLOCK) & (table["epoch"] <= last_epoch)]
    return rows.groupby(["pair", "replicate"])[list(METRICS)].mean()


def _over_pairs(per_pair: pd.Series, what: str, metric: str) -> dict:
    """One-sample t over class pairs (mean, 95% interval, p) and the exact Wilcoxon signed-rank p."""
    values = per_pair.to_numpy(dtype=np.float64)
    n = len(values)
    mean = float(values.mean())
    se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    half = float(sps.t.ppf(0.975, n - 1) * se) if n > 1 else float("nan")
    p_t = float(sps.ttest_1samp(values, 0.0).pvalue) if n > 1 and se > 0 else float("nan")
    nonzero = values[values != 0]
    p_w = float(sps.wilcoxon(nonzero, method="exact").pvalue) if len(nonzero) > 0 else float("nan")
    return {
        "comparison": what,
        "metric": metric,
        "pairs": n,
        "mean_difference": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "p_t": p_t,
        "p_wilcoxon_exact": p_w,
        "pairs_up": int((values > 0).sum()),
    }


def _with_holm(rows: list[dict]) -> pd.DataFrame:
    """The rows with ``p_holm``: the t tests' p-values Holm-adjusted over the rows of one comparison table."""
    from statsmodels.stats.multitest import multipletests

    frame = pd.DataFrame(rows)
    finite = frame["p_t"].notna()
    frame["p_holm"] = np.nan
    if finite.any():
        frame.loc[finite, "p_holm"] = multipletests(frame.loc[finite, "p_t"], method="holm")[1]
    return frame


def after_epoch_50(long_table: pd.DataFrame) -> pd.DataFrame:
    """Per metric: epochs 96-100 minus epochs 46-50, per run, averaged per class pair, tested over pairs."""
    last = int(long_table["epoch"].max())
    difference = _block_mean(long_table, last) - _block_mean(long_table, 50)
    per_pair = difference.groupby("pair").mean()
    what = f"epochs {last - BLOCK + 1}-{last} minus epochs {50 - BLOCK + 1}-50 (same runs)"
    return _with_holm([_over_pairs(per_pair[m], what, m) for m in METRICS])


def _shared_pairs(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    return sorted(set(a["pair"].astype(str)) & set(b["pair"].astype(str)))


def against_50_epoch_runs(long_table: pd.DataFrame, table_50: pd.DataFrame) -> pd.DataFrame:
    """Per metric: the 100-epoch runs minus the 50-epoch runs at epochs 46-50, per class pair (replicate
    means), paired over the pairs in both tables."""
    source = str(long_table["source"].iloc[0])
    other = table_50[(table_50["source"] == source) & (table_50["labels"] == "real")]
    pairs = _shared_pairs(long_table, other)
    mine = _block_mean(long_table[long_table["pair"].isin(pairs)], 50).groupby("pair").mean()
    theirs = _block_mean(other[other["pair"].isin(pairs)], 50).groupby("pair").mean()
    what = "100-epoch runs minus 50-epoch runs, epochs 46-50"
    return _with_holm([_over_pairs(mine[m] - theirs[m], what, m) for m in METRICS])


def multiclass_against_pairwise(multi_table: pd.DataFrame, table_50: pd.DataFrame) -> pd.DataFrame:
    """Per metric and epoch block (the first and the last BLOCK epochs of the multiclass runs): the 6-way
    network's pairwise maps minus those of the networks trained on each pair, paired over class pairs."""
    source = str(multi_table["source"].iloc[0])
    pairwise_runs = table_50[(table_50["source"] == source) & (table_50["labels"] == "real")]
    multi = multi_table[multi_table["pair"] != MULTICLASS_PAIR]
    pairs = _shared_pairs(multi, pairwise_runs)
    last = int(multi["epoch"].max())
    rows = []
    for end in (BLOCK, last):
        mine = _block_mean(multi[multi["pair"].isin(pairs)], end).groupby("pair").mean()
        theirs = _block_mean(pairwise_runs[pairwise_runs["pair"].isin(pairs)], end).groupby("pair").mean()
        what = f"6-way minus pairwise networks, epochs {end - BLOCK + 1}-{end}"
        rows += [_over_pairs(mine[m] - theirs[m], what, m) for m in METRICS]
    return _with_holm(rows)


def course(table: pd.DataFrame, epochs: list[int]) -> pd.DataFrame:
    """Median and interquartile range over runs of each metric at the given epochs (per pair kind)."""
    rows = []
    kind = np.where(table["pair"] == MULTICLASS_PAIR, "6-way probe", "class pairs")
    for (probe, epoch), g in table.assign(probe=kind).groupby(["probe", "epoch"], sort=True):
        if epoch not in epochs:
            continue
        row = {"probe": probe, "epoch": int(epoch), "runs": len(g)}
        for m in METRICS:
            q25, q50, q75 = np.quantile(g[m], [0.25, 0.5, 0.75])
            row[m] = f"{q50:.3f} [{q25:.3f}, {q75:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0, escape=True)


def _paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _reference_50(paths: list[Path]) -> tuple[pd.DataFrame | None, Path]:
    """The authors' 50-epoch table: given among the tables, else beside the first of them."""
    from .tables import read_metrics_table

    given = [p for p in paths if p.name == REFERENCE_50]
    where = given[0] if given else paths[0].parent / REFERENCE_50
    return (read_metrics_table([where]) if where.is_file() else None), where


def _long_section(long_table: pd.DataFrame, table_50: pd.DataFrame | None, where: Path) -> dict:
    last = int(long_table["epoch"].max())
    tables = {
        "authors_long_course": course(long_table, [1, 10, 25, 50, 75, last]),
        "authors_long_after_epoch_50": after_epoch_50(long_table),
    }
    parts = [
        _paragraph(
            f"The authors' {last}-epoch runs ({long_table['pair'].nunique()} class pairs x "
            f"{long_table['replicate'].nunique()} replicates, {long_table['source'].iloc[0]}). Median "
            "[interquartile range] over runs of each metric (smoothed curves, as the authors computed them):"
        ),
        _html_table(tables["authors_long_course"]),
        _paragraph(
            "Do the maps still change after epoch 50? Per run, the mean of the last 5 epochs minus the mean "
            "of epochs 46-50; the unit is the class pair (mean over its replicates): t test over pairs with "
            "its 95% interval, and the exact Wilcoxon signed-rank test; pairs_up = pairs whose mean rose."
        ),
        _html_table(tables["authors_long_after_epoch_50"]),
    ]
    if table_50 is not None:
        tables["authors_long_vs_50_epoch_runs"] = against_50_epoch_runs(long_table, table_50)
        parts += [
            _paragraph(
                f"Are their first 50 epochs those of the 50-epoch runs ({where.name})? Epochs 46-50 of the "
                "same class pairs, paired over pairs: a difference here would mean the two run sets differ in "
                "more than their length."
            ),
            _html_table(tables["authors_long_vs_50_epoch_runs"]),
        ]
    else:
        parts.append(_paragraph(f"The authors' 50-epoch table was not found at {where}: no comparison with it."))
    return {"title": f"The authors' {last}-epoch runs", "html": Markup("".join(parts)), "tables": tables}


def _multiclass_section(multi_table: pd.DataFrame, table_50: pd.DataFrame | None, where: Path) -> dict:
    last = int(multi_table["epoch"].max())
    tables = {"authors_multiclass_course": course(multi_table, sorted({1, 5, 10, 15, last}))}
    parts = [
        _paragraph(
            f"The authors' multiclass runs: one network trained on all six {multi_table['source'].iloc[0]} "
            f"classes ({multi_table['replicate'].nunique()} replicates, {last} epochs), its maps read out per "
            f"class pair and by a 6-way probe ({MULTICLASS_PAIR}). Median [interquartile range] over runs:"
        ),
        _html_table(tables["authors_multiclass_course"]),
    ]
    if table_50 is not None:
        tables["authors_multiclass_vs_pairwise"] = multiclass_against_pairwise(multi_table, table_50)
        parts += [
            _paragraph(
                "Does training on all six classes change a pair's map? The 6-way network's map of each class "
                f"pair minus the map of the networks trained on that pair alone ({where.name}), at the first "
                "and the last 5 epochs of the multiclass runs, paired over class pairs (replicate means)."
            ),
            _html_table(tables["authors_multiclass_vs_pairwise"]),
        ]
    else:
        parts.append(_paragraph(f"The authors' 50-epoch table was not found at {where}: no comparison with it."))
    return {"title": "The authors' multiclass runs", "html": Markup("".join(parts)), "tables": tables}


def extra_table_sections(table: pd.DataFrame, paths) -> list[dict]:
    """Report sections for the authors' 100-epoch and multiclass tables among ``table`` (read from ``paths``);
    none for other tables. Each section: {"title", "html", "tables"} (the report writes the tables as CSV)."""
    kind = table_kind(table)
    if kind is None:
        return []
    table_50, where = _reference_50([Path(p) for p in paths])
    if kind == "long":
        long_runs = table.groupby("run")["epoch"].transform("max") > 50
        return [_long_section(table[long_runs], table_50, where)]
    multi_runs = table.groupby(["source", "replicate"])["pair"].transform(lambda p: (p == MULTICLASS_PAIR).any())
    return [_multiclass_section(table[multi_runs], table_50, where)]
