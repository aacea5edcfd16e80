"""The authors' ordinary least squares, reproduced as R's ``lm`` computes them.

Jiang & Dale fitted, per metric, with every epoch x replicate x class-pair row
treated as an independent observation (pseudo-replication; kept here only to
reproduce their tables, see ``analysis.stats`` for the mixed models):

=============================  ==============================================  ==========================
model (``ols.csv``)            formula                                         rows
=============================  ==============================================  ==========================
``source``                     ``metric ~ source``                             real labels, both sources
``labels_<source>``            ``metric ~ labels``                             real and shuffled, one source
``pair_<source>``              ``metric ~ pair``                               real labels, one source
``epoch_pair_<source>``        ``metric ~ epoch * pair``                       real labels, one source
``epoch_vs_epoch_pair_<s>``    nested F test of ``metric ~ epoch`` against     real labels, one source
                               ``metric ~ epoch * pair`` (R's ``anova``)
=============================  ==============================================  ==========================

For each fit: ``r2`` and ``adj_r2`` as ``summary.lm`` (``mss / (mss + rss)``
with ``mss`` the sum of squares of the centred fitted values; ``adj_r2 = 1 -
(1 - r2) (n - 1) / (n - p)``), the overall ``f`` on ``(p - 1, n - p)`` degrees
of freedom and its ``p_value``. For the nested test, ``f = ((rss0 - rss1) /
(df0 - df1)) / (rss1 / df1)`` as ``anova(m0, m1)``; ``adj_r2`` is that of the
larger model, and ``delta_r2`` the change in R^2 from ``metric ~ epoch`` to
``metric ~ epoch * pair``: the number the authors report in their nested
"Epoch*Class - Epoch" row (empty in the other rows). Least squares by QR (Householder, as LINPACK's ``dqrdc2`` in
``lm``) on the design of ``analysis.formula``; both give the same fit up to
rounding (about 1e-12), and adjusted R^2 and F do not depend on the reference
level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from ._threads import single_threaded_blas
from .formula import design_matrix
from .metrics import METRIC_NAMES

__all__ = ["LmFit", "lm", "nested_f_test", "authors_ols"]


@dataclass(frozen=True)
class LmFit:
    n: int
    p: int
    rss: float
    mss: float
    r2: float
    adj_r2: float
    f: float
    df_model: int
    df_resid: int
    p_value: float
    coef: np.ndarray
    names: list[str]


def lm(y: np.ndarray, X: np.ndarray, names: list[str] | None = None) -> LmFit:
    """Least squares with an intercept in the first column of ``X``, as R's ``lm``."""
    y = np.asarray(y, dtype=np.float64)
    n, p = X.shape
    q, r = np.linalg.qr(X, mode="reduced")
    diag = np.abs(np.diag(r))
    rank = int(np.sum(diag > 1e-7 * diag.max())) if p else 0
    if rank < p:
        raise np.linalg.LinAlgError(f"design is rank deficient (rank {rank} < {p} columns)")
    effects = q.T @ y
    coef = np.linalg.solve(r, effects)
    fitted = X @ coef
    resid = y - fitted
    rss = float(resid @ resid)
    centred = fitted - fitted.mean()
    mss = float(centred @ centred)
    df_resid = n - p
    df_model = p - 1
    r2 = mss / (mss + rss) if (mss + rss) > 0 else float("nan")
    adj_r2 = 1.0 - (1.0 - r2) * ((n - 1) / df_resid) if df_resid > 0 else float("nan")
    if df_model > 0 and df_resid > 0 and rss > 0:
        f = (mss / df_model) / (rss / df_resid)
        p_value = float(sps.f.sf(f, df_model, df_resid))
    else:
        f, p_value = float("nan"), float("nan")
    return LmFit(
        n=n,
        p=p,
        rss=rss,
        mss=mss,
        r2=r2,
        adj_r2=adj_r2,
        f=float(f),
        df_model=df_model,
        df_resid=df_resid,
        p_value=p_value,
        coef=coef,
        names=list(names or []),
    )


def nested_f_test(small: LmFit, large: LmFit) -> tuple[float, int, int, float]:
    """R's ``anova(small, large)`` F test: (F, df numerator, df denominator, p)."""
    df_num = small.df_resid - large.df_resid
    df_den = large.df_resid
    if df_num <= 0 or df_den <= 0 or large.rss <= 0:
        return float("nan"), df_num, df_den, float("nan")
    f = ((small.rss - large.rss) / df_num) / (large.rss / df_den)
    return float(f), df_num, df_den, float(sps.f.sf(f, df_num, df_den))


def _row(metric, model, formula, subset, fit: LmFit) -> dict:
    return {
        "metric": metric,
        "model": model,
        "formula": formula,
        "subset": subset,
        "n": fit.n,
        "df_model": fit.df_model,
        "df_resid": fit.df_resid,
        "r2": fit.r2,
        "adj_r2": fit.adj_r2,
        "f": fit.f,
        "p_value": fit.p_value,
    }


def authors_ols(table: pd.DataFrame, metrics=METRIC_NAMES, notes: list[str] | None = None) -> pd.DataFrame:
    """All of the authors' OLS models on a tidy metrics table (see module docstring).

    ``table`` needs ``source, labels, pair, epoch`` and the metric columns.
    Models that the table cannot support (one source only, no shuffled runs,
    one class pair) are left out and said so in ``notes``.
    """
    with single_threaded_blas():
        return _authors_ols(table, metrics, notes)


def _authors_ols(table: pd.DataFrame, metrics, notes: list[str] | None) -> pd.DataFrame:
    notes = notes if notes is not None else []
    rows: list[dict] = []
    real = table[table["labels"] == "real"]
    sources = sorted(real["source"].unique().tolist())
    for metric in metrics:
        if real["source"].nunique() >= 2:
            d = design_matrix(real, "source")
            rows.append(
                _row(metric, "source", f"{metric} ~ source", "labels == real", lm(real[metric].to_numpy(), d.X))
            )
        for source in sorted(table["source"].unique().tolist()):
            both = table[table["source"] == source]
            if both["labels"].nunique() >= 2:
                d = design_matrix(both, "labels")
                rows.append(
                    _row(
                        metric,
                        f"labels_{source}",
                        f"{metric} ~ labels",
                        f"source == {source}",
                        lm(both[metric].to_numpy(), d.X),
                    )
                )
        for source in sources:
            sub = real[real["source"] == source]
            if sub["pair"].nunique() < 2:
                continue
            y = sub[metric].to_numpy()
            subset = f"source == {source}, labels == real"
            rows.append(_row(metric, f"pair_{source}", f"{metric} ~ pair", subset, lm(y, design_matrix(sub, "pair").X)))
            full = lm(y, design_matrix(sub, "epoch * pair").X)
            rows.append(_row(metric, f"epoch_pair_{source}", f"{metric} ~ epoch * pair", subset, full))
            small = lm(y, design_matrix(sub, "epoch").X)
            f, df_num, df_den, p = nested_f_test(small, full)
            rows.append(
                {
                    "metric": metric,
                    "model": f"epoch_vs_epoch_pair_{source}",
                    "formula": f"{metric} ~ epoch vs {metric} ~ epoch * pair",
                    "subset": subset,
                    "n": full.n,
                    "df_model": df_num,
                    "df_resid": df_den,
                    "r2": full.r2,
                    "adj_r2": full.adj_r2,
                    "f": f,
                    "p_value": p,
                    "delta_r2": full.r2 - small.r2,
                }
            )
    if real["source"].nunique() < 2:
        notes.append("OLS model 'source' left out: the table holds one data source only.")
    for source in sorted(table["source"].unique().tolist()):
        if table.loc[table["source"] == source, "labels"].nunique() < 2:
            notes.append(f"OLS model 'labels_{source}' left out: no runs with shuffled labels for {source}.")
    columns = [
        "metric",
        "model",
        "formula",
        "subset",
        "n",
        "df_model",
        "df_resid",
        "r2",
        "adj_r2",
        "f",
        "p_value",
        "delta_r2",
    ]
    return pd.DataFrame(rows, columns=columns)
