"""Read run folders into a tidy metrics table and learning-curve maps, with a cache.

Only done runs are used; every other folder, and every done run whose records cannot be read, is
skipped and listed with its reason (``Collection.skipped``). Class pairs are labelled
``"<class a>/<class b>"``; runs of different KNN tie rules or settings are never pooled
(``MixedConditions``). The cache (``<out>/.cache/``, ``_Cache``) re-reads a run only when its
fingerprint changes. Details: docs/analysis.md ("Input")."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config_schema import DESIGN_BLOCK, FACTOR, PER_SOURCE, PROBE_RULE, rule_of, with_analysis
from pipeline.curve_metrics import map_metrics
from pipeline.identity import semantic_view
from pipeline.runfolder import (
    MAX_RECORD_BYTES,
    MAX_STATUS_BYTES,
    NotReadable,
    atomic_write_bytes,
    atomic_write_parquet,
    atomic_write_text,
    damage,
    file_digest,
    is_link,
    read_entry,
    read_text_entry,
)
from pipeline.schema import (
    CONFIG,
    CURVE_COLUMNS,
    CURVES,
    DONE,
    KNN,
    KNN_MODES,
    KNN_TIE_RULES,
    KNN_TIE_SHARE,
    LEGACY_KNN_MODE,
    LEGACY_KNN_TIES,
    STATUS,
    TRAIN,
    has_runs,
    iter_run_folders,
    runs_folder,
    study_folder,
    study_folders,
)

from .tables import finish_metrics_table

__all__ = [
    "NoRunsFound",
    "SkippedRun",
    "Collection",
    "find_run_dirs",
    "read_run",
    "collect_runs",
    "RunReadError",
    "MixedConditions",
]

CACHE_VERSION = 7  # 2: knn_ties, knn_mode and has_tie_share columns, tie-share maps; 3: condition columns;
# 4: the batch size is compared per data source; 5: fingerprints of content (status.json's checksums), not mtimes;
# 6: the model column (an architecture study's factor); 7: conditions judged on the run id's view of the config
# (pipeline/config_schema.py's registry: a switched-off probe or a speed-only key is no condition)
_RUN_COLUMNS = [
    "study",
    "run_id",
    "path",
    "fingerprint",
    "source",
    "labels",
    "model",
    "pair",
    "pair_index",
    "class_a",
    "class_b",
    "replicate",
    "knn_ties",
    "knn_mode",
    "knn_rule_recorded",
    "has_tie_share",
    "n_epochs",
    "n_slices",
    "shape",
    "map_row",
    "condition",
    "dataset_condition",
    "model_condition",
]


class NoRunsFound(RuntimeError):
    """No run folders where the analysis looked (the message says where and what to do)."""


class RunReadError(RuntimeError):
    """A done run whose records cannot be used (the message is the reason)."""


class MixedConditions(RuntimeError):
    """Done runs whose settings differ beyond the design factors (data source, class pair, replicate, labels):
    different KNN tie rules or modes, learning rates, epochs, ... (the message gives the counts and the way out)."""


@dataclass(frozen=True)
class SkippedRun:
    study: str
    run_id: str
    path: str
    reason: str


@dataclass
class Collection:
    """The done runs found: one row per run, their maps, the metrics table, what was skipped."""

    runs: pd.DataFrame
    maps: dict[str, np.ndarray]
    metrics: pd.DataFrame
    skipped: list[SkippedRun]
    # per map shape, the share of training samples whose KNN neighbour set ties
    # decided (rows as ``maps``; NaN for runs recorded without it)
    tie_maps: dict[str, np.ndarray] = field(default_factory=dict)
    n_read: int = 0
    n_cached: int = 0
    seconds: float = 0.0
    seconds_metrics: float = 0.0
    notes: list[str] = field(default_factory=list)

    def models(self) -> list[str]:
        """The models of the runs (several in an architecture study)."""
        return sorted(self.runs["model"].unique()) if len(self.runs) else []

    def of_model(self, model: str) -> Collection:
        """The runs of one model, their maps (the same arrays: rows keep their map_row) and metrics."""
        keep = self.runs["model"] == model
        runs = self.runs[keep].reset_index(drop=True)
        metrics = self.metrics[self.metrics["run_id"].isin(set(runs["run_id"]))].reset_index(drop=True)
        return Collection(
            runs,
            self.maps,
            metrics,
            self.skipped,
            self.tie_maps,
            self.n_read,
            self.n_cached,
            self.seconds,
            self.seconds_metrics,
            list(self.notes),
        )

    def skipped_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(s) for s in self.skipped], columns=["study", "run_id", "path", "reason"])

    def mean_maps(self) -> pd.DataFrame:
        """Mean learning-curve map over replicates per source x labels x pair (and map shape).

        Returns a frame with ``source, labels, pair, pair_index, n_runs, map``
        (``map`` an epochs x time slices array).
        """
        rows = []
        if self.runs.empty:
            return pd.DataFrame(columns=["source", "labels", "pair", "pair_index", "n_runs", "map"])
        keys = ["source", "labels", "pair", "shape"]
        for (source, labels, pair, shape), group in self.runs.groupby(keys, sort=True):
            stack = self.maps[shape][group["map_row"].to_numpy()]
            rows.append(
                {
                    "source": source,
                    "labels": labels,
                    "pair": pair,
                    "pair_index": int(group["pair_index"].iloc[0]),
                    "shape": shape,
                    "n_runs": len(group),
                    "map": stack.mean(axis=0),
                }
            )
        return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# Finding and reading runs
# ---------------------------------------------------------------------------


def _not_lcm_study(study_dir: Path, sample: int = 3) -> str | None:
    """Why a study's runs have no learning-curve maps (None when they do, or when it cannot tell).

    Judged on the first run configs that have a design block: runs of the
    sequence studies carry ``design.data_source`` and ``design.pair``; the
    companion studies (critical periods, dense sample, multitask) do not. A
    study is left out only when ``sample`` such configs all lack them (or all
    there are); damaged configs are not counted (those runs are skipped and
    listed one by one instead).
    """
    import yaml

    reason, seen = None, 0
    for run_dir in sorted(iter_run_folders(study_dir)):
        try:
            config = yaml.safe_load(read_text_entry(run_dir, CONFIG))
        except Exception:
            continue
        design = config.get("design") if isinstance(config, dict) else None
        if not isinstance(design, dict):
            continue
        if "data_source" in design and "pair" in design:
            return None
        study = config.get("study") if isinstance(config.get("study"), dict) else {}
        reason = f"its runs have no data source x class pair design (runner {study.get('runner') or 'unknown'})"
        seen += 1
        if seen >= sample:
            break
    return reason


def find_run_dirs(root, study: str | None = None, notes: list[str] | None = None) -> list[tuple[str, Path]]:
    """(study name, run folder) for every folder under ``<root>/<study>/runs/``.

    Without ``study``, studies whose runs are not learning-curve-map runs (the
    companion studies) are left out and said so in ``notes``.
    """
    root = Path(root)
    hint = (
        "Run the pipeline first (`make run` or `python -m pipeline`), point --root at its outputs root "
        "(paths.root, $LCM_OUTPUTS), or analyse an existing metrics table with --metrics-table PATH --out DIR."
    )
    if not root.is_dir():
        raise NoRunsFound(f"No runs found: the outputs root {root.resolve()} does not exist. {hint}")
    if study is not None:
        studies = [study_folder(root, study)]
        if not has_runs(studies[0]):
            raise NoRunsFound(
                f"No runs found: {runs_folder(studies[0]).resolve()} does not exist (study {study!r}). {hint}"
            )
        reason = _not_lcm_study(studies[0])
        if reason:
            raise NoRunsFound(f"Study {study!r} has no learning-curve maps to analyse: {reason}.")
    else:
        studies = []
        # dot-folders are bookkeeping (Hydra's .hydra, caches), never a study
        for p in study_folders(root):
            reason = _not_lcm_study(p)
            if reason:
                if notes is not None:
                    notes.append(f"Study {p.name!r} left out: {reason}.")
            else:
                studies.append(p)
    found: list[tuple[str, Path]] = []
    for s in studies:
        # links too (never followed: the collection lists them as skipped, with where they lead)
        found.extend((s.name, run_dir) for run_dir in sorted(iter_run_folders(s, links=True)))
    if not found:
        where = runs_folder(study_folder(root, study)) if study else runs_folder(root / "*")
        extra = f" ({'; '.join(notes)})" if notes else ""
        raise NoRunsFound(
            f"No runs found: no learning-curve-map run folders under {Path(where).resolve()}/{extra}. {hint}"
        )
    return found


def run_state(run_dir: Path) -> tuple[str, str, dict]:
    """(state, fingerprint, status) of a run folder; state is "done", "running", ... or a reason it is
    unreadable. The fingerprint is of content: status.json holds the size and SHA-256 of every record
    file, which ``damage`` checks against the files on each collection; a record from before status.json
    listed its files adds the digests of its config and curves."""
    try:
        raw, _ = read_entry(run_dir, STATUS, MAX_STATUS_BYTES)
    except FileNotFoundError:
        return "no status.json (not a finished run)", "", {}
    except (NotReadable, OSError) as exc:
        return f"status.json unreadable ({exc})", "", {}
    try:
        status = json.loads(raw)
        state = str(status.get("state"))
    except (ValueError, AttributeError) as exc:
        return f"status.json unreadable ({type(exc).__name__})", "", {}
    digest = hashlib.sha1(raw)
    if state == DONE and status.get("files") is None:
        for name in (CONFIG, CURVES):
            try:
                digest.update(file_digest(run_dir / name)["sha256"].encode())
            except (NotReadable, OSError):
                digest.update(b"unreadable")
    return state, digest.hexdigest(), status


def _not_this_run(run_dir: Path, status: dict, seen_ids: dict[str, str]) -> str | None:
    """Why a done folder is not read as a run of its own: a folder whose name is not the run id its
    status.json records (a copy), or a run id already counted."""
    recorded = status.get("run_id")
    if recorded is not None and str(recorded) != run_dir.name:
        return f"folder name differs from the run id its status.json records ({recorded}): a copy? not counted"
    if run_dir.name in seen_ids:
        return f"duplicate of run {run_dir.name} at {seen_ids[run_dir.name]}: counted once"
    seen_ids[run_dir.name] = str(run_dir)
    return None


def _link_reason(run_dir: Path, real_root: Path) -> str:
    """Why a symbolic link in runs/ is not read (never followed; said where it leads)."""
    try:
        real = run_dir.resolve(strict=True)
    except (OSError, RuntimeError):
        return "a symbolic link that leads nowhere (or to itself): not read"
    if real_root not in real.parents:
        return f"the folder leads outside the outputs root (to {real}): not read"
    return f"a symbolic link (to {real}), not a run folder: not read"


def _design(run_dir: Path) -> dict:
    import yaml  # pyyaml comes with omegaconf

    try:
        config = yaml.safe_load(read_text_entry(run_dir, CONFIG))
    except FileNotFoundError:
        raise RunReadError("config.yaml missing") from None
    except NotReadable as exc:
        raise RunReadError(str(exc)) from None
    except Exception as exc:
        raise RunReadError(f"config.yaml unreadable ({type(exc).__name__})") from None
    if not isinstance(config, dict) or not isinstance(config.get("design"), dict):
        raise RunReadError("config.yaml has no design block")
    design = config["design"]
    missing = [k for k in ("data_source", "pair", "replicate", "labels") if design.get(k) is None]
    if missing:
        raise RunReadError(f"config.yaml design block lacks {', '.join(missing)}")
    try:
        pair_index = int(design["pair"])
        replicate = int(design["replicate"])
    except (TypeError, ValueError):
        raise RunReadError("config.yaml design.pair / design.replicate are not integers") from None
    names = design.get("class_names")
    class_a = class_b = None
    if isinstance(names, (list, tuple)) and len(names) == 2:
        class_a, class_b = str(names[0]), str(names[1])
    elif isinstance(names, (list, tuple)) and len(names) > 2:
        combos = list(itertools.combinations(range(len(names)), 2))
        if 0 <= pair_index < len(combos):
            class_a, class_b = str(names[combos[pair_index][0]]), str(names[combos[pair_index][1]])
    pair = f"{class_a}/{class_b}" if class_a is not None else f"pair{pair_index:02d}"
    return {
        "source": str(design["data_source"]),
        "labels": str(design["labels"]),
        "model": model_of(config),
        "pair": pair,
        "pair_index": pair_index,
        "class_a": class_a or "",
        "class_b": class_b or "",
        "replicate": replicate,
        **_knn_rule(config),
        **_condition(config),
    }


def _flat(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def model_of(config: dict) -> str:
    """The model of a run's config.yaml: its design's level where the model is a factor of the study, else
    ``model.name`` (a user's module: its label, else its ``_target_``)."""
    design = config.get("design") or {}
    if design.get("model") is not None:
        return str(design["model"])
    model = config.get("model")
    model = model if isinstance(model, dict) else {}
    return str(model.get("name") or model.get("_target_") or "lstm")


def _model_is_factor(config: dict) -> bool:
    study = config.get("study")
    return isinstance(study, dict) and "model" in (study.get("factors") or [])


def _condition(config: dict) -> dict:
    """The run's settings beyond the design factors, as canonical JSON (runs differing here are not pooled).

    What the run computed as its run id sees it (``pipeline.identity.semantic_view``: no plumbing, no
    switched-off probe), without what the registry (pipeline/config_schema.py) marks for the analysis: the
    design factors it models (data source, labels; pooled studies are noted), the KNN probe's rule (compared
    on its own, with its own options), and what each data source sets for itself (its data set, its batch
    size: compared within the source, ``dataset_condition``). Where the model is a factor of the study
    (study=architectures), its settings are compared within each model (``model_condition``)."""
    view = semantic_view(config)
    view.pop(DESIGN_BLOCK, None)
    per_model = view.pop("model", None) if _model_is_factor(config) else None
    drop = {*with_analysis(FACTOR, top_level=True), *with_analysis(PER_SOURCE, top_level=True)}
    rest = {k: v for k, v in view.items() if k not in drop}
    flat = {k: v for k, v in _flat(rest).items() if rule_of(k).analysis != PROBE_RULE}
    per_source = {k: flat.pop(k) for k in sorted(flat) if rule_of(k).analysis == PER_SOURCE}
    per_source.update(_flat(view.get("dataset") or {}, "dataset."))
    return {
        "condition": json.dumps(flat, sort_keys=True, default=str),
        "dataset_condition": json.dumps(per_source, sort_keys=True, default=str),
        "model_condition": json.dumps(_flat(per_model or {}, "model."), sort_keys=True, default=str),
    }


def _knn_rule(config: dict) -> dict:
    """The KNN probe's tie rule and mode of a run's config (the legacy ones where the keys are absent)."""
    probe = config.get("probe")
    knn = probe.get("knn") if isinstance(probe, dict) else None
    knn = knn if isinstance(knn, dict) else {}
    ties, mode = knn.get("ties", LEGACY_KNN_TIES), knn.get("mode", LEGACY_KNN_MODE)
    if ties not in KNN_TIE_RULES or mode not in KNN_MODES:
        raise RunReadError(
            f"config.yaml probe.knn.ties={ties!r} / probe.knn.mode={mode!r}: unknown (allowed: "
            f"{', '.join(KNN_TIE_RULES)} / {', '.join(KNN_MODES)})"
        )
    return {"knn_ties": str(ties), "knn_mode": str(mode), "knn_rule_recorded": "ties" in knn and "mode" in knn}


def _learning_curve_map(run_dir: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The knn/train map (epochs x time slices) and the tie-share map of the same shape (None if not recorded)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        data, _ = read_entry(run_dir, CURVES, MAX_RECORD_BYTES)
    except FileNotFoundError:
        raise RunReadError("curves.parquet missing") from None
    except (NotReadable, OSError) as exc:
        raise RunReadError(f"curves.parquet unreadable ({exc})") from None
    try:
        table = pq.read_table(pa.BufferReader(data), columns=list(CURVE_COLUMNS))
    except Exception as exc:
        raise RunReadError(f"curves.parquet unreadable ({type(exc).__name__}: {str(exc)[:120]})") from None
    train = table.filter(pc.equal(table["split"], TRAIN))
    ties = train.filter(pc.equal(train["probe"], KNN_TIE_SHARE))
    table = train.filter(pc.equal(train["probe"], KNN))
    if table.num_rows == 0:
        raise RunReadError("curves.parquet has no knn/train rows (no learning-curve map)")
    epoch = table["epoch"].to_numpy().astype(np.int64)
    slices = table["time_slice"].to_numpy().astype(np.int64)
    value = table["value"].to_numpy(zero_copy_only=False).astype(np.float64)
    n_epochs, n_slices = int(epoch.max()), int(slices.max())
    if epoch.min() < 1 or slices.min() < 1:
        raise RunReadError("curves.parquet: epochs and time slices must start at 1")
    cell = (epoch - 1) * n_slices + (slices - 1)
    counts = np.bincount(cell, minlength=n_epochs * n_slices)
    if np.any(counts != 1):
        missing, doubled = int(np.sum(counts == 0)), int(np.sum(counts > 1))
        raise RunReadError(
            f"curves.parquet: the knn/train map ({n_epochs} epochs x {n_slices} time slices) has "
            f"{missing} missing and {doubled} duplicated cells"
        )
    if not np.all(np.isfinite(value)):
        raise RunReadError("curves.parquet: the knn/train map holds NaN or infinite values")
    out = np.empty(n_epochs * n_slices)
    out[cell] = value
    return out.reshape(n_epochs, n_slices), _tie_share_map(ties, n_epochs, n_slices)


def _tie_share_map(table, n_epochs: int, n_slices: int) -> np.ndarray | None:
    """A diagnostic: cells it does not cover (or covers outside the map) stay NaN rather than fail the run."""
    if table.num_rows == 0:
        return None
    epoch = table["epoch"].to_numpy().astype(np.int64)
    slices = table["time_slice"].to_numpy().astype(np.int64)
    value = table["value"].to_numpy(zero_copy_only=False).astype(np.float64)
    inside = (epoch >= 1) & (epoch <= n_epochs) & (slices >= 1) & (slices <= n_slices)
    out = np.full(n_epochs * n_slices, np.nan)
    out[(epoch[inside] - 1) * n_slices + slices[inside] - 1] = value[inside]
    return out.reshape(n_epochs, n_slices)


def read_run(run_dir) -> tuple[dict, np.ndarray]:
    """The design of one run (with its KNN tie rule and mode) and its learning-curve map (epochs x time slices).

    RunReadError if unusable. ``read_run_with_ties`` also returns the tie-share map.
    """
    info, lc_map, _ = read_run_with_ties(run_dir)
    return info, lc_map


def read_run_with_ties(run_dir) -> tuple[dict, np.ndarray, np.ndarray | None]:
    run_dir = Path(run_dir)
    info = _design(run_dir)
    lc_map, tie_map = _learning_curve_map(run_dir)
    return info, lc_map, tie_map


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cache:
    """One generation of the cache folder, as ``_write_cache`` left it."""

    meta: dict
    runs: pd.DataFrame  # one row per done run used, with its fingerprint, shape and map_row
    maps: dict[str, np.ndarray]  # per map shape: the learning-curve maps, rows as runs' map_row
    metrics: pd.DataFrame | None
    failures: pd.DataFrame | None  # done runs that could not be read, with fingerprint and reason
    tie_maps: dict[str, np.ndarray]  # as maps: the KNN tie shares


def _load_cache(cache_dir: Path) -> _Cache | None:
    """The cache folder's current generation, or None (absent, another version, or damaged)."""
    meta_path = cache_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("version") != CACHE_VERSION:
            return None
        token = meta["token"]
        runs = pd.read_parquet(cache_dir / f"runs-{token}.parquet")
        maps = {shape: np.load(cache_dir / f"maps-{token}-{shape}.npy", allow_pickle=False) for shape in meta["shapes"]}
        tie_maps = {
            shape: np.load(cache_dir / f"ties-{token}-{shape}.npy", allow_pickle=False) for shape in meta["shapes"]
        }
        metrics_path = cache_dir / f"metrics-{token}.parquet"
        metrics = pd.read_parquet(metrics_path) if metrics_path.is_file() else None
        failures_path = cache_dir / f"failures-{token}.parquet"
        failures = pd.read_parquet(failures_path) if failures_path.is_file() else None
        for shape, group in runs.groupby("shape"):
            if (
                shape not in maps
                or group["map_row"].max() >= len(maps[shape])
                or tie_maps[shape].shape != maps[shape].shape
            ):
                return None
        return _Cache(meta, runs, maps, metrics, failures, tie_maps)
    except Exception:  # no cache or a damaged one: read the runs again
        return None


def _write_cache(
    cache_dir: Path,
    runs: pd.DataFrame,
    maps: dict[str, np.ndarray],
    metrics: pd.DataFrame,
    smooth: bool,
    failures: pd.DataFrame,
    tie_maps: dict[str, np.ndarray],
) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    for kind, arrays in (("maps", maps), ("ties", tie_maps)):
        for shape, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
            atomic_write_bytes(cache_dir / f"{kind}-{token}-{shape}.npy", buffer.getvalue())
    atomic_write_parquet(cache_dir / f"runs-{token}.parquet", runs)
    atomic_write_parquet(cache_dir / f"metrics-{token}.parquet", metrics)
    atomic_write_parquet(cache_dir / f"failures-{token}.parquet", failures)
    meta = {
        "version": CACHE_VERSION,
        "token": token,
        "smooth": smooth,
        "shapes": sorted(maps),
        "n_runs": int(len(runs)),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_text(cache_dir / "meta.json", json.dumps(meta, indent=1))
    for old in cache_dir.iterdir():  # earlier generations
        if old.name != "meta.json" and token not in old.name and old.suffix in (".npy", ".parquet"):
            try:
                old.unlink()
            except OSError:
                pass


# ---------------------------------------------------------------------------
# Metrics table from maps
# ---------------------------------------------------------------------------


def _metrics_table(runs: pd.DataFrame, maps: dict[str, np.ndarray], smooth: bool) -> pd.DataFrame:
    frames = []
    run_columns = [
        "study",
        "run_id",
        "source",
        "labels",
        "model",
        "pair",
        "pair_index",
        "class_a",
        "class_b",
        "replicate",
        "n_slices",
    ]
    for shape, group in runs.groupby("shape", sort=True):
        stack = maps[shape][group["map_row"].to_numpy()]
        n_runs, n_epochs, _ = stack.shape
        m = map_metrics(stack, smooth=smooth)
        block = group[run_columns].loc[group.index.repeat(n_epochs)].reset_index(drop=True)
        block.insert(block.columns.get_loc("replicate") + 1, "epoch", np.tile(np.arange(1, n_epochs + 1), n_runs))
        for name, values in m.as_dict().items():
            block[name] = values.reshape(-1)
        frames.append(block)
    if not frames:
        return pd.DataFrame(columns=run_columns + ["epoch", "start", "end", "end_minus_start", "max", "tmax"])
    table = pd.concat(frames, ignore_index=True)
    table = table.sort_values(
        ["study", "source", "labels", "pair_index", "replicate", "run_id", "epoch"], kind="stable"
    ).reset_index(drop=True)
    cols = [
        "study",
        "run_id",
        "source",
        "labels",
        "model",
        "pair",
        "pair_index",
        "class_a",
        "class_b",
        "replicate",
        "epoch",
        "n_slices",
        "start",
        "end",
        "end_minus_start",
        "max",
        "tmax",
    ]
    return table[cols]


# ---------------------------------------------------------------------------
# The whole collection
# ---------------------------------------------------------------------------


@dataclass
class _Looked:
    """What one entry of runs/ gave: a usable done run's record, or the reason it is skipped."""

    record: dict | None = None
    reason: str = ""
    fingerprint: str = ""  # set for a done run whose records cannot be used (remembered in the cache)
    from_cache: bool = False


def _look_at(study_name, run_dir, real_root, seen_ids, cached, cached_index, cached_failures) -> _Looked:
    """Read one run folder, or reuse its cached map when its content is unchanged.

    Every done run's record files are checked against the sizes and SHA-256 that status.json lists,
    cached or not, so that a file changed since (its mtime restored or not) is skipped as damaged, as
    ``python -m pipeline.status`` and ``--no-cache`` say."""
    if is_link(run_dir):
        return _Looked(reason=_link_reason(run_dir, real_root))
    state, fingerprint, status = run_state(run_dir)
    if state != DONE:
        return _Looked(reason=state if not fingerprint else f"status is {state!r}, not done")
    why = _not_this_run(run_dir, status, seen_ids)
    if why:
        return _Looked(reason=why)
    damaged = damage(run_dir, status)
    if damaged:
        return _Looked(reason=f"damaged record: {damaged}")
    key = (study_name, run_dir.name)
    failed = cached_failures.get(key)
    if failed is not None and failed[0] == fingerprint:
        return _Looked(reason=failed[1], fingerprint=fingerprint, from_cache=True)
    hit = cached_index.get(key)
    if hit is not None and hit["fingerprint"] == fingerprint:
        assert cached is not None  # hits come from the cache
        record = dict(hit)
        record["path"] = str(run_dir)
        record["_map"] = cached.maps[hit["shape"]][hit["map_row"]]
        record["_ties"] = cached.tie_maps[hit["shape"]][hit["map_row"]]
        return _Looked(record=record, from_cache=True)
    try:
        info, lc_map, tie_map = read_run_with_ties(run_dir)
    except RunReadError as exc:
        return _Looked(reason=str(exc), fingerprint=fingerprint)
    record = {
        "study": study_name,
        "run_id": run_dir.name,
        "path": str(run_dir),
        "fingerprint": fingerprint,
        **info,
        "has_tie_share": tie_map is not None,
        "n_epochs": lc_map.shape[0],
        "n_slices": lc_map.shape[1],
        "shape": f"{lc_map.shape[0]}x{lc_map.shape[1]}",
        "_map": lc_map,
        "_ties": tie_map if tie_map is not None else np.full(lc_map.shape, np.nan),
    }
    return _Looked(record=record)


def _say(enabled: bool, text: str) -> None:
    if enabled:
        print(f"[analysis] {text}", file=sys.stderr, flush=True)


def collect_runs(
    root,
    study: str | None = None,
    cache_dir=None,
    smooth: bool = True,
    use_cache: bool = True,
    progress: bool = True,
    progress_every: int = 100,
    knn_ties: str | None = None,
    knn_mode: str | None = None,
) -> Collection:
    """Find every done run under ``root`` (or one ``study``), read or reuse it, compute the metrics.

    ``knn_ties`` / ``knn_mode`` keep only the runs computed under that KNN tie
    rule / mode (the others are listed as skipped); without them, done runs of
    more than one rule or mode raise ``MixedConditions``.
    """
    for name, value, allowed in (("knn_ties", knn_ties, KNN_TIE_RULES), ("knn_mode", knn_mode, KNN_MODES)):
        if value is not None and value not in allowed:
            raise ValueError(f"{name}={value!r}: allowed values are {', '.join(allowed)}")
    t0 = time.perf_counter()
    study_notes: list[str] = []
    found = find_run_dirs(root, study, notes=study_notes)
    cache_dir = Path(cache_dir) if cache_dir is not None else None
    cached = _load_cache(cache_dir) if (cache_dir is not None and use_cache) else None
    cached_index: dict[tuple[str, str], dict] = {}
    cached_failures: dict[tuple[str, str], tuple[str, str]] = {}
    if cached is not None:
        for row in cached.runs.to_dict("records"):
            cached_index[(row["study"], row["run_id"])] = row
        if cached.failures is not None:
            for row in cached.failures.to_dict("records"):
                cached_failures[(row["study"], row["run_id"])] = (row["fingerprint"], row["reason"])

    skipped: list[SkippedRun] = []
    failures: list[dict] = []  # done runs that could not be read, remembered by fingerprint
    n_failed_read = 0
    records: list[dict] = []
    n_read = n_cached = 0
    last_report = time.perf_counter()
    real_root = Path(root).resolve()
    seen_ids: dict[str, str] = {}
    for i, (study_name, run_dir) in enumerate(found, 1):
        run_id = run_dir.name
        looked = _look_at(study_name, run_dir, real_root, seen_ids, cached, cached_index, cached_failures)
        if looked.record is None:
            skipped.append(SkippedRun(study_name, run_id, str(run_dir), looked.reason))
            if looked.fingerprint:  # a done run whose records cannot be used: remembered by its fingerprint
                failures.append(
                    {"study": study_name, "run_id": run_id, "fingerprint": looked.fingerprint, "reason": looked.reason}
                )
                n_failed_read += not looked.from_cache
            continue
        record = looked.record
        n_cached += looked.from_cache
        n_read += not looked.from_cache
        if (knn_ties or record["knn_ties"]) != record["knn_ties"] or (knn_mode or record["knn_mode"]) != record[
            "knn_mode"
        ]:
            skipped.append(
                SkippedRun(
                    study_name,
                    run_id,
                    str(run_dir),
                    f"probe.knn.ties={record['knn_ties']}, probe.knn.mode={record['knn_mode']} (not selected)",
                )
            )
            continue
        records.append(record)
        now = time.perf_counter()
        if progress and (i % progress_every == 0 or now - last_report > 5.0) and i < len(found):
            _say(
                True,
                f"runs: {i}/{len(found)} looked at ({n_read} read, {n_cached} from cache, "
                f"{len(skipped)} skipped) {now - t0:.1f} s",
            )
            last_report = now

    # stack the maps by shape, in run order
    _check_one_rule(records, knn_ties, knn_mode)
    _check_one_condition(records)
    maps: dict[str, list[np.ndarray]] = {}
    ties: dict[str, list[np.ndarray]] = {}
    for record in records:
        rows = maps.setdefault(record["shape"], [])
        record["map_row"] = len(rows)
        rows.append(record.pop("_map"))
        ties.setdefault(record["shape"], []).append(record.pop("_ties"))
    stacked = {shape: np.stack(rows).astype(np.float64, copy=False) for shape, rows in maps.items()}
    tie_maps = {shape: np.stack(rows).astype(np.float64, copy=False) for shape, rows in ties.items()}
    runs = pd.DataFrame(records, columns=_RUN_COLUMNS)
    if not runs.empty:
        runs["pair_index"] = runs["pair_index"].astype(np.int64)
        runs["replicate"] = runs["replicate"].astype(np.int64)
        runs["has_tie_share"] = runs["has_tie_share"].astype(bool)
        runs["knn_rule_recorded"] = runs["knn_rule_recorded"].astype(bool)

    unchanged = (
        cached is not None
        and n_read == 0
        and n_failed_read == 0
        and len(runs) == len(cached.runs)
        and len(failures) == (0 if cached.failures is None else len(cached.failures))
        and bool(cached.meta.get("smooth")) == bool(smooth)
        and cached.metrics is not None
    )
    t1 = time.perf_counter()
    if unchanged and cached is not None and cached.metrics is not None:
        metrics = cached.metrics
    else:
        metrics = _metrics_table(runs, stacked, smooth)
    seconds_metrics = time.perf_counter() - t1
    if cache_dir is not None and not unchanged and len(runs):
        try:
            _write_cache(
                cache_dir,
                runs,
                stacked,
                metrics,
                smooth,
                pd.DataFrame(failures, columns=["study", "run_id", "fingerprint", "reason"]),
                tie_maps,
            )
        except OSError as exc:
            _say(progress, f"could not write the cache in {cache_dir}: {exc}")
    studies = sorted(runs["study"].unique()) if len(runs) else []
    notes = list(study_notes)
    if len(studies) > 1:
        notes.append(
            f"The table pools {len(studies)} studies ({', '.join(studies)}); use --study NAME to analyse one of them."
        )
    if len(runs):
        notes.append(
            f"KNN probe: ties {runs['knn_ties'].iloc[0]}, mode {runs['knn_mode'].iloc[0]} (all {len(runs)} runs)."
        )
        legacy = int((~runs["knn_rule_recorded"]).sum())
        if legacy:
            notes.append(
                f"{legacy} run(s) have no probe.knn.ties / probe.knn.mode in config.yaml (recorded before "
                f"these keys existed): they were computed under {LEGACY_KNN_TIES} / {LEGACY_KNN_MODE} and are "
                "labelled so."
            )
        no_share = int((~runs["has_tie_share"]).sum())
        if no_share:
            notes.append(f"{no_share} run(s) have no {KNN_TIE_SHARE} rows in curves.parquet (no tie share for them).")
    _say(
        progress,
        f"runs: {len(found)} folders, {len(runs)} done runs used ({n_read} read, {n_cached} from cache), "
        f"{len(skipped)} skipped; {time.perf_counter() - t0:.1f} s",
    )
    return Collection(
        runs=runs,
        maps=stacked,
        metrics=metrics,
        skipped=skipped,
        n_read=n_read,
        n_cached=n_cached,
        seconds=time.perf_counter() - t0,
        seconds_metrics=seconds_metrics,
        notes=notes,
        tie_maps=tie_maps,
    )


def _check_one_rule(records: list[dict], knn_ties: str | None, knn_mode: str | None) -> None:
    """MixedConditions when the runs were computed under more than one KNN tie rule or mode (this setting
    has selection options of its own: --knn-ties, --knn-mode)."""
    counts: dict[tuple[str, str], int] = {}
    for record in records:
        key = (record["knn_ties"], record["knn_mode"])
        counts[key] = counts.get(key, 0) + 1
    if len(counts) <= 1:
        return
    listing = "; ".join(
        f"{n} run(s) under probe.knn.ties={t}, probe.knn.mode={m}" for (t, m), n in sorted(counts.items())
    )
    options = []
    if knn_ties is None and len({t for t, _ in counts}) > 1:
        options.append("--knn-ties RULE (" + ", ".join(sorted({t for t, _ in counts})) + ")")
    if knn_mode is None and len({m for _, m in counts}) > 1:
        options.append("--knn-mode MODE (" + ", ".join(sorted({m for _, m in counts})) + ")")
    raise MixedConditions(
        f"the done runs were computed under different KNN probe rules, whose maps are not "
        f"comparable: {listing}. Analyse one at a time with {' and '.join(options)}. Runs whose "
        f"config.yaml has no probe.knn.ties / mode were computed under {LEGACY_KNN_TIES} / "
        f"{LEGACY_KNN_MODE}."
    )


def _check_one_condition(records: list[dict]) -> None:
    """MixedConditions when the runs differ in a setting other than the design factors (``trainer.lr``,
    ``trainer.epochs``, ``model.hidden_size``, ...), or in their data set or batch size within one data
    source."""
    groups = (
        [("", lambda r: r["condition"], lambda r: True)]
        + [
            (f" (data source {source})", lambda r: r["dataset_condition"], lambda r, s=source: r["source"] == s)
            for source in sorted({r["source"] for r in records})
        ]
        + [
            (f" (model {model})", lambda r: r.get("model_condition", "{}"), lambda r, m=model: r["model"] == m)
            for model in sorted({r["model"] for r in records})
        ]
    )
    for where, key, member in groups:
        subset = [r for r in records if member(r)]
        by_value: dict[str, list[dict]] = {}
        for record in subset:
            by_value.setdefault(key(record), []).append(record)
        if len(by_value) <= 1:
            continue
        flats = [json.loads(value) for value in by_value]
        keys = sorted({k for f in flats for k in f if len({json.dumps(g.get(k), default=str) for g in flats}) > 1})
        listing = "; ".join(
            f"{len(runs)} run(s) with "
            + ", ".join(f"{k}={flat.get(k, '(absent)')}" for k in keys[:6])
            + f" (e.g. {runs[0]['study']}/{runs[0]['run_id']})"
            for flat, runs in zip(flats, by_value.values())
        )
        raise MixedConditions(
            f"the done runs{where} differ in settings beyond the design factors (data source, class pair, "
            f"replicate, labels), so their maps are not replicates of one condition: {listing}. Analyse each "
            f"condition apart: keep its runs under their own outputs root (paths.root) or study and pass --root / "
            f"--study."
        )


def metrics_for_statistics(collection: Collection) -> pd.DataFrame:
    """The collection's metrics table in the checked form the statistics use (adds ``run``)."""
    return finish_metrics_table(collection.metrics, origin="metrics from runs")
