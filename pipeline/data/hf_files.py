"""A text corpus as Hugging Face ``datasets`` leaves it on disk, read with pyarrow alone.

Three layouts hold one split's rows (``datasets`` itself is not needed to read them):

- a ``save_to_disk`` folder: ``dataset_dict.json`` (the split names) and ``<split>/state.json``, whose
  ``_data_files`` name the split's Arrow files; or a single split's folder (``state.json`` at the top);
- the ``datasets`` cache (``~/.cache/huggingface/datasets``, or ``cache_dir``): a folder per cached
  version holding ``dataset_info.json`` and ``<builder>-<split>[-NNNNN-of-NNNNN].arrow``;
- the Hub's download cache of a data set published as parquet
  (``~/.cache/huggingface/hub/datasets--<owner>--<name>/snapshots/<revision>/<config>/``):
  ``<split>-NNNNN-of-NNNNN.parquet``.

Arrow files of the first two are Arrow IPC streams. Each file's schema carries the data set's features
(metadata key ``huggingface``), so an integer label column is turned back into its class names there,
whatever order the names are in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# the txt files of the emotion corpus call the validation split "val", the Hub calls it "validation"
SPLIT_ALIASES = {"val": ("validation",), "validation": ("val",)}
_SHARD = r"(-\d{5}-of-\d{5})?"


class HfLayoutError(ValueError):
    """A folder laid out as ``datasets`` does, but without the split asked for, or with several copies."""


def _names(split: str) -> tuple[str, ...]:
    return (split, *SPLIT_ALIASES.get(split, ()))


def _saved_split_files(root: Path, split: str) -> list[Path] | None:
    """The Arrow files of ``split`` in a ``save_to_disk`` folder; None when ``root`` is not one."""
    if (root / "dataset_dict.json").is_file():
        listed = json.loads((root / "dataset_dict.json").read_text()).get("splits", [])
        name = next((n for n in _names(split) if n in listed), None)
        if name is None:
            raise HfLayoutError(f"{root} (a datasets save_to_disk folder) has no split {split!r}; it has {listed}")
        folder = root / name
    elif (root / "state.json").is_file():
        folder = root
    else:
        return None
    state = json.loads((folder / "state.json").read_text())
    if folder == root and state.get("_split") not in (None, *_names(split)):
        raise HfLayoutError(f"{root} (a datasets save_to_disk folder) holds split {state['_split']!r}, not {split!r}")
    files = [folder / entry["filename"] for entry in state.get("_data_files", [])]
    if not files:
        raise HfLayoutError(f"{folder / 'state.json'} lists no data files")
    return files


def _cached_split_files(root: Path, split: str) -> list[Path] | None:
    """The shards of ``split`` in a ``datasets`` cache or a Hub snapshot under ``root``; None when absent."""
    names = "|".join(re.escape(n) for n in _names(split))
    arrow = re.compile(rf"^.+-(?:{names}){_SHARD}\.arrow$")
    parquet = re.compile(rf"^(?:{names}){_SHARD}\.parquet$")
    folders: dict[Path, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        is_cached_arrow = arrow.match(path.name) and (path.parent / "dataset_info.json").is_file()
        if path.is_file() and (is_cached_arrow or parquet.match(path.name)):
            folders.setdefault(path.parent, []).append(path)
    if not folders:
        return None
    if len(folders) > 1:
        listing = "; ".join(str(f) for f in folders)
        raise HfLayoutError(
            f"{root} holds split {split!r} in {len(folders)} folders ({listing}): point dataset.root at the one "
            f"to read (the emotion corpus of the study is the config `split`, 16,000 training sentences)"
        )
    return next(iter(folders.values()))


def hf_split_files(root: Path, split: str) -> list[Path] | None:
    """The files of one split of a ``datasets`` layout under ``root``, or None when there is none."""
    files = _saved_split_files(root, split)
    return files if files is not None else _cached_split_files(root, split)


def _label_names(schema) -> list[str] | None:
    """The class names of the ``label`` column, from the features ``datasets`` stores in the schema."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw is None:
        return None
    info = json.loads(raw)
    features = (info.get("info") or info).get("features") or {}
    label = features.get("label") or {}
    return list(label["names"]) if "names" in label else None


def read_hf_table(path: Path):
    """A pyarrow Table of an Arrow IPC stream (``datasets``' files) or a parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.name.endswith(".parquet"):
        return pq.read_table(path)
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all()


def hf_rows(path: Path) -> Iterator[tuple[str, Any, str]]:
    """(text, label, where) of every row; an integer label becomes its class name when the file names them."""
    table = read_hf_table(path)
    missing = {"text", "label"} - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: no column(s) {sorted(missing)} (it has {table.column_names})")
    names = _label_names(table.schema)
    for i, (text, label) in enumerate(zip(table.column("text").to_pylist(), table.column("label").to_pylist())):
        if names is not None and isinstance(label, int) and 0 <= label < len(names):
            label = names[label]
        yield text, label, f"{path} row {i}"
