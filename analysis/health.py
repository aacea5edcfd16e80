"""Training health: did the runs train in the study's regime, and did their learning-curve maps move?

Per done run: updates per epoch, training-set size, test accuracy and map movement; per data
source: medians and the share of class pairs at test accuracy >= 0.70, beside the authors'
``performance.csv``. The report's section reuses the analysis' collection (``health_section``);
``python -m pipeline.status --health`` reads the run folders itself (``health_table``). Torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.schema import CONFIG, STATUS, SUMMARY

from .collect import Collection, RunReadError, find_run_dirs, read_run
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
]

# Issue 11's acceptance, per data source: median test accuracy, share of class
# pairs at or above PAIR_FLOOR, median map movement.
ACCEPTANCE = {"median_test_accuracy": 0.80, "share_pairs_ge_070": 0.80, "median_map_movement": 0.08}
PAIR_FLOOR = 0.70

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


def map_movement(learning_curve_map: np.ndarray) -> float:
    """Mean over time slices of |map[last epoch] - map[epoch 1]| (map: epochs x time slices)."""
    m = np.asarray(learning_curve_map, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 1:
        raise ValueError(f"a learning-curve map is epochs x time slices, got shape {m.shape}")
    return float(np.mean(np.abs(m[-1] - m[0])))


def run_health(run_dir) -> dict:
    """One done run's health row; RunReadError when its records cannot be used."""
    run_dir = Path(run_dir)
    info, lc_map = read_run(run_dir)
    return _health_row(run_dir, info, lc_map)


def _health_row(run_dir: Path, info: dict, lc_map: np.ndarray) -> dict:
    """The row from the run's design and map (read already) and its summary.json."""
    try:
        summary = json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError) as exc:
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
        "seconds_total": summary.get("seconds_total"),
    }


def _config(run_dir: Path) -> dict:
    import yaml  # pyyaml comes with omegaconf

    try:
        return yaml.safe_load((run_dir / CONFIG).read_text()) or {}
    except Exception:
        return {}


def _frame(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=RUN_COLUMNS)
    for col in ("n_train", "batch_size", "updates_per_epoch", "test_accuracy", "map_movement", "seconds_total"):
        table[col] = pd.to_numeric(table[col], errors="coerce")
    return table.sort_values(["study", "source", "labels", "pair_index", "replicate"], ignore_index=True)


def health_table(root, study: str | None = None) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """(one row per done run, [(run folder, reason)] for done runs that could not be read), from the run folders."""
    rows, skipped = [], []
    for study_name, run_dir in find_run_dirs(root, study):
        try:
            status = json.loads((run_dir / STATUS).read_text())
        except (OSError, ValueError):
            continue
        if status.get("state") != "done":
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


def health_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per study x data source x labels: medians, the pair share, and whether issue 11's bar is met."""
    columns = [
        "study",
        "source",
        "labels",
        "dataset",
        "runs",
        "pairs",
        "median_n_train",
        "min_updates_per_epoch",
        "median_updates_per_epoch",
        "median_test_accuracy",
        "share_pairs_ge_070",
        "median_map_movement",
        "median_seconds",
        "meets_bar",
    ]
    rows = []
    for (study, source, labels), g in runs.groupby(["study", "source", "labels"], sort=True):
        row = {
            "study": study,
            "source": source,
            "labels": labels,
            "dataset": ",".join(sorted(set(g["dataset"].astype(str)))),
            "runs": len(g),
            "pairs": g["pair"].nunique(),
            "median_n_train": g["n_train"].median(),
            "min_updates_per_epoch": g["updates_per_epoch"].min(),
            "median_updates_per_epoch": g["updates_per_epoch"].median(),
            "median_test_accuracy": g["test_accuracy"].median(),
            "share_pairs_ge_070": _pair_share(g, "test_accuracy", ["pair"]),
            "median_map_movement": g["map_movement"].median(),
            "median_seconds": g["seconds_total"].median(),
        }
        row["meets_bar"] = bool(labels == "real" and all(row[k] >= v for k, v in ACCEPTANCE.items()))
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def default_performance_csv() -> Path:
    """``../shared/reference/jiang_dale_2025/performance.csv`` beside the repository."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "jiang_dale_2025" / "performance.csv"


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


def format_health(
    runs: pd.DataFrame, summary: pd.DataFrame, authors: pd.DataFrame | None, performance_csv=None, per_run: bool = False
) -> str:
    """The health tables as plain text (``python -m pipeline.status --health``)."""
    if runs.empty:
        return "training health: no done runs with a learning-curve map"
    bar = ", ".join(f"{k} >= {v}" for k, v in ACCEPTANCE.items())
    parts = [
        f"training health (bar per data source, real labels: {bar}; pairs: median test accuracy >= {PAIR_FLOOR})",
        _text_table(summary.drop(columns=["study"]) if summary["study"].nunique() == 1 else summary),
    ]
    parts.append(_reference_note(authors, performance_csv))
    if authors is not None:
        parts.append(_text_table(authors))
    if per_run:
        parts.append(_text_table(runs.drop(columns=["study", "run_id", "pair_index"])))
    return "\n\n".join(parts)


def health_section(collection: Collection, performance_csv=None) -> dict:
    """The report's section: {"title", "html", "tables": {"health_runs", "health_summary", "health_authors"}}."""
    runs, skipped = health_from_collection(collection)
    summary = health_summary(runs)
    authors = authors_performance(performance_csv)
    tables = {"health_runs": runs, "health_summary": summary}
    if authors is not None:
        tables["health_authors"] = authors
    html = render(
        "report_health.html.j2",
        bar=[(k.replace("_", " "), v) for k, v in ACCEPTANCE.items()],
        pair_floor=PAIR_FLOOR,
        summary=None if runs.empty else _html_table(summary),
        reference_note=_reference_note(authors, performance_csv),
        authors=None if authors is None else _html_table(authors),
        skipped=[f"{Path(p).name}: {r}" for p, r in skipped],
    )
    return {"title": "Training health", "html": Markup(html), "tables": tables}


def _html_table(frame: pd.DataFrame) -> Markup:
    # the report's tables: numbers by column kind (counts as integers), headers that wrap to fit the page
    return html_table(frame)
