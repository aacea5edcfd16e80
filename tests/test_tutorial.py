"""docs/bring_your_own.md, run as written: every ``file=PATH`` block is written into an empty folder and every
``bash`` block is run there, in order (untagged blocks are illustrations, not steps). Then the records,
the status and the report say what the page says they do."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.runfolder import read_status
from tests.helpers import REPO

PAGE = REPO / "docs" / "bring_your_own.md"
MARK = "=== next block of docs/bring_your_own.md ==="
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def steps(text: str) -> list[tuple[str, str, str]]:
    """("file", path, content) and ("run", "", commands) in page order."""
    out = []
    for language, info, body in BLOCK.findall(text):
        found = re.search(r"file=(\S+)", info)
        if found:
            out.append(("file", found.group(1), body))
        elif language == "bash":
            out.append(("run", "", body))
    return out


def tutorial_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LCM_OUTPUTS", "PYTHONPATH", "WANDB_MODE")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # lcm and python of the venv
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_the_page_has_the_steps_it_describes():
    kinds = [(kind, path) for kind, path, _ in steps(PAGE.read_text())]
    files = [path for kind, path in kinds if kind == "file"]
    assert files == [
        "my_models/__init__.py",
        "make_pebble.py",
        "my_conf/model/meannet.yaml",
        "my_conf/data_source/pebble.yaml",
        "my_conf/dataset/default_pebble.yaml",
        "my_conf/study/pebble_models.yaml",
    ]
    assert sum(kind == "run" for kind, _ in kinds) == 4


@pytest.mark.slow
def test_the_tutorial_runs_end_to_end(tmp_path):
    env = tutorial_env()
    commands = []
    for kind, path, body in steps(PAGE.read_text()):
        if kind == "file":
            target = tmp_path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body)
        else:  # the commands run in one shell session, as a reader types them into one terminal
            commands.append(f"echo {MARK}\n{body}")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(commands)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert done.returncode == 0, f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    outputs = done.stdout.split(MARK + "\n")[1:]  # what each command block printed
    assert len(outputs) == 4
    # the data file: three gestures of 45-54 sequences, 150 slices of one feature
    assert "pebble.npz: x (148, 150, 1), sequences per class [49 45 54]" in outputs[0]
    # the try-out run went to outputs/debug, the sweep's six runs to the study's folder, all done
    debug_runs = list((tmp_path / "outputs" / "debug" / "pebble_models" / "runs").iterdir())
    assert len(debug_runs) == 1 and "meannet" in debug_runs[0].name
    runs = sorted((tmp_path / "outputs" / "pebble_models" / "runs").iterdir())
    assert [r.name.split("-r000-")[0] for r in runs] == [
        f"pebble-p{p:02d}-{m}" for p in range(3) for m in ("lstm", "meannet")
    ]
    assert all(read_status(r)["state"] == "done" for r in runs)
    assert "pebble" in outputs[2] and "6" in outputs[2]  # pipeline.status after the sweep
    # the report compares the two models, and says the comparison cannot decide with 3 class pairs
    analysis = tmp_path / "outputs" / "analysis"
    report = (analysis / "report.html").read_text()
    assert "Architectures: which model" in report and "meannet" in report
    contrasts = pd.read_csv(analysis / "architecture_contrasts.csv")
    assert set(contrasts["contrast"]) == {"meannet - lstm"} and len(contrasts) == 4 * 2
    assert contrasts["verdict"].str.startswith("underpowered (n = 3 class pairs").all()
    assert (analysis / "figures" / "architectures_maps_average.png").stat().st_size > 10_000
    # a key the module does not take is refused before anything is written, naming it
    refused = subprocess.run(
        ["lcm", "-cd", "my_conf", "study=pebble_models", "model=meannet", "+model.depth=3", "paths.root=never"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 1 and "unexpected keyword argument 'depth'" in refused.stderr
    assert not (tmp_path / "never").exists()
