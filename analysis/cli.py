"""Command line: ``python -m analysis``.

Reads every done run under the outputs root (or one study), caches a tidy
metrics table, fits the statistics, and writes tables, figures and
``report.html`` to the output folder. ``--metrics-table`` runs the same
statistics and figures (those that need no maps) on a table in the authors'
format instead. See ``docs/analysis.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pipeline.curve_metrics import METRIC_NAMES
from pipeline.schema import KNN_MODES, KNN_TIE_RULES

__all__ = ["main", "build_parser"]

EPILOG = """\
outputs (in --out):
  metrics.parquet      one row per run x epoch: study, run_id, source, labels, pair, pair_index,
                       class_a, class_b, replicate, epoch, n_slices, start, end, end_minus_start,
                       max, tmax (from --metrics-table: that table plus end_minus_start and run)
  replication.csv      one row per claim of the study (and metric / source): the authors' test, ours,
                       estimate with 95% CI, p, Holm-adjusted p, verdict (rule in report.html)
  mixed_effects.csv    fixed effects of every mixed model (metric, model, term, estimate,
                       std_error, z, p_value, ci_low, ci_high, converged, singular, ...)
  lrt.csv              likelihood-ratio tests (metric, model, chisq, df, p_value, ...)
  ols.csv              the authors' least squares as R's lm gives them (metric, model, adj_r2, f,
                       p_value, ...)
  contrasts.csv        class-pair contrasts, Holm-corrected; effect_sizes.csv: source and label
                       differences with 95% intervals and standardised d
  models.csv, random_effects.csv   fit details (convergence, warnings, R^2, variances)
  skipped_runs.csv     run folders not used, with the reason
  figures/*.png, report.html (read this first)
  .cache/              per-run maps and the metrics table; reused while the done runs are unchanged

models (each metric: start, end_minus_start, max, tmax; run = source x pair x replicate):
  key models (their random effects match the design):
  source_pairs          metric ~ source * epoch + (1 + epoch | pair) + (1 + epoch | run)   real labels,
                        pair coded within its source
  pair_<source>_slope   metric ~ pair * epoch + (1 + epoch | run)     real, one source (contrasts)
  labels_<source>_slope metric ~ labels * epoch + (1 + epoch | run)   real and shuffled runs
  for comparison (--core-only leaves them out):
  source, pair_<source>, labels_<source>   the same with (1 | run) only
  source_slope     metric ~ source * epoch + (1 + epoch | run)
  source_pair_re   metric ~ source * epoch + (1 | pair) + (1 | run)
  All REML; epoch is the raw epoch number. The (1 | run) models: statsmodels MixedLM (started at the
  exact optimum); the others: the profiled criterion (lme4's algorithm; --statsmodels-all to use
  statsmodels where it can). LRTs (ML) against metric ~ epoch with the same random effects.

examples:
  python -m analysis                                   # every study under $LCM_OUTPUTS or ./outputs
  python -m analysis --root /scratch/me/outputs --study jd2025
  python -m analysis --metrics-table ../shared/reference/jiang_dale_2025/metrics_50epoch.csv \\
      --metrics-table ../shared/reference/jiang_dale_2025/metrics_null_50epoch.csv --out /tmp/jd
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis",
        description="Learning-curve metrics (start, end - start, max, tmax) and their statistics (mixed-effects "
        "models, the authors' least squares), figures and an HTML report, from the pipeline's run "
        "folders or from a metrics table. Never imports torch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = parser.add_argument_group("input")
    src.add_argument(
        "--root",
        default=os.environ.get("LCM_OUTPUTS", "outputs"),
        metavar="DIR",
        help="outputs root holding <study>/runs/<run_id>/ folders (the pipeline's paths.root: "
        "$LCM_OUTPUTS, else ./outputs; now %(default)s)",
    )
    src.add_argument("--study", metavar="NAME", help="analyse one study only (default: every study under --root)")
    src.add_argument(
        "--knn-ties",
        metavar="RULE",
        choices=KNN_TIE_RULES,
        help="only runs whose KNN probe used this tie rule (runs of different rules are never pooled)",
    )
    src.add_argument(
        "--knn-mode",
        metavar="MODE",
        choices=KNN_MODES,
        help="only runs whose KNN probe used this mode",
    )
    src.add_argument(
        "--where",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="companion studies: only the runs whose config.yaml has KEY = VALUE (repeatable; e.g. "
        "probe.gradient_spectrum.enabled=true); runs of one study that differ beyond its factors are not pooled",
    )
    src.add_argument(
        "--metrics-table",
        metavar="PATH",
        action="append",
        default=None,
        help="analyse a metrics table (CSV or parquet with columns source, labels, pair, replicate, "
        "epoch, start, end, max, tmax) instead of run folders; repeat to combine tables "
        "(e.g. the study and its shuffled-label runs); needs --out",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", help="output folder (default: <root>/analysis)")
    opts = parser.add_argument_group("options")
    opts.add_argument(
        "--no-smooth",
        dest="smooth",
        action="store_false",
        help="take the metrics from the raw curves instead of the 3RS3R-smoothed ones (default: "
        "smoothed, as the authors did)",
    )
    opts.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="read every run again instead of reusing <out>/.cache (the cache is still rewritten)",
    )
    opts.add_argument(
        "--core-only",
        dest="extras",
        action="store_false",
        help="fit only the key mixed models (source_pairs, pair_<source>_slope, "
        "labels_<source>_slope) and the authors' OLS, not the intercept-only and partial "
        "models kept for comparison",
    )
    opts.add_argument(
        "--statsmodels-all",
        action="store_true",
        help="fit the random-slope and nested models with statsmodels too (default: the profiled "
        "criterion, lme4's algorithm, which gives the same estimates in a fraction of the time; "
        "source_pairs is always fitted by it: statsmodels has no crossed random slopes)",
    )
    opts.add_argument("--no-figures", dest="figures", action="store_false", help="skip figures (report without them)")
    opts.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        metavar="N",
        help="processes for the mixed models, one metric each (default: min(2, CPUs) = %(default)s)",
    )
    opts.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    opts.add_argument(
        "--wandb",
        action="store_true",
        help="also log the tables and report.html to W&B (job type analysis, the study's group; "
        "mode from WANDB_MODE, project from WANDB_PROJECT; see docs/wandb.md)",
    )
    return parser


def _fail(message: str) -> int:
    print(f"analysis: error: {message}", file=sys.stderr)
    return 2


def _with_debug_hint(message: str, root: Path, study: str | None) -> str:
    """A "no runs" message, naming the debug folder where that is all there is (`lcm debug=quick` runs)."""
    from pipeline.status import debug_folder_hint

    hint = debug_folder_hint(root, study)
    return message if hint is None else f"{message}\nNote: {hint}."


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(f"[analysis] {text}", file=sys.stderr, flush=True)


def _knn_mode(collection) -> str | None:
    """The probe's mode of the runs (for the chance level of the map figures); None: resubstitution."""
    runs = getattr(collection, "runs", None)
    if runs is None or "knn_mode" not in getattr(runs, "columns", []):
        return None
    modes = set(runs["knn_mode"].dropna().astype(str))
    return modes.pop() if len(modes) == 1 else ("mixed" if modes else None)


def _figures(figures, table, collection, out: Path, timings: dict) -> dict[str, bytes]:
    t0 = time.perf_counter()
    mean_maps = collection.mean_maps() if collection is not None else None
    figs = figures.all_figures(
        table, METRIC_NAMES, mean_maps=mean_maps, folder=out / "figures", knn_mode=_knn_mode(collection)
    )
    for old in (out / "figures").glob("*.png"):  # figures of an earlier run that this one does not make
        if old.name not in figs and old.name.startswith(("maps_", "metric_", "trajectory_")):
            old.unlink(missing_ok=True)
    timings["figures"] = time.perf_counter() - t0
    return figs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pipeline.blas import single_threaded_blas

    with single_threaded_blas():
        return _main(args)


def _main(args) -> int:
    from pipeline.runfolder import atomic_write_csv, atomic_write_parquet, atomic_write_text

    from . import architectures, collect, figures, ols, replication, report, report_lead, stats
    from .companion.power import RULE as POWER_RULE
    from .tables import MetricsTableError, read_metrics_table

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []
    authors_sections: list[dict] = []
    collection = None
    skipped = None
    if args.metrics_table:
        if not args.out:
            return _fail("--metrics-table needs --out DIR (where to write the results)")
        out = Path(args.out)
        try:
            table = read_metrics_table(args.metrics_table)
        except MetricsTableError as exc:
            return _fail(str(exc))
        from .authors_tables import extra_table_sections, statistics_rows

        authors_sections = extra_table_sections(table, args.metrics_table)  # the 100-epoch / multiclass tables
        table, left_out = statistics_rows(table)
        notes.extend(left_out)
        description = "metrics table(s) " + ", ".join(str(p) for p in args.metrics_table)
        if not args.smooth:
            notes.append("--no-smooth has no effect on a metrics table (its metrics are already computed).")
        timings["read table"] = time.perf_counter() - t_start
    else:
        root = Path(args.root)
        out = Path(args.out) if args.out else root / "analysis"
        try:
            collection = collect.collect_runs(
                root,
                study=args.study,
                cache_dir=out / ".cache",
                smooth=args.smooth,
                use_cache=args.use_cache,
                progress=not args.quiet,
                knn_ties=args.knn_ties,
                knn_mode=args.knn_mode,
            )
        except collect.MixedConditions as exc:
            return _fail(str(exc))
        except collect.NoRunsFound as exc:
            code = _companion_only_report(root, args, out, t_start) if root.is_dir() else None
            return _fail(_with_debug_hint(str(exc), root, args.study)) if code is None else code
        skipped = collection.skipped_frame()
        if len(collection.runs) == 0:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_csv(out / "skipped_runs.csv", skipped)
            reasons = skipped["reason"].value_counts().to_dict()
            return _fail(
                f"no usable runs under {root.resolve()}"
                + (f" (study {args.study})" if args.study else "")
                + f": {len(skipped)} run folder(s), none done and readable ({reasons}); the list is in "
                f"{(out / 'skipped_runs.csv').resolve()}. Wait for the runs to finish or rerun the "
                "failed ones with the pipeline."
            )
        try:
            table = collect.metrics_for_statistics(collection)
        except MetricsTableError as exc:
            return _fail(str(exc))
        notes.extend(collection.notes)
        description = f"run folders under {root.resolve()}" + (f", study {args.study}" if args.study else "")
        timings["collect runs"] = collection.seconds
        timings["metrics"] = collection.seconds_metrics
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(out / "metrics.parquet", table)
    # an architecture study: the models are compared in a section of their own; the other sections are the
    # study model's (the LSTM's), as pooling models would mix conditions
    models_table, models_collection = table, collection
    table, collection = _reference_model(table, collection, notes)
    if skipped is not None:
        atomic_write_csv(out / "skipped_runs.csv", skipped)
    _say(args.quiet, f"metrics table: {len(table)} rows, {table['run'].nunique()} runs -> {out / 'metrics.parquet'}")

    t0 = time.perf_counter()
    ols_notes: list[str] = []
    ols_table = ols.authors_ols(table, notes=ols_notes)
    notes.extend(ols_notes)
    atomic_write_csv(out / "ols.csv", ols_table)
    timings["OLS"] = time.perf_counter() - t0

    # the mixed models run in worker processes (--jobs > 1) while this process draws the figures
    t0 = time.perf_counter()
    pending = stats.start_mixed_effects(
        table, extras=args.extras, jobs=max(1, args.jobs), progress=not args.quiet, statsmodels_all=args.statsmodels_all
    )
    figs: dict[str, bytes] = {}
    if args.figures and pending.futures is not None:
        figs = _figures(figures, table, collection, out, timings)
    mixed = pending.result()
    for name in ("mixed_effects", "lrt", "models", "random_effects", "contrasts", "effect_sizes"):
        atomic_write_csv(out / f"{name}.csv", getattr(mixed, name))
    timings["mixed models"] = time.perf_counter() - t0
    # the warnings one run per class pair brings: one sentence, naming the design that removes them
    design_note, other_warnings = report_lead.design_warnings(mixed.warnings, table)
    other_warnings = [w for w in other_warnings if "MLE may be on the boundary" not in w]
    if design_note:
        _say(args.quiet, f"note: {design_note}")
    for w in other_warnings:
        _say(args.quiet, f"warning: {w}")
    if args.figures and pending.futures is None:
        figs = _figures(figures, table, collection, out, timings)
    replication_table, rule_table = replication.verdict_tables(table, mixed, ols_table)
    atomic_write_csv(out / "replication.csv", replication_table)
    atomic_write_csv(out / "replicate_rule.csv", rule_table)

    files = [
        "replication.csv",
        "replicate_rule.csv",
        "metrics.parquet",
        "mixed_effects.csv",
        "lrt.csv",
        "ols.csv",
        "contrasts.csv",
        "effect_sizes.csv",
        "models.csv",
        "random_effects.csv",
    ] + (["skipped_runs.csv"] if skipped is not None else [])
    files += [f"figures/{name}" for name in figs]
    companion = []
    diagnostics = [_regime(table, out, files)]
    if architectures.several_models(models_table):
        t0 = time.perf_counter()
        section = architectures.architecture_section(models_table, models_collection, figures=args.figures)
        diagnostics[:0] = _write_sections([section], out, files)
        timings["architectures"] = time.perf_counter() - t0
    if collection is None:  # the authors' 100-epoch / multiclass tables
        diagnostics += _write_sections(authors_sections, out, files)
    if collection is not None:
        t0 = time.perf_counter()
        diagnostics += _diagnostics(collection, out, files, figs if args.figures else None)
        timings["diagnostics"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        companion = _companion(Path(args.root), args.study, out, args.quiet, args.where)
        timings["companion studies"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    page = report.render_report(
        report.ReportInput(
            title="Learning-curve maps: analysis report",
            source_description=description,
            table=table,
            ols=ols_table,
            mixed=mixed,
            figures=figs,
            skipped=skipped,
            notes=notes,
            timings=timings,
            files=files,
            smooth=args.smooth if collection is not None else True,
            companion=companion,
            replication=replication_table,
            replication_rule=replication.RULE,
            replicate_rule=rule_table,
            replicate_rule_text=POWER_RULE,
            scope=replication.study_scope(table),
            diagnostics=diagnostics,
        )
    )
    atomic_write_text(out / "report.html", page)
    print(
        f"analysis: {table['run'].nunique()} runs, {len(table)} rows"
        + (f", {len(skipped)} run folder(s) skipped" if skipped is not None and len(skipped) else "")
        + (f", {len(other_warnings)} model warning(s)" if other_warnings else "")
        + (", model warnings from one run per class pair (see report.html)" if design_note else "")
        + f"; results in {out.resolve()} (read report.html first); {time.perf_counter() - t_start:.1f} s"
    )
    if args.wandb:
        from .wandb_export import log_analysis

        mirrored = log_analysis(
            out, table, args.study, description, Path(args.root) if collection is not None else None
        )
        _say(args.quiet, f"W&B: {mirrored}")
    return 0


def _regime(table, out: Path, files: list[str]) -> dict:
    """Where the runs sit (start/end/max/tmax percentiles at the first and last epoch) beside the authors'."""
    from pipeline.runfolder import atomic_write_csv

    from .regime import regime_section

    section = regime_section(table)
    atomic_write_csv(out / "regime.csv", section["tables"]["regime"])
    files.append("regime.csv")
    return section


def _diagnostics(collection, out: Path, files: list[str], figs: dict[str, bytes] | None) -> list[dict]:
    """Sections on whether the maps can be trusted (did the networks train in the study's regime,
    did their maps move, how many neighbour sets ties decided), shown after the replication table.

    Their tables are written as CSV next to the report and their figures into figures/.
    """
    from . import health, ties

    sections = [health.health_section(collection), ties.tie_share_section(collection, figures=figs is not None)]
    return _write_sections(sections, out, files)


def _write_sections(sections: list[dict], out: Path, files: list[str]) -> list[dict]:
    """Write each section's tables (<name>.csv) and figures (figures/<name>) next to the report."""
    from pipeline.runfolder import atomic_write_bytes, atomic_write_csv

    for section in sections:
        for name, frame in section.get("tables", {}).items():
            atomic_write_csv(out / f"{name}.csv", frame)
            files.append(f"{name}.csv")
        for name, png in section.get("figures", {}).items():
            (out / "figures").mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out / "figures" / name, png)
            files.append(f"figures/{name}")
    return sections


def _reference_model(table, collection, notes: list[str]):
    """The table and collection of the study's model where the runs are of several models (an
    architecture study), with a note; unchanged otherwise."""
    from .architectures import reference_model, several_models

    if not several_models(table):
        return table, collection
    models = sorted(table["model"].unique())
    ref = reference_model(models)
    notes.append(
        f"The runs are of {len(models)} models ({', '.join(models)}): the architectures section compares them; "
        f"every other section is of the {ref} runs alone."
    )
    table = table[table["model"] == ref].reset_index(drop=True)
    return table, (collection.of_model(ref) if collection is not None else None)


def _companion(root: Path, study: str | None, out: Path, quiet: bool, where=()) -> list[dict]:
    """Sections of the companion studies under root (critical periods, multitask, dense sample, spectra)."""
    from .companion import companion_sections
    from .companion.common import parse_where

    sections = companion_sections(root, study, out, parse_where(where))
    for section in sections:
        _say(
            quiet,
            f"companion study {section['study']}: {section['title']}"
            + (f" -- FAILED: {section['error']}" if section.get("error") else ""),
        )
    return sections


def _companion_only_report(root: Path, args, out: Path, t_start: float) -> int | None:
    """A report of the companion studies alone, for roots without learning-curve maps.

    None when there is none to make; else the exit code (1 when a section failed)."""
    from pipeline.runfolder import atomic_write_text

    from .templating import Markup, render

    sections = _companion(root, args.study, out, args.quiet, args.where)
    if not sections:
        return None
    page = render(
        "report_companion_only.html.j2",
        root=str(root.resolve()),
        # fragments made by analysis/companion, which escapes what it puts in them
        sections=[{"title": str(s["title"]), "html": Markup(s["html"])} for s in sections],
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.html", page)
    failed = [s for s in sections if s.get("error")]
    print(
        f"analysis: {len(sections)} companion section(s)"
        + (f", {len(failed)} failed" if failed else "")
        + f"; results in {out.resolve()} (read report.html first); {time.perf_counter() - t_start:.1f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
