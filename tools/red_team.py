"""The red-team run: every fault kind and every bad input of docs/reliability.md, as real experiments.

Bad inputs: each row of tests/bad_inputs.py as the real command (`python -m pipeline ...`, a fresh outputs
root each) - refused before writing (exit status 1, the key named, no traceback, nothing under the root),
refused after writing, or wrongly accepted (exit status 0). Faults: a small study is computed once, copied
for each fault, damaged or attacked as the fault says, then status, the analysis and a relaunch of the
same command are run against it; a fault is survived when each of them answers as docs/reliability.md
says (no hang, no crash, no wrong "done", the run recomputed or the refusal said).

    python tools/red_team.py --work /tmp/red_team [--jobs 2] [--only inputs|faults]

Prints one line per experiment and the summary table (faults survived / tried, bad inputs refused before
writing / tried, wrongly accepted), with the machine and its load.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FAST = ["data_source=gesture", "pair=0", "trainer.epochs=1", "dataset.time_slices=8"]
SEEDS = "seed=0,1,2"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}


@dataclass
class Outcome:
    name: str
    ok: bool
    note: str
    kind: str = ""  # bad inputs: "before", "after" (refused after writing), "accepted"


def cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 600):
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd or REPO,
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------


def bad_input_rows(files: Path) -> list[tuple[str, list[str], dict, str]]:
    """(name, command-line arguments, environment, key the message must name) of every bad input."""
    from tests.bad_inputs import BAD_DATA, BAD_INPUTS, BAD_LAUNCHES, EMPTY_ENV

    rows = [(" ".join(o), list(o), {}, k) for o, k in BAD_INPUTS]
    rows += [(" ".join(o), [x.format(files=files) for x in o], {}, k) for o, k, _ in BAD_DATA]
    rows += [(" ".join(a) + "".join(f" {k}={v!r}" for k, v in e.items()), list(a), e, k) for a, e, k in BAD_LAUNCHES]
    rows += [(" ".join(a) + "".join(f" {k}={v!r}" for k, v in e.items()), list(a), e, k) for a, e, k in EMPTY_ENV]
    # a few planning rows are also whole commands of BAD_LAUNCHES (the tests check them both ways): as
    # commands they are one experiment each
    unique: dict[str, tuple[str, list[str], dict, str]] = {}
    for row in rows:
        unique.setdefault(row[0], row)
    return list(unique.values())


def try_bad_input(row, work: Path) -> Outcome:
    name, args, env, key = row
    folder = work / hashlib.sha1(name.encode()).hexdigest()[:12]
    folder.mkdir(parents=True)
    root = folder / "out"
    root_arg = [] if any(a.startswith("paths.root") for a in args) or "LCM_OUTPUTS" in env else [f"paths.root={root}"]
    done = cli(*args, *root_arg, env=env, cwd=folder, timeout=900)
    written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    if done.returncode == 0:
        return Outcome(name, False, "exit 0", "accepted")
    clean = key in done.stderr and "Traceback" not in done.stderr and not written
    why = "" if clean else f"wrote {written[:3]}" if written else done.stderr.strip().splitlines()[-1][:160]
    return Outcome(name, clean, why or "refused before writing", "before" if clean else "after")


# ---------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------


def status_of(root: Path) -> dict:
    from pipeline.status import collect

    return collect(root)["headline"]


def relaunch(root: Path, seeds: str = SEEDS, timeout: int = 900):
    return cli("-m", *FAST, seeds, f"paths.root={root}", timeout=timeout)


def runs(root: Path) -> list[Path]:
    return sorted((root / "headline" / "runs").iterdir())


def redone(root: Path, victim: Path, *, detail: str) -> tuple[bool, str]:
    """status names the damage, the analysis skips it, a relaunch redoes exactly it and exits 0."""
    from analysis.collect import collect_runs
    from pipeline.runfolder import is_done

    report = status_of(root)
    problem = next((p for p in report["problems"] if p["run_id"] == victim.name), None)
    if problem is None or detail not in (problem["detail"] or ""):
        return False, f"status said {problem}"
    skipped = {s.run_id for s in collect_runs(root, progress=False, use_cache=False).skipped}
    if victim.name not in skipped:
        return False, "the analysis used the damaged run"
    again = relaunch(root)
    if again.returncode != 0 or not is_done(victim):
        return False, f"relaunch exit {again.returncode}: {again.stderr.strip().splitlines()[-1][:160]}"
    return True, f"status: {problem['detail'][:70]}; relaunch redid it"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _set_status(run_dir: Path, **changes) -> None:
    status = json.loads((run_dir / "status.json").read_text())
    status.update(changes)
    (run_dir / "status.json").write_text(json.dumps(status))


def _listing(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())["files"]


def fault_truncated(root):
    v = runs(root)[0]
    data = (v / "curves.parquet").read_bytes()
    (v / "curves.parquet").write_bytes(data[: len(data) // 2])
    return redone(root, v, detail="curves.parquet")


def fault_same_size_edit(root):
    v = runs(root)[0]
    text = (v / "summary.json").read_text()
    (v / "summary.json").write_text(text.replace("0", "1", 1))
    return redone(root, v, detail="changed since the run wrote it")


def fault_deleted(root):
    v = runs(root)[0]
    (v / "readouts.parquet").unlink()
    return redone(root, v, detail="readouts.parquet missing")


def fault_status_unreadable(root):
    v = runs(root)[0]
    (v / "status.json").write_text('{"state": "do')
    return redone(root, v, detail="status.json unreadable")


def fault_status_not_object(root):
    v = runs(root)[0]
    (v / "status.json").write_text("[1, 2]")
    return redone(root, v, detail="not a JSON object")


def fault_dev_zero(root):
    v = runs(root)[0]
    _set_status(v, files={**_listing(v), "/dev/zero": {"bytes": 0, "sha256": _sha(b"")}})
    return redone(root, v, detail="'/dev/zero', which is not a file of the run folder")


def fault_outside_file(root):
    outside = root.parent / "passwd"
    outside.write_text("root:x:0:0::/root:/bin/sh\n")
    v = runs(root)[0]
    data = outside.read_bytes()
    files = {**_listing(v), "../../../passwd": {"bytes": len(data), "sha256": _sha(data)}}
    _set_status(v, files=files)
    return redone(root, v, detail="not a file of the run folder")


def fault_empty_listing(root):
    v = runs(root)[0]
    _set_status(v, files={})
    return redone(root, v, detail="does not list")


def fault_record_link(root):
    v = runs(root)[0]
    copy = root.parent / "curves-copy.parquet"
    shutil.copy(v / "curves.parquet", copy)
    (v / "curves.parquet").unlink()
    (v / "curves.parquet").symlink_to(copy)
    return redone(root, v, detail="symbolic link")


def fault_record_fifo(root):
    v = runs(root)[0]
    (v / "curves.parquet").unlink()
    os.mkfifo(v / "curves.parquet")
    return redone(root, v, detail="a FIFO")


def fault_huge_status(root):
    v = runs(root)[0]
    with open(v / "status.json", "r+b") as fh:
        fh.truncate(64 << 20)  # sparse
    return redone(root, v, detail="more than any such file holds")


def fault_loop(root):
    from analysis.collect import collect_runs

    loop = root / "headline" / "runs" / planned_id(root, "seed=3")
    loop.symlink_to(loop)
    report = status_of(root)
    skipped = {s.run_id: s.reason for s in collect_runs(root, progress=False).skipped}
    again = relaunch(root, "seed=0,1,2,3")
    ok = (
        any(p["run_id"] == loop.name for p in report["problems"])
        and "leads nowhere" in skipped.get(loop.name, "")
        and again.returncode == 1
        and f"{loop.name}: NotReadable" in again.stderr
    )
    return ok, "status, analysis and the sweep name the loop; the sweep exits 1 without writing through it"


def fault_outside_link(root):
    from analysis.collect import collect_runs

    elsewhere = root.parent / "elsewhere" / "gesture-p00-r009-xxxxxxxxxx"
    shutil.copytree(runs(root)[0], elsewhere)
    (root / "headline" / "runs" / elsewhere.name).symlink_to(elsewhere)
    skipped = {s.run_id: s.reason for s in collect_runs(root, progress=False).skipped}
    report = status_of(root)
    ok = "outside the outputs root" in skipped.get(elsewhere.name, "") and any(
        "symbolic link" in (p["detail"] or "") for p in report["problems"]
    )
    return ok, "not read by status or the analysis"


def planned_id(root: Path, seed: str) -> str:
    from pipeline.identity import run_id
    from tests.helpers import run_config

    return run_id(run_config(*FAST, seed, f"paths.root={root}"))


def _claim(root: Path, seed: str, info: dict, age: float | None = None) -> Path:
    from pipeline.runfolder import file_system_now

    run_dir = root / "headline" / "runs" / planned_id(root, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "claim.json").write_text(json.dumps(info))
    if age is not None:
        when = file_system_now(run_dir) - age
        os.utime(run_dir / "claim.json", (when, when))
    return run_dir


def _claimed_run_computed(root: Path, run_dir: Path) -> tuple[bool, str]:
    from pipeline.runfolder import is_done

    again = relaunch(root, "seed=0,1,2,3")
    ok = again.returncode == 0 and is_done(run_dir)
    return ok, "taken over and computed" if ok else f"exit {again.returncode}: {again.stderr[-200:]}"


def fault_future_claim(root):
    run_dir = _claim(root, "seed=3", {"host": "fast-clock-node", "pid": 7, "token": "x"}, age=-86400)
    return _claimed_run_computed(root, run_dir)


def fault_silent_node(root):
    run_dir = _claim(root, "seed=3", {"host": "dead-node", "pid": 7, "token": "x"}, age=20 * 60)
    return _claimed_run_computed(root, run_dir)


def fault_unreadable_claim(root):
    run_dir = _claim(root, "seed=3", {}, age=3600)
    (run_dir / "claim.json").write_text('{"host": ')
    os.utime(run_dir / "claim.json", (time.time() - 3600,) * 2)
    return _claimed_run_computed(root, run_dir)


def fault_dead_pid(root):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run_dir = _claim(root, "seed=3", {"host": socket.gethostname(), "pid": proc.pid, "token": "x"})
    return _claimed_run_computed(root, run_dir)


def fault_reused_pid(root):
    from pipeline.runfolder import try_claim

    probe = root.parent / "probe-claim"
    claim = try_claim(probe)
    info = json.loads((probe / "claim.json").read_text())
    claim.release()
    info.update(pid_start=info["pid_start"] - 1, token="x")  # this live pid, another process's start
    run_dir = _claim(root, "seed=3", info)
    return _claimed_run_computed(root, run_dir)


def fault_owner_never_finishes(root):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(20)"])
    _claim(root, "seed=3", {"host": socket.gethostname(), "pid": owner.pid, "token": "x"})
    again = relaunch(root, "seed=0,1,2,3")
    owner.wait()
    ok = again.returncode == 1 and "are not done" in again.stderr and "waiting for 1 run" in again.stderr
    return ok, "the sweep waited for the owner, then exited 1 naming the run it never finished"


def _wait_running(runs_dir: Path, n: int, timeout: float = 600) -> list[Path]:
    from pipeline.runfolder import read_status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []
        states = []
        for f in found:
            try:
                states.append((read_status(f) or {}).get("state"))
            except ValueError:
                states.append(None)
        if len(found) >= n and states.count("running") >= n and all((f / "claim.json").exists() for f in found):
            return found
        time.sleep(0.2)
    raise TimeoutError("the runs never ran")


def _start(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args, f"paths.root={root}"],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def fault_sigkill_worker(root):
    from pipeline.runfolder import is_done

    fresh = root.parent / "kill"
    args = ["-m", "data_source=gesture", "pair=0,1", "seed=0", "trainer.epochs=30", "hydra.launcher.n_jobs=2"]
    proc = _start(fresh, *args)
    victim, _ = _wait_running(fresh / "headline" / "runs", 2)
    os.kill(json.loads((victim / "claim.json").read_text())["pid"], signal.SIGKILL)
    _, err = proc.communicate(timeout=900)
    again = cli(*args, f"paths.root={fresh}", timeout=900)
    ok = proc.returncode == 1 and "WorkerDied" in err and again.returncode == 0 and is_done(victim)
    return ok, "the sweep listed the lost run (WorkerDied), the relaunch computed it"


def fault_sigterm_run(root):
    from pipeline.runfolder import read_status

    fresh = root.parent / "term"
    proc = _start(fresh, "data_source=gesture", "pair=0", "trainer.epochs=300")
    (run_dir,) = _wait_running(fresh / "headline" / "runs", 1)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=300)
    status = read_status(run_dir) or {}
    ok = proc.returncode == 143 and status.get("state") == "interrupted" and not (run_dir / "claim.json").exists()
    return ok, "interrupted by SIGTERM, claim released, exit 143"


def fault_sigterm_driver(root):
    from pipeline.runfolder import read_status

    fresh = root.parent / "termdriver"
    proc = _start(fresh, "-m", "data_source=gesture", "pair=0,1", "seed=0", "trainer.epochs=300")
    folders = _wait_running(fresh / "headline" / "runs", 2)
    workers = [json.loads((f / "claim.json").read_text())["pid"] for f in folders]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=300)
    time.sleep(1)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    states = [(read_status(f) or {}).get("state") for f in folders]
    ok = proc.returncode == 130 and states == ["interrupted"] * 2 and not alive
    return ok, "exit 130, both runs interrupted, no orphan job process"


def fault_full_disk(root):
    from pipeline.status import collect
    from tests.helpers import fill_disk

    disk = root.parent / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)]).returncode:
        return None, "needs the superuser and mount"
    try:
        proc = _start(disk / "out", "data_source=gesture", "pair=0", "trainer.epochs=6", "dataset.time_slices=8")
        _wait_running(disk / "out" / "headline" / "runs", 1)
        fill_disk(disk)
        proc.communicate(timeout=600)
        (problem,) = collect(disk / "out")["headline"]["problems"]
        ok = problem["state"] == "failed" and "No space left" in (problem["detail"] or "")
        return ok, f"status: {problem['state']}: {(problem['detail'] or '')[:60]}"
    finally:
        subprocess.run(["umount", "-l", str(disk)])


class Exploit:
    """A pickle that runs a shell command when it is loaded (what the red team planted, harmlessly)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def fault_foreign_context(root):
    import pickle

    from pipeline.private import KEY_ENV, ensure_private_tree, new_key, seal, write_private

    base = root.parent / "ctx" / ".hydra"
    work = base / "sweeps" / "s" / ".local_launcher"
    ensure_private_tree(base, work)
    marker = root.parent / "pwned"
    # sealed, but with a key of the attacker's: the launch's key is in its job processes' environment only
    write_private(work / "context-0.pkl", seal(pickle.dumps(Exploit(f"touch {marker}")), new_key()))
    script = "import sys,json; sys.path[:0]=[sys.argv[1]]; from hydra_plugins.lcm_study.local_launcher import run_job_process as r; r(*sys.argv[2:4], 0, ['seed=0'], sys.argv[4])"
    env = {**ENV, KEY_ENV: new_key()}
    done = subprocess.run(
        [sys.executable, "-c", script, str(REPO), str(base), str(work / "context-0.pkl"), str(work / "r.pkl")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    ok = done.returncode != 0 and "NotPrivate" in done.stderr and not marker.exists()
    return ok, "the job process refused the context (seal does not match); nothing ran"


def fault_group_writable_context(root):
    from pipeline.private import NotPrivate, ensure_private_tree, read_private, write_private

    base = root.parent / "gw" / ".hydra"
    ensure_private_tree(base, base / "w")
    write_private(base / "w" / "context-0.pkl", b"x")
    os.chmod(base / "w" / "context-0.pkl", 0o664)
    try:
        read_private(base, base / "w" / "context-0.pkl")
    except NotPrivate as exc:
        return True, str(exc)[-80:]
    return False, "a group-writable pickle was read"


def fault_loose_hydra(root):
    from pipeline.runfolder import is_done

    hydra = root / ".hydra"
    os.chmod(hydra, 0o777)
    again = relaunch(root, "seed=0,1,2,3")
    new = root / "headline" / "runs" / planned_id(root, "seed=3")
    ok = again.returncode == 0 and (hydra.stat().st_mode & 0o777) == 0o700 and is_done(new)
    return ok, ".hydra tightened to 0700 before anything was written there; the sweep ran"


def fault_edited_config_cached(root):
    from analysis.collect import collect_runs

    cache = root.parent / "cache"
    collect_runs(root, cache_dir=cache, progress=False)
    config = runs(root)[0] / "config.yaml"
    before = config.stat()
    config.write_text(config.read_text().replace("labels: real", "labels: shuffled", 1))
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    cached = collect_runs(root, cache_dir=cache, progress=False)
    fresh = collect_runs(root, progress=False, use_cache=False)
    name = runs(root)[0].name
    ok = all(name in {s.run_id for s in c.skipped} for c in (cached, fresh))
    return ok, "the cached analysis skips it as damaged, as --no-cache and status do"


def fault_damaged_cache(root):
    from analysis.collect import collect_runs

    cache = root.parent / "cache2"
    first = collect_runs(root, cache_dir=cache, progress=False)
    for path in cache.iterdir():
        if path.suffix in (".npy", ".parquet"):
            path.write_bytes(path.read_bytes()[:10])
    again = collect_runs(root, cache_dir=cache, progress=False)
    ok = again.metrics.equals(first.metrics) and again.n_read == len(first.runs)
    return ok, "a damaged cache is read again from the runs, same metrics"


def fault_plans_fifo(root):
    os.mkfifo(root / "headline" / "plans" / "zz.csv")
    report = status_of(root)
    ok = any("zz.csv" in note for note in report.get("notes", []))
    return ok, "status skips the FIFO with a note"


def fault_data_damaged_past_header(root):
    from pipeline.data.watch import watch_file

    damaged = root.parent / "watch_dataset.npy"
    data = Path(watch_file(None)).read_bytes()
    damaged.write_bytes(data[: len(data) // 2])  # its header intact: the planning-time file check passes it
    bad = root.parent / "bad"
    done = cli("-m", *FAST, "seed=0,1", f"dataset.root={damaged}", f"paths.root={bad}")
    ok = done.returncode == 1 and "dataset" in done.stderr and "Traceback" not in done.stderr and not bad.exists()
    return ok, "refused at planning, which loads the data as the run would: nothing written"


FAULTS: list[tuple[str, Callable]] = [
    ("record file truncated", fault_truncated),
    ("record file changed, same size", fault_same_size_edit),
    ("record file deleted", fault_deleted),
    ("status.json unreadable", fault_status_unreadable),
    ("status.json not an object", fault_status_not_object),
    ("checksum list naming /dev/zero", fault_dev_zero),
    ("checksum list naming a file outside the folder, with its digest", fault_outside_file),
    ("empty checksum list", fault_empty_listing),
    ("record file replaced by a link to an identical copy", fault_record_link),
    ("record file replaced by a FIFO", fault_record_fifo),
    ("status.json of 64 MB (sparse)", fault_huge_status),
    ("symbolic-link loop named as a planned run", fault_loop),
    ("link in runs/ to a run outside the root", fault_outside_link),
    ("claim dated a day ahead (clock skew)", fault_future_claim),
    ("claim of a node silent for 20 minutes", fault_silent_node),
    ("unreadable claim", fault_unreadable_claim),
    ("claim of a dead process", fault_dead_pid),
    ("claim of a pid since reused", fault_reused_pid),
    ("claim whose owner ends without finishing", fault_owner_never_finishes),
    ("job process killed (SIGKILL)", fault_sigkill_worker),
    ("SIGTERM to a run", fault_sigterm_run),
    ("SIGTERM to the sweep driver", fault_sigterm_driver),
    ("disk full mid-run", fault_full_disk),
    ("launch context replaced by another's pickle", fault_foreign_context),
    ("launch context left group-writable", fault_group_writable_context),
    (".hydra left writable by everyone", fault_loose_hydra),
    ("config.yaml edited by hand, mtime restored", fault_edited_config_cached),
    ("analysis cache damaged", fault_damaged_cache),
    ("FIFO among the sweep plans", fault_plans_fifo),
    ("data file damaged past its header", fault_data_damaged_past_header),
]


def try_fault(name: str, fn: Callable, base: Path, work: Path) -> Outcome:
    folder = work / hashlib.sha1(name.encode()).hexdigest()[:12]
    folder.mkdir(parents=True)
    root = folder / "out"
    shutil.copytree(base, root, symlinks=True)
    try:
        ok, note = fn(root)
    except Exception as exc:  # a crash of the pipeline or of the experiment: not survived
        ok, note = False, f"{type(exc).__name__}: {str(exc)[:160]}"
    return Outcome(name, bool(ok), note, "skipped" if ok is None else "")


def base_study(work: Path) -> Path:
    root = work / "base"
    done = cli("-m", *FAST, SEEDS, f"paths.root={root}")
    if done.returncode != 0:
        raise SystemExit(f"the base study failed:\n{done.stderr[-3000:]}")
    return root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="an empty folder for the experiments (removed first)")
    parser.add_argument("--jobs", type=int, default=2, help="bad inputs tried at once")
    parser.add_argument("--only", choices=("inputs", "faults"))
    parser.add_argument("--pick", default="", help="only the experiments whose name contains this text")
    args = parser.parse_args(argv)
    work = Path(args.work).absolute()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.monotonic()
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}", flush=True)
    inputs: list[Outcome] = []
    faults: list[Outcome] = []
    if args.only != "faults":
        from tests.bad_inputs import write_bad_data_files

        write_bad_data_files(work / "files")
        rows = [r for r in bad_input_rows(work / "files") if args.pick in r[0]]
        with ThreadPoolExecutor(args.jobs) as pool:
            for outcome in pool.map(lambda r: try_bad_input(r, work / "inputs"), rows):
                inputs.append(outcome)
                print(f"input  {'ok ' if outcome.ok else 'BAD'} {outcome.name}: {outcome.note}", flush=True)
    if args.only != "inputs":
        base = base_study(work)
        for name, fn in [(n, f) for n, f in FAULTS if args.pick in n]:
            outcome = try_fault(name, fn, base, work / "faults")
            faults.append(outcome)
            print(f"fault  {'ok ' if outcome.ok else 'BAD'} {name}: {outcome.note}", flush=True)
    summarize(inputs, faults, time.monotonic() - t0)
    return 0 if all(o.ok for o in inputs + faults if o.kind != "skipped") else 1


def summarize(inputs: list[Outcome], faults: list[Outcome], seconds: float) -> None:
    tried = [f for f in faults if f.kind != "skipped"]
    before = sum(o.kind == "before" for o in inputs)
    after = sum(o.kind == "after" for o in inputs)
    accepted = sum(o.kind == "accepted" for o in inputs)
    print("\n| | count |\n|---|---|")
    print(f"| fault kinds survived / tried | {sum(f.ok for f in tried)} / {len(tried)} |")
    skipped = [f.name for f in faults if f.kind == "skipped"]
    if skipped:
        print(f"| fault kinds not tried here | {len(skipped)} ({'; '.join(skipped)}) |")
    print(f"| bad inputs refused before writing / tried | {before} / {len(inputs)} |")
    print(f"| bad inputs refused only after writing | {after} |")
    print(f"| bad inputs wrongly accepted | {accepted} |")
    print(f"\n{seconds / 60:.1f} min; load at the end {os.getloadavg()}")


if __name__ == "__main__":
    sys.exit(main())
