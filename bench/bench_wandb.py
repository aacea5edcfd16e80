"""What W&B logging (offline) costs a default run, against W&B disabled, side by side.

    python bench/bench_wandb.py [--repeats 4] [--epochs 50]

1. Runs in one process, as a packed sweep job runs them (pipeline/packs.py):
   a default run (gesture, pair 0, 50 epochs) alternately with WANDB_MODE=disabled
   and offline; the median wall time of each, and the time spent inside the W&B
   tracker itself (init, per-epoch logging, map images and curve charts, finish),
   measured around its calls. The first offline run of the process also pays
   `import wandb` and the start of W&B's service; that one-off cost is printed
   on its own.
2. One run per fresh process (`python -m pipeline`), disabled vs offline: what a
   single run pays when nothing is shared (imports, service start).
3. Online with no W&B server to be had (this machine has no internet): one run per
   fresh process with WANDB_MODE=online against a closed local port and against a
   local socket that accepts and never answers, beside offline; the delay is the
   wall-time difference (the start waits logger.wandb.init_timeout at most, then
   the run mirrors offline). Then two runs in one process against the silent
   server: the second one does not wait again. The delay does not depend on the
   run, so these runs are small (--online-epochs, 20 time slices).
4. At study scale: a synthetic study of the headline's size (2 sources x 15 class
   pairs x 25 replicates, real and shuffled labels: 1,500 run folders of 50 epochs x
   150 time slices, tests/analysis_fixtures.py), each marked as mirrored. The study's
   workspace spec (`python -m pipeline.dashboard --root ... --dry-run`: it counts
   the run folders), and `python -m analysis --core-only` from its cache without and
   with `--wandb` (offline), alternately: what the analysis run costs, how big its
   offline folder is, and what its page holds (figures, tables, linked runs).
Wall times move with the machine's load (printed); CPU times (this process and
W&B's service process) much less, so both are printed.
Target: under 5% of a default run.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, load  # noqa: E402  (bench/ is put on the path above)


def _plan(*overrides: str):
    from hydra import compose, initialize_config_dir

    from pipeline.planning import CONFIG_DIR, Planner

    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
        return Planner(lambda o: compose("config", overrides=list(o))).plan(cfg, list(overrides))


class TrackerClock:
    """Seconds spent inside the tracker's methods (wrapped in place)."""

    def __init__(self):
        from pipeline import tracking

        self.seconds = 0.0
        for name in ("__init__", "log_epoch", "finish"):
            original = getattr(tracking.Tracker, name)
            setattr(tracking.Tracker, name, self._timed(original))

    def _timed(self, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return wrapper


def fresh_env(**extra: str) -> dict:
    """The environment of a fresh process: without WANDB_SERVICE, through which W&B would let a child join
    this process's W&B service (a user's `python -m pipeline` starts its own)."""
    return {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}, "PYTHONUNBUFFERED": "1", **extra}


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds) of every process, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after "pid (comm)": state ppid ... utime (11th) stime (12th)
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its live descendants (W&B's service, wandb-core).

    CPU time, unlike wall time, hardly moves when other processes compete for the cores.
    """
    table = _proc_table()
    total, todo = time.process_time(), [os.getpid()]
    while todo:
        parent = todo.pop()
        for pid, (ppid, seconds) in table.items():
            if ppid == parent:
                total += seconds
                todo.append(pid)
    return total


def in_process(repeats: int, epochs: int, scratch: Path) -> dict:
    from pipeline.run import execute

    clock = TrackerClock()
    times: dict[str, list[float]] = {"disabled": [], "offline": []}
    cpu: dict[str, list[float]] = {"disabled": [], "offline": []}
    tracker_seconds: list[float] = []
    first_offline = None
    plan = ["disabled", "offline"] + ["disabled", "offline"] * repeats
    for i, mode in enumerate(plan):
        os.environ["WANDB_MODE"] = mode
        run = _plan(f"paths.root={scratch / f'inproc-{i}'}", f"trainer.epochs={epochs}")
        clock.seconds = 0.0
        c0, t0 = cpu_seconds(), time.perf_counter()
        outcome = execute(run)
        wall, used = time.perf_counter() - t0, cpu_seconds() - c0
        assert outcome.state == "done", outcome
        if i < 2:  # warm-up: torch's and the data's first use, and W&B's import and service start
            if mode == "offline":
                first_offline = clock.seconds
            continue
        times[mode].append(wall)
        cpu[mode].append(used)
        if mode == "offline":
            tracker_seconds.append(clock.seconds)
    return {"times": times, "cpu": cpu, "tracker": tracker_seconds, "first_offline_tracker": first_offline}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished children and what they waited for
    return usage.ru_utime + usage.ru_stime


def fresh_processes(repeats: int, epochs: int, scratch: Path) -> dict[str, dict[str, list[float]]]:
    times: dict[str, list[float]] = {"disabled": [], "offline": []}
    cpu: dict[str, list[float]] = {"disabled": [], "offline": []}
    for i in range(repeats):
        for mode in ("disabled", "offline"):
            env = fresh_env(WANDB_MODE=mode)
            c0, t0 = _children_cpu(), time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pipeline",
                    f"paths.root={scratch / f'proc-{mode}-{i}'}",
                    f"trainer.epochs={epochs}",
                ],
                cwd=REPO,
                env=env,
                check=True,
                capture_output=True,
            )
            times[mode].append(time.perf_counter() - t0)
            cpu[mode].append(_children_cpu() - c0)
    return {"times": times, "cpu": cpu}


SMALL = ("dataset.time_slices=20",)  # the online delay does not depend on the run: small runs measure it


class SilentServer:
    """A local socket that accepts connections and never answers."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.held: list = []
        threading.Thread(
            target=lambda: [self.held.append(self.socket.accept()) for _ in iter(int, 1)], daemon=True
        ).start()


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _run_process(scratch: Path, name: str, epochs: int, env: dict, *overrides: str) -> tuple[float, dict]:
    """Wall time of `python -m pipeline` in a fresh process, and the run's summary.json W&B entry."""
    import json

    root = scratch / name
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipeline", f"paths.root={root}", f"trainer.epochs={epochs}", *overrides],
        cwd=REPO,
        env=fresh_env(**env),
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - t0
    (summary,) = root.glob("headline/runs/*/summary.json")
    return wall, json.loads(summary.read_text()).get("wandb", {})


def online_without_server(repeats: int, epochs: int, scratch: Path) -> dict:
    silent = SilentServer()
    servers = {"closed port": closed_port(), "silent server": silent.url}
    key = {"WANDB_API_KEY": "0" * 40}  # a login W&B cannot check without its server
    out: dict = {"offline": [], **{name: [] for name in servers}, "entries": {}}
    for i in range(repeats):
        out["offline"].append(_run_process(scratch, f"online-off-{i}", epochs, {"WANDB_MODE": "offline"}, *SMALL)[0])
        for name, url in servers.items():
            env = {"WANDB_MODE": "online", "WANDB_BASE_URL": url, **key}
            wall, entry = _run_process(scratch, f"online-{name.split()[0]}-{i}", epochs, env, *SMALL)
            out[name].append(wall)
            out["entries"][name] = entry
    # two runs in one process: the second does not wait again
    code = (
        "import os, sys, time; sys.path.insert(0, os.getcwd()); "
        "from bench_wandb import _plan; from pipeline.run import execute\n"
        "for seed in (0, 1):\n"
        "    t0 = time.perf_counter(); execute(_plan(f'paths.root={root}', f'trainer.epochs={epochs}', 'dataset.time_slices=20', f'seed={seed}'))\n"
        "    print(time.perf_counter() - t0)\n"
    )
    env = fresh_env(WANDB_MODE="online", WANDB_BASE_URL=silent.url, **key)
    pack = subprocess.run(
        [sys.executable, "-c", code.replace("{root}", str(scratch / "online-pack")).replace("{epochs}", str(epochs))],
        cwd=Path(__file__).resolve().parent,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    out["pack"] = [float(x) for x in pack.stdout.split()]
    return out


def report_in_process(args, scratch: Path) -> None:
    """Part 1: runs in one process, disabled vs offline."""
    r = in_process(args.repeats, args.epochs, scratch)
    dis, off = statistics.median(r["times"]["disabled"]), statistics.median(r["times"]["offline"])
    tracker = statistics.median(r["tracker"])
    print(f"1. runs in one process (as a packed job), median of {args.repeats} each:")
    print(f"   {'W&B disabled':<22}{dis:7.2f} s per run   " + " ".join(f"{t:.2f}" for t in r["times"]["disabled"]))
    print(f"   {'W&B offline':<22}{off:7.2f} s per run   " + " ".join(f"{t:.2f}" for t in r["times"]["offline"]))
    print(
        f"   difference: {off - dis:+.2f} s ({(off - dis) / dis:+.1%}); time inside the tracker: "
        f"{tracker:.2f} s per run ({tracker / dis:.1%} of a disabled run)   "
        + " ".join(f"{t:.2f}" for t in r["tracker"])
    )
    cdis, coff = statistics.median(r["cpu"]["disabled"]), statistics.median(r["cpu"]["offline"])
    print(
        f"   CPU time (this process + W&B's service): disabled {cdis:.2f} s, offline {coff:.2f} s per run: "
        f"{coff - cdis:+.2f} s ({(coff - cdis) / cdis:+.1%})"
    )
    print(
        f"   first offline run of the process: {r['first_offline_tracker']:.2f} s inside the tracker "
        "(import wandb, W&B service start), once per process\n"
    )


def report_fresh_processes(args, scratch: Path) -> None:
    """Part 2: one run per fresh process, disabled vs offline."""
    p = fresh_processes(max(2, args.repeats // 2), args.epochs, scratch)
    pt, pc = p["times"], p["cpu"]
    pdis, poff = statistics.median(pt["disabled"]), statistics.median(pt["offline"])
    print(f"2. one run per fresh process (python -m pipeline), median of {len(pt['disabled'])} each:")
    print(f"   {'W&B disabled':<22}{pdis:7.2f} s   " + " ".join(f"{t:.2f}" for t in pt["disabled"]))
    print(f"   {'W&B offline':<22}{poff:7.2f} s   " + " ".join(f"{t:.2f}" for t in pt["offline"]))
    print(f"   difference: {poff - pdis:+.2f} s ({(poff - pdis) / pdis:+.1%})")
    cdis, coff = statistics.median(pc["disabled"]), statistics.median(pc["offline"])
    print(
        f"   CPU time of the process and its children: disabled {cdis:.2f} s, offline {coff:.2f} s: "
        f"{coff - cdis:+.2f} s ({(coff - cdis) / cdis:+.1%})"
    )


def report_online_without_server(args, scratch: Path) -> None:
    """Part 3: online mode with no server to be had."""
    o = online_without_server(max(1, args.repeats // 4), args.online_epochs, scratch)
    base = statistics.median(o["offline"])
    timeout = _plan().cfg.logger.wandb.init_timeout
    print(
        f"\n3. online with no server (logger.wandb.init_timeout={timeout} s), one run per fresh process "
        f"({args.online_epochs} epoch, 20 time slices):"
    )
    print(f"   {'offline':<22}{base:7.2f} s   " + " ".join(f"{t:.2f}" for t in o["offline"]))
    for name in ("closed port", "silent server"):
        wall = statistics.median(o[name])
        entry = o["entries"][name]
        print(
            f"   {'online, ' + name:<22}{wall:7.2f} s   delay {wall - base:+.2f} s; summary.json: "
            f"mode {entry.get('mode')}, state {entry.get('state')}"
        )
    first, second = o["pack"]
    print(
        f"   two runs in one process, silent server (time inside execute): {first:.2f} s then {second:.2f} s; "
        f"the second mirrors offline at once ({first - second:+.2f} s: the first one's wait)"
    )


def _mirrored_study(root: Path, replicates: int, epochs: int) -> int:
    """A synthetic headline-sized study under ``root`` whose runs say they have a complete W&B mirror."""
    import json

    from tests.analysis_fixtures import make_study

    study = make_study(
        root,
        study="bench",
        pairs=tuple(range(15)),
        replicates=replicates,
        shuffled_replicates=replicates,
        epochs=epochs,
        slices=150,
        broken=False,
        seed=1,
        progress=True,
    )
    for rid in study["runs"]:
        path = root / "bench" / "runs" / rid / "summary.json"
        entry = {"requested_mode": "offline", "mode": "offline", "state": "complete", "id": rid}
        path.write_text(json.dumps({**json.loads(path.read_text()), "wandb": {**entry, "project": "bench"}}))
    return len(study["runs"])


def _timed(command: list[str], env: dict) -> tuple[float, float, str]:
    """Wall and CPU seconds of a fresh process (and its children), and its stdout."""
    c0, t0 = _children_cpu(), time.perf_counter()
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed: {out.stderr[-2000:]}")
    return time.perf_counter() - t0, _children_cpu() - c0, out.stdout + out.stderr


def _analysis_page(out: Path) -> dict:
    """What the newest analysis run's page holds, read back from its offline file; its folder's size."""
    from tests.wandb_records import history, read_offline, summary

    folder = max(out.glob("wandb/offline-run-*"), key=lambda p: p.stat().st_mtime)
    records = read_offline(next(folder.glob("run-*.wandb")))
    logged = history(records)[0]
    return {
        "figures": len([k for k in logged if k.startswith("figures/") and k.endswith("._type")]),
        "tables": sorted(k[: -len("._type")] for k, v in logged.items() if v == "table-file"),
        "linked": summary(records)["runs/linked"],
        "bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()),
    }


def report_study_scale(args, scratch: Path) -> None:
    """Part 4: the workspace and the analysis run of a headline-sized study."""
    import json

    root = scratch / "study"
    t0 = time.perf_counter()
    n_runs = _mirrored_study(root, args.study_replicates, args.study_epochs)
    print(
        f"\n4. at study scale: {n_runs} run folders ({args.study_epochs} epochs x 150 time slices), written in "
        f"{time.perf_counter() - t0:.0f} s; {load()}"
    )
    env = fresh_env(WANDB_MODE="offline", WANDB_ENTITY="team", MPLBACKEND="Agg")
    dashboard = [sys.executable, "-m", "pipeline.dashboard", "--entity", "team", "--project", "bench"]
    wall, cpu, text = _timed([*dashboard, "--study", "bench", "--root", str(root), "--dry-run"], env)
    spec = json.loads(text[text.index("{") :])
    print(
        f"   workspace spec (dry run, counting the run folders): {wall:.1f} s wall, {cpu:.1f} s CPU; "
        f"maxRuns {spec['spec']['section']['settings']['maxRuns']}"
    )
    out = scratch / "analysis"
    analysis = [sys.executable, "-m", "analysis", "--root", str(root), "--study", "bench", "--core-only"]
    analysis += ["--out", str(out), "--quiet"]
    wall, cpu, _ = _timed(analysis, env)
    print(f"   python -m analysis --core-only, first (fills its cache): {wall:.1f} s wall, {cpu:.1f} s CPU")
    times: dict[str, list[tuple[float, float]]] = {"without": [], "with --wandb": []}
    for _ in range(args.repeats // 2 or 1):
        times["without"].append(_timed(analysis, env)[:2])
        times["with --wandb"].append(_timed([*analysis, "--wandb"], env)[:2])
    for name, pairs in times.items():
        walls, cpus = [w for w, _ in pairs], [c for _, c in pairs]
        print(
            f"   from its cache, {name:<13} {statistics.median(walls):6.1f} s wall, "
            f"{statistics.median(cpus):6.1f} s CPU   (" + ", ".join(f"{w:.1f}/{c:.1f}" for w, c in pairs) + ")"
        )
    wall_cost = statistics.median(w for w, _ in times["with --wandb"]) - statistics.median(
        w for w, _ in times["without"]
    )
    cpu_cost = statistics.median(c for _, c in times["with --wandb"]) - statistics.median(
        c for _, c in times["without"]
    )
    page = _analysis_page(out)
    print(
        f"   the analysis run costs {wall_cost:+.1f} s wall, {cpu_cost:+.1f} s CPU; its offline folder "
        f"{page['bytes'] / 2**20:.1f} MiB; on its page {page['figures']} figures, tables "
        f"{', '.join(page['tables'])}, {page['linked']} of {n_runs} runs linked; {load()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=4, help="runs per mode (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs per run (default %(default)s, the default run)")
    parser.add_argument(
        "--online-epochs", type=int, default=1, help="epochs of the runs of part 3 (default %(default)s)"
    )
    parser.add_argument("--parts", default="1,2,3", help="which parts to run, 1-4 (default %(default)s)")
    parser.add_argument(
        "--study-replicates", type=int, default=25, help="replicates per class pair and labels in part 4 (default 25)"
    )
    parser.add_argument("--study-epochs", type=int, default=50, help="epochs of part 4's runs (default 50)")
    args = parser.parse_args()
    parts = {int(p) for p in args.parts.split(",")}
    print(describe(torch_threads=1))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-wandb-") as tmp:
        scratch = Path(tmp)
        for var in ("WANDB_CONFIG_DIR",):  # W&B's staging area and cache go to each run's W&B folder, as for a user
            os.environ[var] = str(scratch / "wandb-cache")
        os.environ["WANDB_SILENT"] = "true"
        media_every = _plan().cfg.logger.wandb.media_every
        print(f"default run: gesture pair 0, {args.epochs} epochs, logger.wandb.media_every={media_every}\n")

        for part, report in (
            (1, report_in_process),
            (2, report_fresh_processes),
            (3, report_online_without_server),
            (4, report_study_scale),
        ):
            if part in parts:
                report(args, scratch)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
