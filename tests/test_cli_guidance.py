"""What the commands tell a newcomer: `lcm --help` generated from conf/, shell completion without the
internal config options, status cells named by their classes, and the debug folder named where it is
all there is."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from analysis.cli import main as analysis_main
from pipeline import command_help
from pipeline import status as status_cli
from tests.helpers import REPO, run_cli

CONF = REPO / "conf"


def _lcm() -> str:
    return str(Path(sys.executable).with_name("lcm"))


def test_help_lists_every_option_file_and_no_internal_one():
    result = run_cli("--help", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    internal = {choice.split("=", 1)[1] for choice in command_help.internal_choices(CONF)}
    assert internal == {"default_gesture", "default_sentence"}
    for group in ("study", "dataset", "data_source", "hydra/launcher", "debug"):
        for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
            if option in internal:
                assert option not in out
            else:
                assert option in out, f"{group}={option} missing from lcm --help"
    # each source's default data set, read from the internal options it stands for
    assert "data_source=gesture: watch*" in out and "data_source=sentence: bbc_news*" in out
    assert "headline*" in out and "local*, slurm" in out


def test_help_follows_the_config_files(tmp_path):
    """A new option file appears in the help with its comment's opening phrase; nothing is hand-kept."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "study" / "my_study.yaml").write_text("# A study of my own (made up): one line.\nname: my_study\n")
    (conf / "dataset" / "my_gestures.yaml").write_text("# Gestures of mine.\nname: my_gestures\nsource: gesture\n")
    groups = command_help.config_groups_text(conf)
    assert "my_study                     A study of my own" in groups
    assert "data_source=gesture: watch*, cricket, imigue, my_gestures, wiimote" in groups
    keys = command_help.config_keys_text(conf)
    assert "trainer.*" in keys and "epochs=50" in keys
    assert "  participant " not in keys and "pack_file" not in keys  # the sweeper's, never set by hand


def test_completion_offers_no_internal_choice():
    env = {**os.environ, "COMP_LINE": "lcm dataset=", "COMP_POINT": "12"}
    words = subprocess.run(
        [_lcm(), "-sc", "query=bash"], capture_output=True, text=True, env=env, timeout=120, cwd=REPO
    ).stdout.split()
    assert "dataset=watch" in words and "dataset=bbc_news" in words
    assert not [w for w in words if "default_" in w]
    env["COMP_LINE"] = "lcm data_source=sentence dataset=de"
    answer = subprocess.run([_lcm(), "-sc", "query=bash"], capture_output=True, text=True, env=env, timeout=120)
    assert answer.stdout.split() == []


def _run_folder(root: Path, rid: str, cell: str, classes: list[str]) -> Path:
    run_dir = root / "headline" / "runs" / rid
    run_dir.mkdir(parents=True)
    names = "".join(f"  - {c}\n" for c in classes)
    (run_dir / "config.yaml").write_text(f"design:\n  data_source: gesture\n  cell: {cell}\n  class_names:\n{names}")
    (run_dir / "status.json").write_text(json.dumps({"state": "failed", "cell": cell, "error": "x"}))
    return run_dir


def test_status_names_cells_by_their_classes(tmp_path, capsys):
    _run_folder(tmp_path, "gesture-p00-r000-a", "gesture/pair 0", ["PEN", "ABD"])
    _run_folder(tmp_path, "gesture-p10-r000-b", "gesture/pair 10", ["IR", "TRAP"])
    report = status_cli.collect(tmp_path)
    assert report["headline"]["class_names"] == {"gesture/pair 0": ["PEN", "ABD"], "gesture/pair 10": ["IR", "TRAP"]}
    assert status_cli.main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gesture/pair 0 PEN/ABD" in out and "gesture/pair 10 IR/TRAP" in out


def test_status_and_analysis_name_the_debug_folder_when_that_is_all_there_is(tmp_path, capsys):
    _run_folder(tmp_path / "debug", "gesture-p00-r000-a", "gesture/pair 0", ["PEN", "ABD"])
    assert status_cli.main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no studies found" in out and f"--root {tmp_path / 'debug'}" in out
    assert analysis_main(["--root", str(tmp_path), "--out", str(tmp_path / "analysis"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'debug'} holds 1 run folder(s) of `lcm debug=quick`" in err
    # with a study there, no such note
    _run_folder(tmp_path, "gesture-p00-r000-a", "gesture/pair 0", ["PEN", "ABD"])
    assert status_cli.main(["--root", str(tmp_path)]) == 0
    assert "debug" not in capsys.readouterr().out
