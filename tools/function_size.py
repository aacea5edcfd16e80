"""List every function in pipeline/, analysis/ and hydra_plugins/ longer than the limit; exit 1 if any.

A function's length is its source span, decorators excluded: ``end_lineno - lineno + 1`` from the
``ast`` of the file (docstring, comments and blank lines inside the body count). Nested functions
and methods are measured on their own and also count toward the function that encloses them.
Complexity is ruff's job (C901, configured in pyproject.toml); this tool checks only size.

    python tools/function_size.py            # the three packages, limit 80
    python tools/function_size.py --max-lines 60 pipeline/train.py
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "analysis", "hydra_plugins")
MAX_LINES = 80


def python_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if ".venv" not in p.parts)
        elif path.suffix == ".py":
            yield path


def function_lengths(path: Path) -> Iterator[tuple[str, int, int]]:
    """(qualified name, first line, length in lines) of every function and method in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                assert child.end_lineno is not None
                yield name, child.lineno, child.end_lineno - child.lineno + 1
                yield from walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def offenders(paths: list[Path], max_lines: int) -> list[tuple[Path, str, int, int]]:
    """Every function longer than ``max_lines``, as (file, name, first line, length), longest first."""
    found = [
        (path, name, line, length)
        for path in python_files(paths)
        for name, line, length in function_lengths(path)
        if length > max_lines
    ]
    return sorted(found, key=lambda row: (-row[3], str(row[0]), row[2]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: the three packages)")
    parser.add_argument("--max-lines", type=int, default=MAX_LINES, help="longest allowed function (lines)")
    args = parser.parse_args(argv)
    paths = args.paths or [REPO / package for package in PACKAGES]
    found = offenders(paths, args.max_lines)
    for path, name, line, length in found:
        shown = path.resolve().relative_to(REPO) if path.resolve().is_relative_to(REPO) else path
        print(f"{shown}:{line}: {name} is {length} lines (limit {args.max_lines})")
    if found:
        print(f"{len(found)} function(s) over {args.max_lines} lines", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
