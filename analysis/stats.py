"""Mixed-effects statistics on a tidy metrics table: the models, their tests, contrasts and effect sizes.

Each metric is modelled with a run's epochs as repeated measures (``model_specs``: the key models
``source_pairs``, ``pair_<source>_slope``, ``labels_<source>_slope``, and comparison models);
``mixed_effects`` fits them (``analysis.lmm``) and returns fixed effects, likelihood-ratio tests,
Holm-corrected class-pair contrasts, effect sizes and R^2 (``StatsResults``). The models and what
each column means: docs/analysis.md ("Statistics")."""

from __future__ import annotations

import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from pipeline.blas import single_threaded_blas
from pipeline.curve_metrics import METRIC_NAMES

from .formula import design_matrix, levels_of
from .lmm import MixedFit, Structure, fit_mixed, fit_profiled, profiled_fit

__all__ = ["ModelSpec", "StatsResults", "model_specs", "mixed_effects", "start_mixed_effects", "holm"]

_Z975 = float(sps.norm.ppf(0.975))


@dataclass(frozen=True)
class ModelSpec:
    """One mixed model: its name, fixed effects, random effects and rows."""

    name: str
    rhs: str
    structure: Structure
    subset: str
    rows: tuple[tuple[str, str], ...]  # (column, value) equalities selecting the rows
    null_rhs: str | None = None  # the LRT's smaller model, if any
    factor: str | None = None  # the categorical fixed effect compared
    extra: bool = False  # beyond the study's own models

    def formula(self, metric: str, rhs: str | None = None) -> str:
        return f"{metric} ~ {rhs or self.rhs} + {self.structure.describe()}"


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (statsmodels' ``multipletests``); NaN stays NaN and is not in the family."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


@dataclass(frozen=True)
class _Template:
    """A model the table may support: ``scope`` says on which rows and for which sources it is fitted --
    "sources" (real labels, both sources), "sources_pairs" (the same, with at least two class pairs per
    source), "real_source" (real labels of one source with at least two class pairs), "labels_source" (the
    real and shuffled runs of one source)."""

    name: str  # "{source}" is replaced by the source
    rhs: str
    structure: Structure
    scope: str
    factor: str
    null: bool = True  # with a likelihood-ratio test against metric ~ epoch
    extra: bool = False


_INTERCEPT = Structure("intercept", "run")
_SLOPE = Structure("slope", "run", slope="epoch")
# the key models (random effects that match the design), then the ones kept for comparison: random intercepts
# only (they understate the standard errors of every epoch term) and the partial structures of earlier versions
_TEMPLATES = (
    _Template(
        "source_pairs",
        "source * epoch",
        Structure("nested_slope", "pair", inner="run", slope="epoch"),
        "sources_pairs",
        "source",
    ),
    _Template("pair_{source}_slope", "pair * epoch", _SLOPE, "real_source", "pair"),
    _Template("labels_{source}_slope", "labels * epoch", _SLOPE, "labels_source", "labels"),
    _Template("source", "source * epoch", _INTERCEPT, "sources", "source", extra=True),
    _Template("pair_{source}", "pair * epoch", _INTERCEPT, "real_source", "pair", extra=True),
    _Template("source_slope", "source * epoch", _SLOPE, "sources", "source", null=False, extra=True),
    _Template(
        "source_pair_re",
        "source * epoch",
        Structure("nested", "pair", inner="run"),
        "sources_pairs",
        "source",
        extra=True,
    ),
    _Template("labels_{source}", "labels * epoch", _INTERCEPT, "labels_source", "labels", extra=True),
)


def _instances(template: _Template, table: pd.DataFrame, real: pd.DataFrame) -> tuple[list[tuple], list[str]]:
    """The (name, subset, rows) the template is fitted on, and why it is left out where it is not."""
    sources = levels_of(real["source"]) if len(real) else []
    if template.scope in ("sources", "sources_pairs"):
        pairs_ok = len(sources) >= 2 and real.groupby("source")["pair"].nunique().min() >= 2
        if len(sources) >= 2 and (template.scope == "sources" or pairs_ok):
            return [(template.name, "labels == real", (("labels", "real"),))], []
        if len(sources) >= 2:
            return [], [
                f"Mixed model '{template.name}' left out: a source has one class pair only, so the source "
                "effect cannot be judged against the spread of class pairs."
            ]
        return [], [
            "Mixed models of the source effect left out: the table holds one data source with real labels only."
        ]
    found: list[tuple[str, str, tuple[tuple[str, Any], ...]]] = []
    notes: list[str] = []
    if template.scope == "real_source":
        for source in sources:
            name = template.name.format(source=source)
            if real.loc[real["source"] == source, "pair"].nunique() >= 2:
                found.append((name, f"source == {source}, labels == real", (("labels", "real"), ("source", source))))
            else:
                notes.append(f"Mixed model '{name}' left out: one class pair only.")
        return found, notes
    for source in levels_of(table["source"]):
        name = template.name.format(source=source)
        labels = set(table.loc[table["source"] == source, "labels"])
        if len(labels) >= 2 and "real" in labels:
            found.append((name, f"source == {source}", (("source", source),)))
        else:
            notes.append(f"Mixed model '{name}' left out: no runs with shuffled labels for {source}.")
    return found, notes


def model_specs(table: pd.DataFrame, extras: bool = True, notes: list[str] | None = None) -> list[ModelSpec]:
    """The models the table supports, in report order (absent key models explained in ``notes``).

    The key models (always fitted) have random effects that match the design:
    ``source_pairs``, ``pair_<source>_slope`` and ``labels_<source>_slope``.
    ``extras`` adds the intercept-only and partial models, kept for comparison.
    """
    notes = notes if notes is not None else []
    real = table[table["labels"] == "real"]
    specs: list[ModelSpec] = []
    for template in _TEMPLATES:
        if template.extra and not extras:
            continue
        found, missing = _instances(template, table, real)
        if not template.extra:
            notes.extend(missing)
        specs.extend(
            ModelSpec(
                name,
                template.rhs,
                template.structure,
                subset,
                rows,
                null_rhs="epoch" if template.null else None,
                factor=template.factor,
                extra=template.extra,
            )
            for name, subset, rows in found
        )
    return specs


@dataclass
class StatsResults:
    """All mixed-model tables (see the module docstring)."""

    mixed_effects: pd.DataFrame
    lrt: pd.DataFrame
    models: pd.DataFrame
    random_effects: pd.DataFrame
    contrasts: pd.DataFrame
    effect_sizes: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_COLUMNS = {
    "mixed_effects": [
        "metric",
        "model",
        "formula",
        "subset",
        "term",
        "estimate",
        "std_error",
        "z",
        "p_value",
        "ci_low",
        "ci_high",
        "converged",
        "n_obs",
        "n_groups",
        "engine",
        "singular",
    ],
    "lrt": [
        "metric",
        "model",
        "null_formula",
        "full_formula",
        "loglik_null",
        "loglik_full",
        "chisq",
        "df",
        "p_value",
        "converged",
        "singular",
    ],
    "models": [
        "metric",
        "model",
        "formula",
        "subset",
        "method",
        "engine",
        "n_obs",
        "n_groups",
        "converged",
        "loglik",
        "r2_marginal",
        "r2_conditional",
        "on_boundary",
        "warnings",
        "seconds",
    ],
    "random_effects": ["metric", "model", "component", "variance", "sd"],
    "contrasts": [
        "metric",
        "model",
        "family",
        "contrast",
        "level_a",
        "level_b",
        "at_epoch",
        "estimate",
        "std_error",
        "z",
        "p_value",
        "p_holm",
        "ci_low",
        "ci_high",
        "d",
        "d_ci_low",
        "d_ci_high",
        "converged",
    ],
    "effect_sizes": [
        "metric",
        "model",
        "effect",
        "at_epoch",
        "estimate",
        "std_error",
        "ci_low",
        "ci_high",
        "p_value",
        "sd_total",
        "d",
        "d_ci_low",
        "d_ci_high",
    ],
}


def _model_frame(table: pd.DataFrame, spec: ModelSpec, metric: str) -> pd.DataFrame:
    mask = np.ones(len(table), dtype=bool)
    for column, value in spec.rows:
        mask &= (table[column] == value).to_numpy()
    frame = table.loc[mask, ["source", "labels", "pair", "epoch", "run", metric]].reset_index(drop=True)
    if spec.structure.kind in ("nested", "nested_slope"):  # the class pair coded within its source
        frame["pair"] = frame["source"].astype(str) + ":" + frame["pair"].astype(str)
    return frame


def _difference_vector(names: list[str], factor: str, a, b, epoch: float | None) -> np.ndarray:
    """Contrast vector for (level a - level b) at ``epoch`` (None: the slope difference)."""
    index = {n: i for i, n in enumerate(names)}
    L = np.zeros(len(names))
    for level, sign in ((a, 1.0), (b, -1.0)):
        main = f"{factor}[T.{level}]"
        inter = f"{factor}[T.{level}]:epoch"
        if main not in index:  # the reference level
            continue
        if epoch is None:
            L[index[inter]] += sign
        else:
            L[index[main]] += sign
            L[index[inter]] += sign * epoch
    return L


def _estimate(fit: MixedFit, L: np.ndarray) -> tuple[float, float]:
    est = float(L @ fit.fe_params)
    se = float(np.sqrt(max(L @ fit.fe_cov @ L, 0.0)))
    return est, se


def _nakagawa(fit: MixedFit, X: np.ndarray, frame: pd.DataFrame) -> tuple[float, float]:
    var_f = float(np.var(X @ fit.fe_params, ddof=1)) if len(X) > 1 else 0.0
    var_r = fit.random_variance(frame)
    total = var_f + var_r + fit.scale
    if not total > 0:
        return float("nan"), float("nan")
    return var_f / total, (var_f + var_r) / total


def _fit(frame: pd.DataFrame, spec: ModelSpec, metric: str, statsmodels_all: bool):
    """The REML fit of one model: profiled (lme4's algorithm), or statsmodels started at its optimum."""
    design = design_matrix(frame, spec.rhs)
    y = frame[metric].to_numpy(dtype=np.float64)
    kind = spec.structure.kind
    if kind == "nested_slope" or (kind in ("slope", "nested") and not statsmodels_all):
        fit = fit_profiled(y, design.X, design.names, frame, spec.structure, reml=True)
    else:
        start = profiled_fit(y, design.X, frame, spec.structure, reml=True, polish=False)
        fit = fit_mixed(y, design.X, design.names, frame, spec.structure, reml=True, start=start)
    return fit, design, y


def _failed_model(metric: str, spec: ModelSpec, frame: pd.DataFrame, message: str, seconds: float) -> dict:
    return {
        "metric": metric,
        "model": spec.name,
        "formula": spec.formula(metric),
        "subset": spec.subset,
        "method": "REML",
        "engine": "",
        "n_obs": len(frame),
        "n_groups": frame["run"].nunique(),
        "converged": False,
        "loglik": np.nan,
        "r2_marginal": np.nan,
        "r2_conditional": np.nan,
        "on_boundary": "",
        "warnings": message,
        "seconds": seconds,
    }


def _fit_warnings(fit: MixedFit, metric: str, spec: ModelSpec) -> list[str]:
    out = [f"{metric} / {spec.name}: {text}" for text in fit.warnings]
    if fit.on_boundary:
        out.append(f"{metric} / {spec.name}: variance estimated as zero (singular fit): {', '.join(fit.on_boundary)}")
    if not fit.converged:
        who = "statsmodels" if fit.engine == "statsmodels" else "the profiled fit"
        out.append(
            f"{metric} / {spec.name}: {who} did not converge"
            + ("; its coefficients are left out of mixed_effects.csv" if spec.extra else "")
        )
    return out


def _model_record(fit: MixedFit, metric: str, spec: ModelSpec, design, frame: pd.DataFrame, seconds: float) -> dict:
    r2m, r2c = _nakagawa(fit, design.X, frame)
    return {
        "metric": metric,
        "model": spec.name,
        "formula": spec.formula(metric),
        "subset": spec.subset,
        "method": "REML",
        "engine": fit.engine,
        "n_obs": fit.n_obs,
        "n_groups": fit.n_groups,
        "converged": fit.converged,
        "loglik": fit.llf,
        "r2_marginal": r2m,
        "r2_conditional": r2c,
        "on_boundary": ", ".join(fit.on_boundary),
        "warnings": " | ".join(fit.warnings),
        "seconds": seconds,
    }


def _variance_records(fit: MixedFit, metric: str, spec: ModelSpec) -> list[dict]:
    return [
        {
            "metric": metric,
            "model": spec.name,
            "component": component,
            "variance": variance,
            "sd": float(np.sqrt(variance)) if variance >= 0 else np.nan,
        }
        for component, variance in fit.variances().items()
    ]


def _fixed_effect_records(fit: MixedFit, metric: str, spec: ModelSpec) -> list[dict]:
    z, p = fit.z, fit.p_values
    return [
        {
            "metric": metric,
            "model": spec.name,
            "formula": spec.formula(metric),
            "subset": spec.subset,
            "term": term,
            "estimate": fit.fe_params[i],
            "std_error": fit.bse[i],
            "z": z[i],
            "p_value": p[i],
            "ci_low": fit.fe_params[i] - _Z975 * fit.bse[i],
            "ci_high": fit.fe_params[i] + _Z975 * fit.bse[i],
            "converged": fit.converged,
            "n_obs": fit.n_obs,
            "n_groups": fit.n_groups,
            "engine": fit.engine,
            "singular": ", ".join(fit.on_boundary),
        }
        for i, term in enumerate(fit.names)
    ]


def _add_lrt(out: dict, frame, metric: str, spec: ModelSpec, design, y, fit: MixedFit) -> None:
    try:
        row = _lrt(frame, metric, spec, design, y, start=fit.theta)
    except Exception as exc:
        out["warnings"].append(f"{metric} / {spec.name}: likelihood-ratio test failed: {type(exc).__name__}: {exc}")
        return
    out["lrt"].append(row)
    if not row["converged"]:
        out["warnings"].append(f"{metric} / {spec.name}: an ML fit of the likelihood-ratio test did not converge")


def _add_comparisons(out: dict, fit: MixedFit, frame, metric: str, spec: ModelSpec) -> None:
    """Contrasts and effect sizes, from the models whose random effects match the design (random slopes); the
    intercept-only ones' slope standard errors are several times too small."""
    sd_total = float(np.sqrt(fit.random_variance(frame) + fit.scale))
    if spec.factor == "pair" and spec.structure.kind == "slope":
        if not fit.converged:
            out["warnings"].append(
                f"{metric} / {spec.name}: class-pair contrasts come from a fit that did not "
                "converge (converged = False in contrasts.csv)"
            )
        out["contrasts"].extend(_pair_contrasts(fit, frame, metric, spec, sd_total))
    elif spec.factor in ("source", "labels") and not spec.extra:
        out["effect_sizes"].extend(_effects(fit, frame, metric, spec, sd_total))


def _fit_metric(table: pd.DataFrame, metric: str, specs: list[ModelSpec], statsmodels_all: bool = False) -> dict:
    """All models of one metric (runs in a worker process when jobs > 1)."""
    out: dict[str, list] = {k: [] for k in _COLUMNS}
    out["warnings"] = []
    for spec in specs:
        t0 = time.perf_counter()
        frame = _model_frame(table, spec, metric)
        try:
            fit, design, y = _fit(frame, spec, metric, statsmodels_all)
        except Exception as exc:  # a model that cannot be fitted is reported, not fatal
            message = f"{metric} / {spec.name}: fit failed: {type(exc).__name__}: {exc}"
            out["warnings"].append(message)
            out["models"].append(_failed_model(metric, spec, frame, message, time.perf_counter() - t0))
            continue
        out["warnings"].extend(_fit_warnings(fit, metric, spec))
        out["models"].append(_model_record(fit, metric, spec, design, frame, time.perf_counter() - t0))
        out["random_effects"].extend(_variance_records(fit, metric, spec))
        if fit.converged or not spec.extra:
            out["mixed_effects"].extend(_fixed_effect_records(fit, metric, spec))
        if spec.null_rhs:
            _add_lrt(out, frame, metric, spec, design, y, fit)
        _add_comparisons(out, fit, frame, metric, spec)
    return out


def _lrt(
    frame: pd.DataFrame, metric: str, spec: ModelSpec, design, y: np.ndarray, start: np.ndarray | None = None
) -> dict:
    assert spec.null_rhs is not None, "a likelihood-ratio test needs its null model"
    small = design_matrix(frame, spec.null_rhs)
    # the multi-parameter ML fits start at the REML optimum (and the null model at the full ML one): the
    # optima are close, and the default starts cost seconds per fit of source_pairs
    full_fit = _ml(y, design.X, frame, spec.structure, start)
    null_fit = _ml(y, small.X, frame, spec.structure, full_fit.theta)
    chisq = max(0.0, 2.0 * (full_fit.loglik - null_fit.loglik))
    df = design.n_params - small.n_params
    singular = sorted(set(full_fit.on_boundary) | set(null_fit.on_boundary))
    return {
        "metric": metric,
        "model": spec.name,
        "null_formula": spec.formula(metric, spec.null_rhs),
        "full_formula": spec.formula(metric),
        "loglik_null": null_fit.loglik,
        "loglik_full": full_fit.loglik,
        "chisq": chisq,
        "df": df,
        "p_value": float(sps.chi2.sf(chisq, df)),
        "converged": bool(full_fit.success and null_fit.success),
        "singular": ", ".join(singular),
    }


def _ml(y, X, frame, structure: Structure, start):
    if start is None or structure.kind == "intercept":
        return profiled_fit(y, X, frame, structure, reml=False)
    fit = profiled_fit(y, X, frame, structure, reml=False, start=start)
    if not fit.success:  # the warm start failed: the default starts
        fit = max([fit, profiled_fit(y, X, frame, structure, reml=False)], key=lambda f: (f.success, f.loglik))
    return fit


def _contrast_row(fit, metric, spec, family, a, b, epoch, sd_total) -> dict:
    L = _difference_vector(fit.names, spec.factor, a, b, epoch)
    est, se = _estimate(fit, L)
    z = est / se if se > 0 else np.nan
    lo, hi = est - _Z975 * se, est + _Z975 * se
    return {
        "metric": metric,
        "model": spec.name,
        "family": family,
        "contrast": f"{a} - {b}",
        "level_a": a,
        "level_b": b,
        "at_epoch": np.nan if epoch is None else epoch,
        "estimate": est,
        "std_error": se,
        "z": z,
        "p_value": float(2 * sps.norm.sf(abs(z))) if np.isfinite(z) else np.nan,
        "ci_low": lo,
        "ci_high": hi,
        "d": est / sd_total,
        "d_ci_low": lo / sd_total,
        "d_ci_high": hi / sd_total,
        "converged": fit.converged,
    }


def _pair_contrasts(fit: MixedFit, frame, metric, spec, sd_total) -> list[dict]:
    levels = levels_of(frame[spec.factor])
    mean_epoch = float(frame["epoch"].mean())
    rows = []
    for family, epoch in (("level_at_mean_epoch", mean_epoch), ("epoch_slope", None)):
        block = [
            _contrast_row(fit, metric, spec, family, a, b, epoch, sd_total)
            for i, a in enumerate(levels)
            for b in levels[i + 1 :]
        ]
        adjusted = holm([r["p_value"] for r in block])
        for r, p in zip(block, adjusted):
            r["p_holm"] = p
        rows.extend(block)
    return rows


def _effects(fit: MixedFit, frame, metric, spec, sd_total) -> list[dict]:
    levels = levels_of(frame[spec.factor])
    reference = "real" if spec.factor == "labels" and "real" in levels else levels[0]
    epochs = frame["epoch"]
    rows = []
    for other in [lv for lv in levels if lv != reference]:
        for label, epoch in (
            ("first epoch", float(epochs.min())),
            ("mean epoch", float(epochs.mean())),
            ("last epoch", float(epochs.max())),
            ("slope per epoch", None),
        ):
            L = _difference_vector(fit.names, spec.factor, other, reference, epoch)
            est, se = _estimate(fit, L)
            lo, hi = est - _Z975 * se, est + _Z975 * se
            z = est / se if se > 0 else np.nan
            rows.append(
                {
                    "metric": metric,
                    "model": spec.name,
                    "effect": f"{other} - {reference}"
                    + ("" if epoch is None else f" at {label}")
                    + (" (slope per epoch)" if epoch is None else ""),
                    "at_epoch": np.nan if epoch is None else epoch,
                    "estimate": est,
                    "std_error": se,
                    "ci_low": lo,
                    "ci_high": hi,
                    "p_value": float(2 * sps.norm.sf(abs(z))) if np.isfinite(z) else np.nan,
                    "sd_total": sd_total,
                    "d": est / sd_total,
                    "d_ci_low": lo / sd_total,
                    "d_ci_high": hi / sd_total,
                }
            )
    return rows


def _prepare(table: pd.DataFrame) -> pd.DataFrame:
    need = ["source", "labels", "pair", "epoch", "run"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise KeyError(f"metrics table lacks columns {', '.join(missing)}")
    out = table.copy()
    for c in ("source", "labels", "pair", "run"):
        out[c] = out[c].astype(str)
    out["epoch"] = pd.to_numeric(out["epoch"])
    return out


def _fit_metric_safe(args):
    table, metric, specs, statsmodels_all = args
    try:
        with single_threaded_blas():
            return _fit_metric(table, metric, specs, statsmodels_all)
    except Exception:  # never lose the other metrics
        out: dict[str, list] = {k: [] for k in _COLUMNS}
        out["warnings"] = [f"{metric}: statistics failed:\n{traceback.format_exc()}"]
        return out


class PendingStats:
    """Mixed models being fitted (in worker processes when jobs > 1); ``result()`` waits for them."""

    def __init__(self, table: pd.DataFrame, metrics, extras: bool, jobs: int, progress: bool, statsmodels_all: bool):
        self.table = _prepare(table)
        self.notes: list[str] = []
        self.specs = model_specs(self.table, extras=extras, notes=self.notes)
        self.metrics = [m for m in metrics if m in self.table.columns]
        self.tasks = [(self.table, m, self.specs, statsmodels_all) for m in self.metrics]
        self.progress = progress
        self.pool = None
        self.futures = None
        if progress:
            print(
                f"[analysis] fitting {len(self.specs)} mixed models x {len(self.metrics)} metrics "
                f"({'1 process' if jobs <= 1 else f'{jobs} processes'})",
                file=sys.stderr,
                flush=True,
            )
        if jobs > 1 and len(self.tasks) > 1:
            self.pool = ProcessPoolExecutor(max_workers=min(jobs, len(self.tasks), os.cpu_count() or 1))
            self.futures = [self.pool.submit(_fit_metric_safe, task) for task in self.tasks]

    def result(self) -> StatsResults:
        results = []
        if self.futures is not None:
            try:
                for metric, future in zip(self.metrics, self.futures):
                    results.append(future.result())
                    if self.progress:
                        print(f"[analysis]   {metric}: done", file=sys.stderr, flush=True)
            finally:
                if self.pool is not None:
                    self.pool.shutdown()
        else:
            for task in self.tasks:
                t0 = time.perf_counter()
                results.append(_fit_metric_safe(task))
                if self.progress:
                    print(f"[analysis]   {task[1]}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        merged: dict[str, list] = {k: [] for k in _COLUMNS}
        all_warnings: list[str] = []
        for res in results:
            for k in _COLUMNS:
                merged[k].extend(res[k])
            all_warnings.extend(res["warnings"])
        frames = {k: pd.DataFrame(merged[k], columns=_COLUMNS[k]) for k in _COLUMNS}
        return StatsResults(**frames, warnings=all_warnings, notes=self.notes)


def start_mixed_effects(
    table: pd.DataFrame,
    metrics=METRIC_NAMES,
    extras: bool = True,
    jobs: int = 1,
    progress: bool = False,
    statsmodels_all: bool = False,
) -> PendingStats:
    """Start fitting every mixed model of every metric (in the background when ``jobs > 1``)."""
    return PendingStats(table, metrics, extras, jobs, progress, statsmodels_all)


def mixed_effects(
    table: pd.DataFrame,
    metrics=METRIC_NAMES,
    extras: bool = True,
    jobs: int = 1,
    progress: bool = False,
    statsmodels_all: bool = False,
) -> StatsResults:
    """Fit every mixed model of every metric; return the tables.

    ``jobs > 1`` fits metrics in that many worker processes. The study's
    models (``source``, ``pair_<source>``) and ``labels_<source>`` are fitted
    by statsmodels; the random-slope and nested models by the profiled
    criterion (lme4's algorithm) unless ``statsmodels_all``.
    """
    return start_mixed_effects(table, metrics, extras, jobs, progress, statsmodels_all).result()
