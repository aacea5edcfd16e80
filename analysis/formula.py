"""Design matrices for the small formulas the analysis uses.

Only what the study needs, written out so that coding and names are explicit:
right-hand sides made of ``1``, column names, ``+`` and ``*`` (``a * b`` means
``a + b + a:b``), e.g. ``"source * epoch"``, ``"epoch * pair"``, ``"epoch"``.

- An intercept is always included.
- A column is numeric when its dtype is numeric (``epoch`` stays numeric, as
  recorded), otherwise categorical.
- Categorical columns use treatment coding with their levels in sorted order;
  the first level is the reference. Column names follow patsy/statsmodels:
  ``source[T.sentence]``, ``epoch``, ``source[T.sentence]:epoch``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Design", "design_matrix", "levels_of", "parse_rhs"]


@dataclass(frozen=True)
class Design:
    """A model matrix with its column names and the formula it came from."""

    X: np.ndarray
    names: list[str]
    rhs: str
    levels: dict[str, list]

    @property
    def n_params(self) -> int:
        return self.X.shape[1]

    def frame(self, index=None) -> pd.DataFrame:
        return pd.DataFrame(self.X, columns=self.names, index=index)


def parse_rhs(rhs: str) -> list[tuple[str, ...]]:
    """Terms of a right-hand side, in order: ``"a * b"`` -> ``[(a,), (b,), (a, b)]``."""
    terms: list[tuple[str, ...]] = []
    for chunk in rhs.split("+"):
        chunk = chunk.strip()
        if not chunk or chunk == "1":
            continue
        if "*" in chunk:
            parts = [p.strip() for p in chunk.split("*")]
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"unsupported term {chunk!r} in {rhs!r} (only 'a * b')")
            new = [(parts[0],), (parts[1],), (parts[0], parts[1])]
        elif ":" in chunk:
            parts = [p.strip() for p in chunk.split(":")]
            new = [tuple(parts)]
        else:
            new = [(chunk,)]
        for term in new:
            if term not in terms:
                terms.append(term)
    return terms


def levels_of(values: pd.Series) -> list:
    """Sorted levels of a categorical column (the first is the reference)."""
    return sorted(pd.unique(values.dropna()).tolist())


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def design_matrix(data: pd.DataFrame, rhs: str, levels: dict[str, list] | None = None) -> Design:
    """Model matrix for ``rhs`` on ``data`` (intercept + treatment coding).

    ``levels`` fixes the levels of categorical columns (default: sorted levels
    present in ``data``).
    """
    terms = parse_rhs(rhs)
    variables = sorted({v for t in terms for v in t})
    missing = [v for v in variables if v not in data.columns]
    if missing:
        raise KeyError(f"columns missing for formula {rhs!r}: {', '.join(missing)}")
    n = len(data)
    used_levels: dict[str, list] = {}
    blocks: dict[str, tuple[list[str], np.ndarray]] = {}
    for v in variables:
        col = data[v]
        if _is_numeric(col):
            blocks[v] = ([v], col.to_numpy(dtype=np.float64).reshape(n, 1))
        else:
            lv = list(levels[v]) if levels and v in levels else levels_of(col)
            used_levels[v] = lv
            values = col.to_numpy()
            names = [f"{v}[T.{level}]" for level in lv[1:]]
            mat = (
                np.column_stack([(values == level).astype(np.float64) for level in lv[1:]])
                if len(lv) > 1
                else np.zeros((n, 0))
            )
            blocks[v] = (names, mat)
    names = ["Intercept"]
    columns = [np.ones((n, 1))]
    for term in terms:
        if len(term) == 1:
            term_names, mat = blocks[term[0]]
        else:
            term_names, mat = blocks[term[0]][0], blocks[term[0]][1]
            for v in term[1:]:
                other_names, other = blocks[v]
                term_names = [f"{a}:{b}" for a in term_names for b in other_names]
                mat = (mat[:, :, None] * other[:, None, :]).reshape(n, -1)
        names.extend(term_names)
        columns.append(mat)
    X = np.hstack(columns) if columns else np.ones((n, 1))
    return Design(X=X, names=names, rhs=rhs, levels=used_levels)
