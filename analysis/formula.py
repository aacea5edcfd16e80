"""Model matrices for the analysis' formulas (``"epoch * pair"``, ``"source * epoch"``, ...), built by formulaic.

Always with an intercept; numeric columns (``epoch``) stay numeric; other columns are treatment
coded with their levels in sorted order, the first being the reference. Columns come in the
order the formula writes its terms (main effects, then interactions) and carry patsy's names:
``source[T.sentence]``, ``epoch``, ``source[T.sentence]:epoch``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix

__all__ = ["Design", "design_matrix", "levels_of"]


@dataclass(frozen=True)
class Design:
    """A model matrix with its column names and the formula it came from."""

    X: np.ndarray
    names: list[str]
    rhs: str

    @property
    def n_params(self) -> int:
        return self.X.shape[1]


def levels_of(values: pd.Series) -> list:
    """Sorted levels of a categorical column (the first is the reference)."""
    return sorted(pd.unique(values.dropna()).tolist())


def design_matrix(data: pd.DataFrame, rhs: str) -> Design:
    """Model matrix for ``rhs`` on ``data``, one row per row of ``data`` (a missing value is an error)."""
    missing = sorted(
        {name for name in rhs.replace("*", " ").replace(":", " ").replace("+", " ").split()} - {"1"} - set(data.columns)
    )
    if missing:
        raise KeyError(f"columns missing for formula {rhs!r}: {', '.join(missing)}")
    # "degree" ordering keeps the terms in the order written within each degree: epoch * pair
    # gives epoch, pair, epoch:pair (patsy would put pair first), the order the fits were made in
    formula = Formula.from_spec(rhs, ordering="degree")
    matrix = model_matrix(formula, data, na_action="raise", output="numpy")
    names = list(matrix.model_spec.column_names)
    return Design(X=np.asarray(matrix, dtype=np.float64), names=names, rhs=rhs)
