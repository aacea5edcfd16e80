"""Text helpers: torchtext's ``basic_english`` tokeniser (reimplemented), a
simple sentence splitter, and token sequences -> zero-padded embedding arrays."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

# torchtext.data.utils._basic_english_normalize, pattern for pattern, applied in
# this order after lower-casing. Note what it really does: an apostrophe becomes
# its own token ("don't" -> don ' t), double quotes are deleted, "." "," "("
# ")" "!" "?" become their own tokens, "<br />" ";" ":" become spaces; then the
# line is split on whitespace.
_BASIC_ENGLISH = [
    (re.compile(p), r)
    for p, r in [
        (r"\'", " '  "),
        (r"\"", ""),
        (r"\.", " . "),
        (r"<br \/>", " "),
        (r",", " , "),
        (r"\(", " ( "),
        (r"\)", " ) "),
        (r"\!", " ! "),
        (r"\?", " ? "),
        (r"\;", " "),
        (r"\:", " "),
        (r"\s+", " "),
    ]
]


# the single-character replacements of _BASIC_ENGLISH, as plain str.replace calls
_REPLACE = (
    ("'", " '  "),
    (".", " . "),
    (",", " , "),
    ("(", " ( "),
    (")", " ) "),
    ("!", " ! "),
    ("?", " ? "),
    (";", " "),
    (":", " "),
)


def basic_english(line: str) -> list[str]:
    """Tokenise like ``torchtext.data.get_tokenizer("basic_english")``.

    Same result as applying ``_BASIC_ENGLISH`` in order (``basic_english_reference``,
    kept for the tests), done with ``str.replace`` for speed: none of the
    replacements can create or destroy another pattern's match, except that
    the quote deletion must come before the ``<br />`` replacement."""
    line = line.lower().replace('"', "").replace("<br />", " ")
    for old, new in _REPLACE:
        line = line.replace(old, new)
    return line.split()


def basic_english_reference(line: str) -> list[str]:
    """The regex-by-regex original (slow); ``basic_english`` must agree with it."""
    line = line.lower()
    for pattern, replacement in _BASIC_ENGLISH:
        line = pattern.sub(replacement, line)
    return line.split()


# A sentence ends at ".", "!" or "?" (optionally followed by one closing quote
# or bracket) when whitespace follows and the next character is not a
# lower-case letter. Decimal points ("1.13bn") have no whitespace after them
# and stay. No abbreviation list: BBC style writes "Mr Smith", "US".
_SENTENCE_END = re.compile(r"([.!?][\"')\]]?)\s+(?=[^a-z\s])")


def split_sentences(paragraph: str) -> list[str]:
    """Split one paragraph into sentences (see ``_SENTENCE_END``)."""
    parts = _SENTENCE_END.split(paragraph.strip())
    # split() with a group alternates text, terminator, text, ...: glue each terminator back on
    sentences = [parts[i] + (parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]
    return [s.strip() for s in sentences if s.strip()]


def embed_token_lists(
    token_lists: Sequence[Sequence[str]], index: Mapping[str, int], matrix: np.ndarray, time_slices: int
) -> tuple[np.ndarray, np.ndarray]:
    """Embed every token (unknown tokens -> zero vector, as torchtext's GloVe
    lookup does), cut after ``time_slices`` tokens, zero-pad at the end.
    Returns float32 x (N, T, D) and int64 lengths (N,)."""
    n, dim = len(token_lists), int(matrix.shape[1])
    x = np.zeros((n, int(time_slices), dim), dtype=np.float32)
    lengths = np.zeros(n, dtype=np.int64)
    rows, slots, cols = [], [], []
    for i, tokens in enumerate(token_lists):
        tokens = tokens[:time_slices]
        lengths[i] = len(tokens)
        for t, tok in enumerate(tokens):
            j = index.get(tok)
            if j is not None:
                rows.append(i)
                slots.append(t)
                cols.append(j)
    if rows:
        cols_arr = np.asarray(cols)
        uniq, inverse = np.unique(cols_arr, return_inverse=True)
        vectors = np.asarray(matrix[uniq], dtype=np.float32)  # one gather (works on a memmap)
        x[np.asarray(rows), np.asarray(slots)] = vectors[inverse]
    return x, lengths
