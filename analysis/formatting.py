"""Numbers in the report's tables, formatted by what their column holds.

One rule per column, so that a column reads the same all the way down: counts as integers (``1352``,
never ``1352.000``), p-values as p-values (``0.031``, ``2.4e-06``, ``< 1e-300``), yes/no for truth
values, and every other number with as many decimals as its column's typical (median) value needs
for three significant digits (``0.926`` beside ``0.047``; ``68.8`` beside ``5.1``), or in scientific
notation where the column's values are all tiny or huge. Text stays text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .templating import Markup, render

__all__ = [
    "Table",
    "column_kind",
    "format_column",
    "format_p",
    "formatted_rows",
    "header",
    "html_table",
    "table",
    "turned",
]

#: a column of p-values: ``p``, ``p_value``, ``p_holm``, ``smallest_p``, ``p_floor_holm``, ... (not ``pair``)
P_COLUMN = re.compile(r"(^|_)p($|_)")
SIGNIFICANT = 3


def format_p(p) -> str:
    """``0.031``, ``2.4e-06``, ``< 1e-300``; empty for a missing value."""
    if p is None or (isinstance(p, (float, np.floating)) and math.isnan(p)):
        return ""
    p = float(p)
    if p == 0.0:
        return "< 1e-300"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def column_kind(name: str, values: pd.Series) -> str:
    """``bool``, ``int``, ``p``, ``float`` or ``text``: how the column's numbers are written."""
    present = values.dropna()
    if pd.api.types.is_bool_dtype(values) or (len(present) and all(isinstance(v, (bool, np.bool_)) for v in present)):
        return "bool"
    if pd.api.types.is_numeric_dtype(values):
        numbers = present
    else:  # text, or numbers stored as objects
        numbers = pd.to_numeric(present, errors="coerce")
        if len(present) == 0 or numbers.isna().any():
            return "text"
    if P_COLUMN.search(str(name)):
        return "p"
    finite = numbers.to_numpy(dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if pd.api.types.is_integer_dtype(values) or (len(finite) and np.all(finite == np.round(finite))):
        return "int"
    return "float"


def _decimals(values: np.ndarray) -> int | None:
    """Decimals for three significant digits of the column's typical (median) magnitude; None: scientific
    notation, where every value is tiny or huge."""
    finite = np.abs(values[np.isfinite(values)])
    nonzero = finite[finite > 0]
    if len(nonzero) == 0:
        return 1
    if float(finite.max()) < 1e-3 or float(nonzero.min()) >= 1e6:
        return None
    typical = float(np.median(nonzero))
    return int(min(6, max(0, SIGNIFICANT - 1 - math.floor(math.log10(typical)))))


def format_column(values: pd.Series, kind: str) -> list[str]:
    """The column's cells as the page shows them (empty where a value is missing)."""
    if kind == "text":
        return ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]
    if kind == "bool":
        return ["" if pd.isna(v) else ("yes" if bool(v) else "no") for v in values]
    if kind == "p":
        return [format_p(v) for v in values]
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    if kind == "int":
        finite = np.abs(numbers[np.isfinite(numbers)])
        spec = "," if len(finite) and finite.max() >= 10_000 else ""  # thousands separators for the whole column
        return ["" if not np.isfinite(v) else format(int(v), spec) for v in numbers]
    decimals = _decimals(numbers)
    spec = f".{SIGNIFICANT - 1}e" if decimals is None else f".{decimals}f"
    return ["" if not np.isfinite(v) else format(v, spec) for v in numbers]


def formatted_rows(frame: pd.DataFrame) -> list[list[tuple[str, bool]]]:
    """Each row as (text, numeric?) cells, every column formatted by its kind."""
    columns = []
    for name in frame.columns:
        kind = column_kind(str(name), frame[name])
        columns.append([(text, kind in ("int", "p", "float")) for text in format_column(frame[name], kind)])
    return [list(row) for row in zip(*columns)] if columns else []


#: tables longer than this show their first rows and link the CSV file that holds them all
LONG_TABLE_ROWS = 150


@dataclass(frozen=True)
class Table:
    """A table as the page shows it: formatted cells (text, numeric?) and how many rows there are in all."""

    columns: list[str]
    rows: list[list[tuple[str, bool]]]
    total: int
    csv: str | None = None
    wrap: bool = False


def table(frame: pd.DataFrame | None, max_rows: int | None = None, csv: str | None = None, wrap: bool = True) -> Table:
    """Every row unless longer than ``max_rows`` (default LONG_TABLE_ROWS); then the page links ``csv``.
    Column names as in the CSV files, free to wrap after their underscores."""
    if frame is None or len(frame) == 0:
        return Table([], [], 0)
    shown = frame.head(LONG_TABLE_ROWS if max_rows is None else max_rows)
    return Table([header(c) for c in shown.columns], formatted_rows(shown), len(frame), csv, wrap)


def header(name: object) -> Markup:
    """A column's name as its CSV file spells it, free to wrap after each underscore (a <wbr>)."""
    return Markup("_<wbr>").join(Markup.escape(part) for part in str(name).split("_"))


#: a summary with more columns than this (and few rows) is shown turned: one row per column, so that it fits
WIDE_COLUMNS, FEW_ROWS = 12, 8


def html_table(frame: pd.DataFrame, wrap: bool = True) -> Markup:
    """A whole table as the report shows it (escaped; numbers by column kind; headers that wrap to fit the
    page). A wide summary (over WIDE_COLUMNS columns, at most FEW_ROWS rows) is turned (:func:`turned`)."""
    if frame.shape[1] > WIDE_COLUMNS and 0 < len(frame) <= FEW_ROWS:
        return Markup(render("report_table.html.j2", t=turned(frame)))
    return Markup(render("report_table.html.j2", t=table(frame, max_rows=len(frame), wrap=wrap)))


def turned(frame: pd.DataFrame) -> Table:
    """A wide summary turned: one column per row of ``frame``, headed by its leading text values (its
    source, labels, ...), and one row per other column, its cells formatted by that column's kind."""
    kinds = [column_kind(str(c), frame[c]) for c in frame.columns]
    leading = next((k for k, kind in enumerate(kinds) if kind != "text"), len(kinds))
    labels = [" · ".join(str(v) for v in row[:leading]) for row in frame.itertuples(index=False)]
    rows = []
    for name, kind in list(zip(frame.columns, kinds))[leading:]:
        cells = [(text, kind in ("int", "p", "float")) for text in format_column(frame[name], kind)]
        rows.append([(header(name), False), *cells])
    return Table([Markup(""), *[Markup.escape(label) for label in labels]], rows, len(rows), None, True)
