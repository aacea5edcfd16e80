"""What a person sees: docs whose links resolve, help, a debug config, quiet consoles with complete
run logs, progress lines, and status tables that sort and separate conditions."""

import csv
import io
import json
import logging
import re
from pathlib import Path

import pytest

from hydra_plugins.lcm_study.progress import Progress
from pipeline.logs import ConsoleFilter, run_log
from pipeline.status import collect, format_report, natural_key
from tests.helpers import REPO, run_cli, run_config

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set:
    seen, out = {}, set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        slug = github_anchor(line.lstrip("#"))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_github_anchor_rule():
    assert (
        github_anchor(" 2b. Pseudo-kernel prediction of learned representations")
        == "2b-pseudo-kernel-prediction-of-learned-representations"
    )
    assert github_anchor(" 5. Syncing offline W&B runs") == "5-syncing-offline-wb-runs"
    assert github_anchor(" The authors' tables") == "the-authors-tables"


def broken_links(doc: Path, repo: Path = REPO) -> list:
    """Relative links of a Markdown page that do not resolve to a file (and heading) inside ``repo``."""
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    bad = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc.resolve()
        if repo.resolve() not in dest.parents:
            bad.append(f"{target}: outside the repository")
        elif not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    return bad


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves_inside_the_repository(doc):
    assert not broken_links(doc), f"{doc.name}: " + "; ".join(broken_links(doc))


def test_the_link_checker_catches_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## A section\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n[ok](other.md#a-section) [ok](#page) [web](https://example.org)\n"
        "[gone](missing.md) [no heading](other.md#nope) [out](../../shared/docs/PROTOCOL.md)\n"
        "```\n[in code](nowhere.md)\n```\n"
    )
    assert broken_links(page, tmp_path) == [
        "missing.md: no such file",
        "other.md#nope: no heading #nope in other.md",
        "../../shared/docs/PROTOCOL.md: outside the repository",
    ]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_docs_name_no_file_outside_the_repository(doc):
    # a fresh clone has neither this machine's shared folder nor the protocol file (docs/science.md
    # states it; code comments cite its sections as "docs/science.md 2a")
    text = doc.read_text()
    assert "/work/" not in text and "shared/docs" not in text and "PROTOCOL.md" not in text


def test_code_cites_the_science_in_the_repository():
    cited = [
        p
        for p in REPO.glob("**/*.py")
        if ".venv" not in p.parts and p.name != "test_usability.py" and "PROTOCOL.md" in p.read_text()
    ]
    cited += [p for p in (REPO / "conf").glob("**/*.yaml") if "PROTOCOL.md" in p.read_text()]
    assert not cited, f"cite docs/science.md, not PROTOCOL.md: {cited}"


def test_console_script_and_cluster_example_out_of_the_launcher_choices():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["lcm"] == "pipeline.app:main"
    assert "editable_mode=compat" not in (REPO / "Makefile").read_text()
    launchers = sorted(p.stem for p in (REPO / "conf" / "hydra" / "launcher").glob("*.yaml"))
    assert launchers == ["local", "slurm"]


def test_help_is_short_and_names_no_internal_choice():
    result = run_cli("--help", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert len(out.splitlines()) < 80 and max(len(line) for line in out.splitlines()) <= 100
    for needed in ("A run trains", "Config groups", "Keys", "Examples", "debug", "data_source", "labels"):
        assert needed in out
    assert "default_gesture" not in out and "default_sentence" not in out


def test_debug_config_is_short_and_writes_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("LCM_OUTPUTS", str(tmp_path / "outputs"))
    cfg = run_config("debug=quick")
    assert cfg.trainer.epochs == 2 and cfg.dataset.time_slices == 20
    assert cfg.paths.root == str(tmp_path / "outputs" / "debug")
    # the command line still wins over it
    assert run_config("debug=quick", "trainer.epochs=1", "data_source=sentence").trainer.epochs == 1


def test_cluster_config_from_a_folder_outside_the_repository(tmp_path):
    launcher_dir = tmp_path / "hydra" / "launcher"
    launcher_dir.mkdir(parents=True)
    (launcher_dir / "my_cluster.yaml").write_text((REPO / "docs" / "examples" / "my_cluster.yaml").read_text())
    result = run_cli(
        "--config-dir",
        str(tmp_path),
        "hydra/launcher=my_cluster",
        "--cfg",
        "hydra",
        "-p",
        "hydra.launcher",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "partition: gpu" in result.stdout and "array_parallelism: 64" in result.stdout
    # and what it does not set still comes from the project's slurm.yaml
    assert "submitit_folder: ${hydra.sweep.dir}/.submitit/%j" in result.stdout


# -- logs ------------------------------------------------------------------
@pytest.fixture
def job_logging():
    """The job's logging as conf/hydra/job_logging/lcm.yaml sets it, with the console in a buffer."""
    root = logging.getLogger()
    saved = root.level, list(root.handlers), logging.getLogger("pipeline").level
    console = io.StringIO()
    handler = logging.StreamHandler(console)
    handler.addFilter(ConsoleFilter())
    root.handlers = [handler]
    yield root, console
    root.setLevel(saved[0])
    root.handlers = saved[1]
    logging.getLogger("pipeline").setLevel(saved[2])
    logging.getLogger("pipeline.train").setLevel(logging.NOTSET)


@pytest.mark.parametrize("console_level", [logging.INFO, logging.WARNING, logging.ERROR])
def test_run_log_is_complete_whatever_the_console_level(tmp_path, job_logging, console_level):
    root, console = job_logging
    root.setLevel(console_level)  # what hydra.job_logging.root.level=... does
    with run_log(tmp_path / "run.log"):
        logging.getLogger("pipeline.train").info("epoch 1/2  train loss 0.69")
        logging.getLogger("pipeline.run").warning("something to see")
    logging.getLogger("pipeline.train").info("after the run: not in its log")
    text = (tmp_path / "run.log").read_text()
    assert "epoch 1/2" in text and "something to see" in text and "after the run" not in text
    assert "epoch 1/2" not in console.getvalue()  # epoch lines never reach the console unasked
    assert ("something to see" in console.getvalue()) == (console_level <= logging.WARNING)
    assert logging.getLogger("pipeline").level == logging.NOTSET  # restored


def test_epoch_lines_reach_the_console_when_asked(tmp_path, job_logging):
    root, console = job_logging
    root.setLevel(logging.INFO)
    logging.getLogger("pipeline.train").setLevel(logging.DEBUG)  # hydra.verbose=pipeline.train
    with run_log(tmp_path / "run.log"):
        logging.getLogger("pipeline.train").info("epoch 1/2")
        logging.getLogger("pipeline.run").info("run x -> folder")
    assert "epoch 1/2" in console.getvalue() and "run x" not in console.getvalue()
    assert "epoch 1/2" in (tmp_path / "run.log").read_text()


# -- progress --------------------------------------------------------------
def _status(run_dir: Path, state: str, **extra):
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {"state": state, "started": "2026-01-01T00:00:00+00:00", "ended": "2026-01-01T00:00:03+00:00", **extra}
    if state == "done":  # a done run has its record files (pipeline.status checks them)
        import pandas as pd

        for name in ("config.yaml", "summary.json"):
            if not (run_dir / name).exists():
                (run_dir / name).write_text("{}\n")
        for name in ("curves.parquet", "readouts.parquet"):
            pd.DataFrame({"value": [0.5]}).to_parquet(run_dir / name)
    tmp = run_dir / ".status.tmp"
    tmp.write_text(json.dumps(payload))
    tmp.replace(run_dir / "status.json")


def test_progress_reports_each_run_once_with_counts(tmp_path):
    runs = {f"gesture-p0{i}-r000-x": tmp_path / f"r{i}" for i in range(3)}
    old = tmp_path / "r2"
    _status(old, "failed", error="an old failure")  # from an earlier sweep: not news
    out = io.StringIO()
    progress = Progress(runs, stream=out)
    progress.poll()
    assert out.getvalue() == ""
    _status(tmp_path / "r0", "running")
    progress.poll()
    assert out.getvalue() == ""
    _status(tmp_path / "r0", "done")
    (tmp_path / "r0" / "summary.json").write_text(json.dumps({"seconds_total": 8.25}))
    _status(tmp_path / "r1", "failed", error="DataNotFoundError: no files", traceback="Traceback ...")
    progress.poll()
    progress.poll()  # nothing twice
    progress.settle([("gesture-p02-r000-x", "running", "another process computes it: left alone")])
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert re.match(r"\[study\] gesture-p00-r000-x  done\s+8\.2 s  \(1/3 done, 0 failed, ETA ", lines[0])
    assert re.match(
        r"\[study\] gesture-p01-r000-x  failed\s+3\.0 s  \(1/3 done, 1 failed, ETA .*\)  "
        r"DataNotFoundError: no files$",
        lines[1],
    )
    assert "gesture-p02-r000-x  running" in lines[2] and "ETA 0:00" in lines[2]
    assert lines[2].endswith("another process computes it: left alone")


# -- status ------------------------------------------------------------------
def _plan(study_dir: Path, rows):
    (study_dir / "plans").mkdir(parents=True, exist_ok=True)
    with open(study_dir / "plans" / "20260101-000000-x.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["run_id", "cell", "state", "overrides", "condition"])
        writer.writerows(rows)


def test_status_sorts_pairs_numerically_and_counts_conditions_apart(tmp_path):
    study = tmp_path / "headline"
    rows = []
    for pair in (0, 1, 2, 10, 11):
        for labels in ("real", "shuffled"):
            rid = f"gesture-p{pair:02d}-r000-{labels[0]}"
            rows.append(
                [
                    rid,
                    f"gesture/pair {pair}",
                    "absent",
                    f"labels={labels}",
                    "" if labels == "real" else "labels=shuffled",
                ]
            )
            _status(study / "runs" / rid, "done")
    _plan(study, rows)
    # a run launched on its own, without a plan: told apart by its labels
    solo = study / "runs" / "gesture-p03-r001-s"
    _status(solo, "done", cell="gesture/pair 3")
    (solo / "config.yaml").write_text("study:\n  name: headline\nlabels: shuffled\ndesign:\n  labels: shuffled\n")
    report = collect(tmp_path)["headline"]
    assert list(report["conditions"]) == ["", "labels=shuffled"]
    assert list(report["conditions"][""]) == [f"gesture/pair {p}" for p in (0, 1, 2, 10, 11)]
    assert list(report["conditions"]["labels=shuffled"]) == [f"gesture/pair {p}" for p in (0, 1, 2, 3, 10, 11)]
    assert report["cells"]["gesture/pair 10"] == {"done": 2}  # all conditions together
    text = format_report({"headline": report})
    assert "study headline: 5 done" in text and "study headline [labels=shuffled]: 6 done" in text
    order = [line.split()[1] for line in text.splitlines() if line.startswith("  gesture/pair")]
    assert order == ["0", "1", "2", "10", "11", "0", "1", "2", "3", "10", "11"]


def test_natural_key_orders_numbers_as_numbers():
    names = ["sentence/pair 2", "gesture/pair 10", "gesture/pair 2", "gesture/pair 1", "sentence/pair 10"]
    assert sorted(names, key=natural_key) == [
        "gesture/pair 1",
        "gesture/pair 2",
        "gesture/pair 10",
        "sentence/pair 2",
        "sentence/pair 10",
    ]


def test_hydra_bookkeeping_is_never_a_study_or_a_run(tmp_path):
    from analysis.collect import find_run_dirs

    _status(tmp_path / "headline" / "runs" / "gesture-p00-r000-x", "done")
    # what a single run and a sweep leave now (conf/config.yaml's hydra.run.dir and hydra.sweep.dir)
    (tmp_path / ".hydra" / "single" / "2026-01-01_00-00-00" / ".hydra").mkdir(parents=True)
    (tmp_path / ".hydra" / "sweeps" / "2026-01-01_00-00-01" / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / ".hydra" / "sweeps" / "2026-01-01_00-00-01" / "packs").mkdir()
    assert list(collect(tmp_path)) == ["headline"]
    assert [s for s, _ in find_run_dirs(tmp_path)] == ["headline"]
    # what earlier versions left, <root>/.hydra/runs/<stamp>/, is not a study to status either
    (tmp_path / ".hydra" / "runs" / "2026-01-01_00-00-02" / ".hydra").mkdir(parents=True)
    (tmp_path / ".hydra" / "plans").mkdir()
    assert list(collect(tmp_path)) == ["headline"]


def test_hydra_folders_lie_where_neither_status_nor_analysis_looks(tmp_path):
    from hydra import compose, initialize_config_dir

    from pipeline.planning import CONFIG_DIR

    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.root={tmp_path}"], return_hydra_config=True)
        dirs = [Path(cfg.hydra.run.dir), Path(cfg.hydra.sweep.dir)]
    for d in dirs:
        relative = d.relative_to(tmp_path).parts
        assert relative[0].startswith(".")  # a dot-folder: never a study
        assert "runs" not in relative and "plans" not in relative


# -- end to end --------------------------------------------------------------
@pytest.mark.slow
def test_a_sweep_prints_one_line_per_run_and_keeps_epoch_lines_in_run_logs(tmp_path):
    from analysis.collect import find_run_dirs

    single = run_cli("seed=5", "trainer.epochs=1", f"paths.root={tmp_path}", "hydra.job_logging.root.level=WARNING")
    assert single.returncode == 0, single.stderr[-3000:]
    result = run_cli(
        "-m", "seed=range(0,3)", "trainer.epochs=2", f"paths.root={tmp_path}", "hydra.job_logging.root.level=WARNING"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    lines = re.findall(
        r"^\[study\] (\S+)\s+done\s+[\d.]+ s\s+\((\d)/3 done, 0 failed, ETA [\d:]+\)$", console, re.MULTILINE
    )
    assert sorted(k for _, k in lines) == ["1", "2", "3"]
    assert "launching 3 runs" in console and "all 3 runs done" in console
    assert "epoch 1/" not in console and "#0 :" not in console  # no epoch lines, no launcher banner
    runs = tmp_path / "headline" / "runs"
    assert {rid for rid, _ in lines} | {p.name for p in runs.iterdir() if p.name.startswith("gesture-p05")} == {
        p.name for p in runs.iterdir()
    }
    for rid, _ in lines:
        log = (runs / rid / "run.log").read_text()
        assert "epoch 1/2" in log and "epoch 2/2" in log and f"run {rid} done" in log
    # Hydra's bookkeeping of both launches is neither a study nor a run
    report = collect(tmp_path)
    assert list(report) == ["headline"] and sum(sum(c.values()) for c in report["headline"]["cells"].values()) == 4
    assert len(find_run_dirs(tmp_path)) == 4
