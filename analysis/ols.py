"""The authors' ordinary least squares (statsmodels ``OLS`` and ``anova_lm``), reproducing their tables.

Every epoch x replicate x class-pair row is an independent observation here (pseudo-replication,
kept only to compare with the paper; ``analysis.stats`` has the mixed models). Models in
``ols.csv``: ``source`` (``metric ~ source``), ``labels_<source>``, ``pair_<source>``,
``epoch_pair_<source>`` (``metric ~ epoch * pair``) and ``epoch_vs_epoch_pair_<source>``, the
nested F test of ``metric ~ epoch`` against ``metric ~ epoch * pair`` (R's ``anova``), whose
``delta_r2`` is the change in R^2 the authors report in their "Epoch*Class - Epoch" row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.stats.anova import anova_lm

from pipeline.blas import single_threaded_blas
from pipeline.curve_metrics import METRIC_NAMES

from .formula import design_matrix

__all__ = ["lm", "authors_ols"]

COLUMNS = [
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


def lm(data: pd.DataFrame, metric: str, rhs: str):
    """``lm(metric ~ rhs)`` on ``data``: a statsmodels OLS fit on the design of ``analysis.formula``.

    QR rather than statsmodels' default pseudo-inverse: that is R's method, and it matches R's
    adjusted R^2 and F on the authors' tables more closely (docs/analysis.md). A rank-deficient
    design is refused, where R would silently drop columns (the authors' models never are).
    """
    design = design_matrix(data, rhs)
    rank = np.linalg.matrix_rank(design.X)
    if rank < design.n_params:
        raise np.linalg.LinAlgError(f"design of {rhs!r} is rank deficient (rank {rank} < {design.n_params} columns)")
    return sm.OLS(data[metric].to_numpy(dtype=np.float64), design.X).fit(method="qr")


def _constant(fit) -> bool:
    # a constant metric (or an exact fit) leaves only rounding noise to fit: R^2 and F are noise
    # (R warns "essentially perfect fit"), so they are left empty rather than reported as evidence
    return bool(np.ptp(fit.model.endog) == 0 or fit.ssr <= 0)


def _row(metric, model, formula, subset, fit) -> dict:
    constant = _constant(fit)
    # statsmodels takes the explained sum of squares as TSS - RSS: when the factor explains nothing
    # that is a rounding error either side of zero (R, from the fitted values, gets +1e-30); never below
    nothing = not constant and fit.ess < 0
    return {
        "metric": metric,
        "model": model,
        "formula": formula,
        "subset": subset,
        "n": int(fit.nobs),
        "df_model": int(fit.df_model),
        "df_resid": int(fit.df_resid),
        "r2": np.nan if constant else 0.0 if nothing else fit.rsquared,
        "adj_r2": np.nan if constant else fit.rsquared_adj,
        "f": np.nan if constant else 0.0 if nothing else fit.fvalue,
        "p_value": np.nan if constant else fit.f_pvalue,
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
            rows.append(_row(metric, "source", f"{metric} ~ source", "labels == real", lm(real, metric, "source")))
        for source in sorted(table["source"].unique().tolist()):
            both = table[table["source"] == source]
            if both["labels"].nunique() >= 2:
                fit = lm(both, metric, "labels")
                rows.append(_row(metric, f"labels_{source}", f"{metric} ~ labels", f"source == {source}", fit))
        for source in sources:
            sub = real[real["source"] == source]
            if sub["pair"].nunique() < 2:
                continue
            subset = f"source == {source}, labels == real"
            rows.append(_row(metric, f"pair_{source}", f"{metric} ~ pair", subset, lm(sub, metric, "pair")))
            full = lm(sub, metric, "epoch * pair")
            rows.append(_row(metric, f"epoch_pair_{source}", f"{metric} ~ epoch * pair", subset, full))
            small = lm(sub, metric, "epoch")
            row = _row(
                metric, f"epoch_vs_epoch_pair_{source}", f"{metric} ~ epoch vs {metric} ~ epoch * pair", subset, full
            )
            row.update(df_model=int(small.df_resid - full.df_resid), df_resid=int(full.df_resid), delta_r2=np.nan)
            if not _constant(full):
                nested = anova_lm(small, full).iloc[1]
                row.update(f=max(nested["F"], 0.0), p_value=nested["Pr(>F)"], delta_r2=full.rsquared - small.rsquared)
            rows.append(row)
    if real["source"].nunique() < 2:
        notes.append("OLS model 'source' left out: the table holds one data source only.")
    for source in sorted(table["source"].unique().tolist()):
        if table.loc[table["source"] == source, "labels"].nunique() < 2:
            notes.append(f"OLS model 'labels_{source}' left out: no runs with shuffled labels for {source}.")
    return pd.DataFrame(rows, columns=COLUMNS)
