"""Training health: did the runs train in the study's regime, and did their learning-curve maps move?

Per done run: updates per epoch, training-set size, test accuracy, map movement, the map's start at
epoch 1 and max at the last epoch (smoothed, as the analysis computes them), and whether training
collapsed late (final train accuracy more than 0.1 below its best); per data source: medians, the
share of class pairs at test accuracy >= 0.70 and the count of collapsed runs, beside the authors'
``performance.csv`` and the same regime figures from their metric tables. The report's section reuses
the analysis' collection (``health_section``); ``python -m analysis.health`` reads the run folders
itself (``health_table``). Torch-free.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.curve_metrics import map_metrics, map_movement
from pipeline.runfolder import MAX_RECORD_BYTES, done_check, is_link, read_entry, read_text_entry
from pipeline.schema import CONFIG, DAMAGED, DONE, READOUTS, SUMMARY

from .collect import Collection, NoRunsFound, RunReadError, find_run_dirs, read_run
from .formatting import html_table
from .templating import Markup, render

__all__ = [
    "ACCEPTANCE",
    "updates_per_epoch",
    "map_movement",
    "run_health",
    "health_table",
    "health_from_collection",
    "health_summary",
    "authors_performance",
    "default_performance_csv",
    "health_section",
    "format_health",
    "REGIME",
    "COLLAPSE_DROP",
    "train_accuracy_course",
    "authors_regime",
    "regime_reference",
    "default_reference_dir",
]

# The acceptance bars, per data source: median test accuracy, share of class
# pairs at or above PAIR_FLOOR, median map movement.
ACCEPTANCE = {"median_test_accuracy": 0.80, "share_pairs_ge_070": 0.80, "median_map_movement": 0.08}
PAIR_FLOOR = 0.70

# The study's probe regime, per data source: the median start at epoch 1 inside the authors' 5th-95th
# percentile band (their metric tables), the median max at the last epoch below MAX_CEILING, and null
# (shuffled-label) runs starting at most NULL_MARGIN above the probe's chance level for distinct states.
REGIME = {"max_ceiling": 0.99, "null_chance": 0.75, "null_margin": 0.05}
# A run collapsed late when its final train accuracy is more than this below its best epoch's.
COLLAPSE_DROP = 0.1

RUN_COLUMNS = [
    "study",
    "run_id",
    "source",
    "dataset",
    "labels",
    "pair",
    "pair_index",
    "replicate",
    "n_train",
    "batch_size",
    "updates_per_epoch",
    "epochs",
    "test_accuracy",
    "map_movement",
    "start_epoch1",
    "max_last",
    "train_repeated_share",
    "train_accuracy_best",
    "train_accuracy_final",
    "collapsed",
    "seconds_total",
]


def updates_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches per epoch under the training loop's rule (a last batch of one joins the one before)."""
    n_train, batch_size = int(n_train), int(batch_size)
    if n_train <= 0 or batch_size <= 0:
        return 0
    full, rest = divmod(n_train, batch_size)
    batches = full + (rest > 0)
    return batches - 1 if rest == 1 and batches > 1 and batch_size > 1 else batches


def run_health(run_dir) -> dict:
    """One done run's health row; RunReadError when its records cannot be used."""
    run_dir = Path(run_dir)
    info, lc_map = read_run(run_dir)
    return _health_row(run_dir, info, lc_map)


def _health_row(run_dir: Path, info: dict, lc_map: np.ndarray) -> dict:
    """The row from the run's design and map (read already) and its summary.json."""
    try:
        summary = json.loads(read_text_entry(run_dir, SUMMARY))
    except (OSError, ValueError) as exc:  # NotReadable is a ValueError
        raise RunReadError(f"summary.json unreadable ({type(exc).__name__})") from None
    batch_size = summary.get("batch_size")
    dataset = summary.get("dataset")
    if not batch_size or not dataset:  # records written before the summary held them
        config = _config(run_dir)
        batch_size = batch_size or (config.get("trainer") or {}).get("batch_size")
        dataset = dataset or (config.get("dataset") or {}).get("name", "")
    n_train = summary.get("n_train")
    updates = summary.get("updates_per_epoch")
    if updates is None and n_train is not None and batch_size:
        updates = updates_per_epoch(n_train, batch_size)  # records written before it was stored
    metrics = map_metrics(np.asarray(lc_map, dtype=np.float64)[None])
    best, final = train_accuracy_course(run_dir)
    return {
        "run_id": run_dir.name,
        "source": info["source"],
        "dataset": dataset,
        "labels": info["labels"],
        "pair": info["pair"],
        "pair_index": info["pair_index"],
        "replicate": info["replicate"],
        "n_train": n_train,
        "batch_size": batch_size,
        "updates_per_epoch": updates,
        "epochs": int(lc_map.shape[0]),
        "test_accuracy": summary.get("test_accuracy"),
        "map_movement": map_movement(lc_map),
        "start_epoch1": float(metrics.start[0, 0]),
        "max_last": float(metrics.max[0, -1]),
        "train_repeated_share": summary.get("train_repeated_share"),
        "train_accuracy_best": best,
        "train_accuracy_final": final,
        "collapsed": bool(best - final > COLLAPSE_DROP) if np.isfinite(best - final) else None,
        "seconds_total": summary.get("seconds_total"),
    }


def train_accuracy_course(run_dir) -> tuple[float, float]:
    """(best, final) train accuracy over the run's epochs, from readouts.parquet; NaN when not recorded."""
    try:
        data, _ = read_entry(Path(run_dir), READOUTS, MAX_RECORD_BYTES)  # confined: never a link or a FIFO
        readouts = pd.read_parquet(io.BytesIO(data), columns=["epoch", "split", "metric", "value"])
    except Exception:  # an absent or unreadable file: the rest of the row still stands
        return float("nan"), float("nan")
    train = readouts[(readouts["split"] == "train") & (readouts["metric"] == "accuracy")].sort_values("epoch")
    if train.empty:
        return float("nan"), float("nan")
    return float(train["value"].max()), float(train["value"].iloc[-1])


def _config(run_dir: Path) -> dict:
    import yaml  # pyyaml comes with omegaconf

    try:
        return yaml.safe_load(read_text_entry(run_dir, CONFIG)) or {}
    except Exception:
        return {}


def _frame(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=RUN_COLUMNS)
    numeric = (
        "n_train",
        "batch_size",
        "updates_per_epoch",
        "test_accuracy",
        "map_movement",
        "start_epoch1",
        "max_last",
        "train_repeated_share",
        "train_accuracy_best",
        "train_accuracy_final",
        "seconds_total",
    )
    for col in numeric:
        table[col] = pd.to_numeric(table[col], errors="coerce")
    return table.sort_values(["study", "source", "labels", "pair_index", "replicate"], ignore_index=True)


def health_table(root, study: str | None = None) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """(one row per done run, [(run folder, reason)] for done runs that could not be read), from the run folders."""
    rows, skipped = [], []
    for study_name, run_dir in find_run_dirs(root, study):
        # a done run whose records check out; links are never followed, damaged records are listed
        state, why = ("link", None) if is_link(run_dir) else done_check(run_dir)
        if state == DAMAGED:
            skipped.append((str(run_dir), f"damaged record: {why}"))
        if state != DONE:
            continue
        try:
            rows.append({"study": study_name, **run_health(run_dir)})
        except RunReadError as exc:
            skipped.append((str(run_dir), str(exc)))
    return _frame(rows), skipped


def health_from_collection(collection: Collection) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """As ``health_table``, for the runs the analysis collected: their designs and maps are not read again.

    Done runs the collection could not read are in its skipped list (the report's Warnings), not here.
    """
    rows, skipped = [], []
    for record in collection.runs.to_dict("records"):
        run_dir = Path(record["path"])
        lc_map = collection.maps[record["shape"]][record["map_row"]]
        try:
            rows.append({"study": record["study"], **_health_row(run_dir, record, lc_map)})
        except RunReadError as exc:
            skipped.append((str(run_dir), str(exc)))
    return _frame(rows), skipped


def _pair_share(frame: pd.DataFrame, accuracy: str, keys: list[str]) -> float:
    """Share of class pairs whose median test accuracy (over replicates) is >= PAIR_FLOOR."""
    per_pair = frame.groupby(keys)[accuracy].median()
    return float((per_pair >= PAIR_FLOOR).mean()) if len(per_pair) else float("nan")


SUMMARY_COLUMNS = [
    "study",
    "source",
    "labels",
    "dataset",
    "runs",
    "pairs",
    "epochs",
    "median_n_train",
    "min_updates_per_epoch",
    "median_updates_per_epoch",
    "median_test_accuracy",
    "share_pairs_ge_070",
    "median_map_movement",
    "median_start_epoch1",
    "median_max_last",
    "median_train_repeated_share",
    "collapsed_runs",
    "median_seconds",
    "meets_bar",
    "in_regime",
]


def health_summary(runs: pd.DataFrame, reference_dir=None) -> pd.DataFrame:
    """Per study x data source x labels: medians, the pair share, collapsed runs, whether the learning bar
    (``ACCEPTANCE``) is met and whether the maps are in the study's probe regime (``regime_verdict``,
    against the authors' metric tables in ``reference_dir``, default ``default_reference_dir()``)."""
    regime = authors_regime(reference_dir)
    rows = []
    for (study, source, labels), g in runs.groupby(["study", "source", "labels"], sort=True):
        row = {
            "study": study,
            "source": source,
            "labels": labels,
            "dataset": ",".join(sorted(set(g["dataset"].astype(str)))),
            "runs": len(g),
            "pairs": g["pair"].nunique(),
            "epochs": int(g["epochs"].median()),
            "median_n_train": g["n_train"].median(),
            "min_updates_per_epoch": g["updates_per_epoch"].min(),
            "median_updates_per_epoch": g["updates_per_epoch"].median(),
            "median_test_accuracy": g["test_accuracy"].median(),
            "share_pairs_ge_070": _pair_share(g, "test_accuracy", ["pair"]),
            "median_map_movement": g["map_movement"].median(),
            "median_start_epoch1": g["start_epoch1"].median(),
            "median_max_last": g["max_last"].median(),
            "median_train_repeated_share": g["train_repeated_share"].median(),
            "collapsed_runs": int((g["collapsed"] == True).sum()),  # noqa: E712 - None (not recorded) is not True
            "median_seconds": g["seconds_total"].median(),
        }
        row["meets_bar"] = bool(labels == "real" and all(row[k] >= v for k, v in ACCEPTANCE.items()))
        row["in_regime"] = regime_verdict(row, regime)
        rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def regime_verdict(row: dict, regime: pd.DataFrame | None) -> bool | None:
    """Real labels: median start at epoch 1 inside the authors' 5th-95th percentile band of their source and
    median max at the last epoch below ``REGIME['max_ceiling']``; shuffled labels: median start at epoch 1 at
    most ``null_margin`` above the chance level of distinct states. None when it cannot be judged.

    Oversampled rows whose twin is in the training set score 1 under any labels (``train_repeated_share``
    says how many there are), so a null run of an unbalanced pair sits above 0.75 without any learning."""
    if row["labels"] != "real":
        return bool(row["median_start_epoch1"] <= REGIME["null_chance"] + REGIME["null_margin"])
    band = None if regime is None else regime[(regime["source"] == row["source"]) & (regime["epoch"] == 1)]
    if band is None or band.empty:
        return None
    band = band.iloc[0]
    in_band = band["start_p05"] <= row["median_start_epoch1"] <= band["start_p95"]
    return bool(in_band and row["median_max_last"] < REGIME["max_ceiling"])


def default_reference_dir() -> Path:
    """``../shared/reference/jiang_dale_2025/`` beside the repository (the authors' tables)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "jiang_dale_2025"


def authors_regime(folder=None) -> pd.DataFrame | None:
    """Per data source and epoch, the 5th / 50th / 95th percentiles over the authors' runs of start and max
    (their ``metrics_50epoch.csv``), and the median start of their shuffled-label runs
    (``metrics_null_50epoch.csv``, when present); None when the 50-epoch table is absent."""
    folder = Path(folder) if folder is not None else default_reference_dir()
    if not (folder / "metrics_50epoch.csv").is_file():
        return None
    real = pd.read_csv(folder / "metrics_50epoch.csv")
    quantiles = real.groupby(["source", "epoch"])[["start", "max"]].quantile([0.05, 0.5, 0.95]).unstack()
    quantiles.columns = [f"{metric}_p{round(q * 100):02d}" for metric, q in quantiles.columns]
    out = quantiles.reset_index()
    null_path = folder / "metrics_null_50epoch.csv"
    if null_path.is_file():
        null = pd.read_csv(null_path).groupby(["source", "epoch"])["start"].median().rename("null_start_p50")
        out = out.merge(null.reset_index(), on=["source", "epoch"], how="left")
    return out


def default_performance_csv() -> Path:
    """``../shared/reference/jiang_dale_2025/performance.csv`` beside the repository."""
    return default_reference_dir() / "performance.csv"


def authors_performance(path=None) -> pd.DataFrame | None:
    """The authors' figures per data source x epochs from performance.csv, or None when the file is absent.

    Their ``aug_train_data`` is the training set after oversampling (train +
    validation); ``n_train`` here is its 80% train split, comparable with ours.
    """
    path = Path(path) if path is not None else default_performance_csv()
    if not path.is_file():
        return None
    perf = pd.read_csv(path)
    needed = {"source", "epochs", "class_a", "class_b", "aug_train_data", "updates_per_epoch", "test_accuracy"}
    missing = needed - set(perf.columns)
    if missing:
        raise ValueError(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
    perf = perf.assign(pair=perf["class_a"].astype(str) + "/" + perf["class_b"].astype(str))
    rows = []
    for (source, epochs), g in perf.groupby(["source", "epochs"], sort=True):
        rows.append(
            {
                "source": source,
                "epochs": int(epochs),
                "runs": len(g),
                "pairs": g["pair"].nunique(),
                "median_n_train": float(np.floor(0.8 * g["aug_train_data"].median())),
                "min_updates_per_epoch": int(g["updates_per_epoch"].min()),
                "median_updates_per_epoch": float(g["updates_per_epoch"].median()),
                "median_test_accuracy": float(g["test_accuracy"].median()),
                "share_pairs_ge_070": _pair_share(g, "test_accuracy", ["pair"]),
            }
        )
    return pd.DataFrame(rows)


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.0f}" if float(value).is_integer() and abs(value) >= 10 else f"{value:.{digits}f}"
    return str(value)


def _text_table(frame: pd.DataFrame) -> str:
    cells = [[str(c) for c in frame.columns]] + [[_fmt(v) for v in row] for row in frame.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells)


def _reference_note(authors: pd.DataFrame | None, path) -> str:
    if authors is None:
        where = Path(path) if path is not None else default_performance_csv()
        return f"authors' performance.csv not found at {where}: their figures are not shown"
    return "authors: Jiang & Dale (2025), performance.csv (n_train = 80% of their oversampled training set)"


def regime_reference(summary: pd.DataFrame, reference_dir=None) -> pd.DataFrame | None:
    """The authors' regime figures beside ours, per data source: start at epoch 1 and max at the epoch our
    runs ended (5th / 50th / 95th percentiles over their runs), their null runs' median start at epoch 1."""
    regime = authors_regime(reference_dir)
    if regime is None or summary.empty:
        return None
    rows = []
    for source, g in summary.groupby("source", sort=True):
        epochs = int(g["epochs"].max())
        first = regime[(regime["source"] == source) & (regime["epoch"] == 1)]
        last = regime[(regime["source"] == source) & (regime["epoch"] == min(epochs, int(regime["epoch"].max())))]
        if first.empty or last.empty:
            continue
        first, last = first.iloc[0], last.iloc[0]
        row = {"source": source, **{f"start_epoch1_{q}": first[f"start_{q}"] for q in ("p05", "p50", "p95")}}
        row["at_epoch"] = int(last["epoch"])
        row.update({f"max_{q}": last[f"max_{q}"] for q in ("p05", "p50", "p95")})
        row["null_start_epoch1_p50"] = first.get("null_start_p50", np.nan)
        rows.append(row)
    return pd.DataFrame(rows) if rows else None


def _regime_rule() -> str:
    return (
        f"probe regime: real labels, median start at epoch 1 inside the authors' 5th-95th percentile band and "
        f"median max at the last epoch < {REGIME['max_ceiling']}; shuffled labels, median start at epoch 1 <= "
        f"{REGIME['null_chance'] + REGIME['null_margin']:.2f} (chance for distinct states {REGIME['null_chance']} "
        f"+ {REGIME['null_margin']}; oversampled rows whose twin is in the training set score 1 under any labels: "
        f"train_repeated_share); collapsed = final train accuracy more than {COLLAPSE_DROP} below its best"
    )


def format_health(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    authors: pd.DataFrame | None,
    performance_csv=None,
    per_run: bool = False,
    reference_dir=None,
) -> str:
    """The health tables as plain text (``python -m analysis.health``)."""
    if runs.empty:
        return "training health: no done runs with a learning-curve map"
    bar = ", ".join(f"{k} >= {v}" for k, v in ACCEPTANCE.items())
    parts = [
        f"training health (bar per data source, real labels: {bar}; pairs: median test accuracy >= {PAIR_FLOOR})",
        _regime_rule(),
        _text_table(summary.drop(columns=["study"]) if summary["study"].nunique() == 1 else summary),
    ]
    parts.append(_reference_note(authors, performance_csv))
    if authors is not None:
        parts.append(_text_table(authors))
    reference = regime_reference(summary, reference_dir)
    if reference is not None:
        parts += ["authors' regime figures (their metric tables)", _text_table(reference)]
    if per_run:
        parts.append(_text_table(runs.drop(columns=["study", "run_id", "pair_index"])))
    return "\n\n".join(parts)


def health_section(collection: Collection, performance_csv=None) -> dict:
    """The report's section: {"title", "html", "tables": {"health_runs", "health_summary", "health_authors"}}."""
    runs, skipped = health_from_collection(collection)
    reference_dir = Path(performance_csv).parent if performance_csv is not None else None
    summary = health_summary(runs, reference_dir)
    authors = authors_performance(performance_csv)
    reference = regime_reference(summary, reference_dir)
    tables = {"health_runs": runs, "health_summary": summary}
    if authors is not None:
        tables["health_authors"] = authors
    if reference is not None:
        tables["health_authors_regime"] = reference
    html = render(
        "report_health.html.j2",
        bar=[(k.replace("_", " "), v) for k, v in ACCEPTANCE.items()],
        pair_floor=PAIR_FLOOR,
        regime_rule=_regime_rule(),
        # one study: its name in every row says nothing, and the table must fit the page
        summary=None
        if runs.empty
        else _html_table(summary.drop(columns=["study"]) if summary["study"].nunique() == 1 else summary),
        reference_note=_reference_note(authors, performance_csv),
        authors=None if authors is None else _html_table(authors),
        regime=None if reference is None else _html_table(reference),
        skipped=[f"{Path(p).name}: {r}" for p, r in skipped],
    )
    return {"title": "Training health", "html": Markup(html), "tables": tables}


def _html_table(frame: pd.DataFrame) -> Markup:
    # the report's tables: numbers by column kind (counts as integers), headers that wrap to fit the page
    return html_table(frame)


def main(argv: list[str] | None = None) -> int:
    """``python -m analysis.health``: the training-health tables of the done runs under an outputs root."""
    parser = argparse.ArgumentParser(
        prog="python -m analysis.health",
        description="Training health per data source: updates per epoch, test accuracy and map movement of "
        "the done runs, beside the authors' figures.",
    )
    parser.add_argument(
        "--root",
        default=os.environ.get("LCM_OUTPUTS", "outputs"),
        help="outputs root (paths.root of the runs; default: $LCM_OUTPUTS or ./outputs)",
    )
    parser.add_argument("--study", default=None, help="only this study (default: every study under the root)")
    parser.add_argument("--json", action="store_true", help="print the tables as JSON")
    parser.add_argument("--per-run", action="store_true", help="one row per done run as well")
    parser.add_argument(
        "--performance-csv",
        default=None,
        help="the authors' performance.csv (default: ../shared/reference/jiang_dale_2025/performance.csv "
        "beside the repository)",
    )
    args = parser.parse_args(argv)
    try:
        runs, _ = health_table(Path(args.root).expanduser(), args.study)
    except NoRunsFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # the authors' metric tables sit beside their performance.csv
    reference_dir = Path(args.performance_csv).parent if args.performance_csv else None
    summary = health_summary(runs, reference_dir)
    authors = authors_performance(args.performance_csv)
    if args.json:
        reference = regime_reference(summary, reference_dir)
        records = {
            "summary": json.loads(summary.to_json(orient="records")),
            "authors": None if authors is None else json.loads(authors.to_json(orient="records")),
            "authors_regime": None if reference is None else json.loads(reference.to_json(orient="records")),
            "runs": json.loads(runs.to_json(orient="records")) if args.per_run else None,
        }
        print(json.dumps(records, indent=2))
    else:
        print(format_health(runs, summary, authors, args.performance_csv, args.per_run, reference_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
