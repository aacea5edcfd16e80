"""The shape of the code: imports go one way (the training side never imports the analysis), no import
cycles (imports inside functions included), no private names imported across modules, test helpers in
helper modules. Read from the source with ast, so a lazy import counts as much as one at the top."""

from __future__ import annotations

import ast
import graphlib
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGES = ("pipeline", "analysis", "hydra_plugins")
TRAINING_SIDE = ("pipeline", "hydra_plugins")


def modules(root: Path, packages: Iterable[str]) -> dict[str, tuple[Path, bool]]:
    """{dotted module name: (file, is a package __init__)} for every module of ``packages`` under ``root``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")[: None if is_package else -1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _known(name: str, known: dict) -> str | None:
    """The project module an import names (``a.b.c`` -> ``a.b`` when c is a name inside a.b), or None."""
    parts = name.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts) or None


def imports(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, dict[str, list[str]]]:
    """{module: {imported project module: [the names it imports from it]}}, from every import statement.

    ``from pkg import sub`` counts as importing the module ``pkg.sub``; a package's own ``__init__`` counts
    only when names are imported from it (importing ``pkg.sub`` runs it, but ``pkg.sub`` does not depend on it).
    """
    known = modules(root, packages)
    graph: dict[str, dict[str, list[str]]] = {}
    for module, (path, is_package) in known.items():
        edges: dict[str, list[str]] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [(_known(alias.name, known), "*") for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, is_package, node.level, node.module)
                targets = [
                    (f"{base}.{a.name}", "*") if f"{base}.{a.name}" in known else (_known(base, known), a.name)
                    for a in node.names
                ]
            else:
                continue
            for target, name in targets:
                if target is not None and target != module:
                    edges.setdefault(target, []).append(name)
        graph[module] = edges
    return graph


def cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One import cycle of the graph, or None."""
    try:
        tuple(graphlib.TopologicalSorter({m: set(e) for m, e in graph.items()}).static_order())
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


@pytest.fixture(scope="module")
def graph():
    return imports(REPO)


def test_the_training_side_never_imports_the_analysis(graph):
    upward = {
        module: sorted(t for t in targets if t.split(".")[0] == "analysis")
        for module, targets in graph.items()
        if module.split(".")[0] in TRAINING_SIDE
    }
    assert {m: t for m, t in upward.items() if t} == {}


def test_there_is_no_import_cycle(graph):
    assert len(graph) > 60
    assert cycle(graph) is None


def test_the_checks_see_imports_inside_functions_and_cycles(tmp_path):
    """The graph reader on a small package: a cycle closed by an import inside a function is found."""
    package = tmp_path / "pipeline"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .. import b\n")
    (package / "a.py").write_text("def f():\n    from .sub import thing\n")
    (package / "b.py").write_text("from . import a\nfrom analysis.x import y\n")
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "x.py").write_text("from pipeline import a as _a\n")
    graph = imports(tmp_path, ("pipeline", "analysis"))
    assert graph["pipeline.a"] == {"pipeline.sub": ["thing"]} and "analysis.x" in graph["pipeline.b"]
    assert sorted(set(cycle(graph))) == ["pipeline.a", "pipeline.b", "pipeline.sub"]
    del graph["pipeline.a"]["pipeline.sub"]
    assert cycle(graph) is None


def test_no_private_name_is_imported_across_modules(graph):
    private = [
        f"{module} imports {name} from {target}"
        for module, targets in graph.items()
        for target, names in targets.items()
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


def test_tests_take_their_helpers_from_helper_modules():
    """No test module imports from another test module or from conftest.py (pytest's, not a library)."""
    tests = imports(REPO, ("tests",))
    wrong = {
        module: sorted(t for t in targets if t.startswith("tests.test_") or t == "tests.conftest")
        for module, targets in tests.items()
    }
    assert {m: t for m, t in wrong.items() if t} == {}


def test_the_architecture_page_names_modules_that_exist_and_every_package():
    text = (REPO / "docs" / "architecture.md").read_text()
    files = {p.relative_to(REPO).as_posix() for p in REPO.rglob("*.py") if ".venv" not in p.parts}
    basenames = {Path(f).name for f in files}
    named = set(re.findall(r"[\w/]*\w\.py\b", text))
    assert len(named) > 30
    missing = sorted(n for n in named if (n not in files if "/" in n else n not in basenames))
    assert missing == [], f"docs/architecture.md names modules that do not exist: {missing}"
    packages = sorted(
        init.parent.relative_to(REPO).as_posix()
        for package in PACKAGES
        for init in (REPO / package).rglob("__init__.py")
    )
    assert "pipeline/studies/critical" in packages
    unnamed = [p for p in packages if f"{p}/" not in text and f"{p.rsplit('/', 1)[-1]}/" not in text]
    assert unnamed == [], f"docs/architecture.md does not name the packages {unnamed}"


# How the project was built (who, when, under which ticket) is no part of what it says about itself: the
# README, the docs, the changelog and the code's comments and strings speak of the software, and state
# measurements by machine, date and load. Each pattern is written so that it does not match its own source.
PROCESS_WORDS = [
    r"\bissues? #?\d+",  # ticket numbers
    r"\bsessions? \d+",
    r"\b(?:this|that|other|earlier|later|previous|next|each) sessions?\b",  # not "test session", "R session"
    r"\bwork(?:ing)? periods?\b",
    r"\b(?:le[n]t|borro[w]ed) (?:to|machine|GPU)|\b(?:le[n]t|borro[w]ed)\b",
    r"\bengine[e]rs?\b",
    r"\b(?:the|our|this) tea[m]\b",  # not "red team", not a W&B entity "my-team"
    r"\bno GPU (?:was|in this)\b|\bthis tas[k]\b",
]
SPEAKING_PATHS = ("README.md", "CHANGELOG.md", "docs", "pipeline", "analysis", "hydra_plugins", "bench", "tools")
SPEAKING_PATHS += ("conf", "slurm", "tests")
BINARY_SUFFIXES = {".parquet", ".npz", ".png", ".pyc", ".pkl", ".xlsx", ".gz", ".zip"}


def process_word_hits(root: Path, paths: Iterable[str] = SPEAKING_PATHS) -> list[str]:
    """'file:line: text' for every line under ``paths`` that speaks of how the project was made."""
    pattern = re.compile("|".join(f"(?:{p})" for p in PROCESS_WORDS), re.IGNORECASE)
    files = []
    for name in paths:
        path = root / name
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    hits = []
    for path in files:
        if path.suffix in BINARY_SUFFIXES or "__pycache__" in path.parts:
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(root).as_posix()
        hits += [f"{rel}:{i}: {line.strip()}" for i, line in enumerate(lines, 1) if pattern.search(line)]
    return hits


def test_readme_docs_and_code_speak_of_the_project_not_of_how_it_was_made():
    hits = process_word_hits(REPO)
    assert hits == [], "say what the software does and how it was measured (machine, date, load):\n" + "\n".join(hits)


@pytest.mark.parametrize(
    "line, caught",
    [
        ("the rule before iss_ue 12", True),
        ("Sess_ion 4: 24-33 s", True),
        ("other sess_ions shared the machine", True),
        ("a machine le_nt to us", True),
        ("seven other engi_neers' jobs", True),
        ("measured in the previous work peri_od", True),
        ("what the tea_m ran", True),
        ("no G_PU in this ta_sk", True),
        ("the session fixture starts one cluster per test session", False),
        ("the driver does not die with your login session", False),
        ("an R session running", False),
        ("the red team's reproduction", False),
        ("--entity my-team", False),
        ("a last batch of one sample is merged", False),
        ("tissue 12 of the atlas", False),
    ],
)
def test_the_process_word_check_catches_what_it_is_for_and_nothing_else(tmp_path, line, caught):
    """Each example has a "_" inside its key word (removed here) so that this file passes the check itself."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(f"# A page\n\n{line.replace('_', '')}\n")
    assert bool(process_word_hits(tmp_path, ["docs"])) is caught


def test_the_readme_is_short():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines; move detail into docs/"


def function_size(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "function_size.py"), *args], capture_output=True, text=True
    )


def test_no_function_in_the_packages_is_longer_than_80_lines():
    done = function_size()
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_size_check_names_long_functions_and_methods_and_passes_short_ones(tmp_path):
    body = "\n".join(f"x{i} = {i}" for i in range(80))
    indented = lambda spaces: body.replace("x", " " * spaces + "x")
    (tmp_path / "long.py").write_text(
        f"def long():\n{indented(4)}\n\n\nclass Runner:\n    def step(self):\n        def inner():\n{indented(12)}\n"
        "\n\ndef short():\n    return 1\n"
    )
    done = function_size(str(tmp_path))
    assert done.returncode == 1
    named = sorted(line.split(": ")[1].split(" is ")[0] for line in done.stdout.splitlines())
    assert named == ["Runner.step", "Runner.step.inner", "long"]
    assert function_size("--max-lines", "90", str(tmp_path)).returncode == 0
