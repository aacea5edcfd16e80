"""The local launcher (``hydra/launcher=local``): each job of a sweep in a process of its own, at most
``n_jobs`` at once, each awaited on its own, so that a process that dies (SIGKILL, out of memory) loses
only its own job: the others finish and the study sweeper reports the lost runs and what to relaunch.

What a job process needs (Hydra's context) and what it returns travel as pickles in a folder only you can
write (``<paths.root>/.hydra/...``, pipeline/private.py), sealed with a key made for this launch and
handed to the job processes in their environment: a pickle is unpickled only after its folder, its owner
and its seal check out."""

# no `from __future__ import annotations`: Hydra's plugin scan loads this module outside sys.modules, where
# dataclasses cannot resolve string annotations
import inspect
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from pipeline.config import hydra_root
from pipeline.private import (
    KEY_ENV,
    NotPrivate,
    ensure_private_tree,
    new_key,
    read_private,
    seal,
    unseal,
    write_private,
)

log = logging.getLogger(__name__)

# thread pools of the numeric libraries, limited in each job process as joblib's loky workers were
# (cpu count // n_jobs), so that the jobs running at once do not oversubscribe the cores
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass
class LocalLauncherConf:
    _target_: str = "hydra_plugins.lcm_study.local_launcher.LocalLauncher"
    # jobs running at once: -1 = one per CPU core, -2 = all cores but one, ... (as joblib counts)
    n_jobs: int = -1


ConfigStore.instance().store(
    group="hydra/launcher", name="lcm_local", node=LocalLauncherConf, provider="learning-curve-maps"
)


class WorkerDied(RuntimeError):
    """A job's process ended without a result (killed by a signal, out of memory, or exited)."""


def parallel_jobs(n_jobs: int) -> int:
    """Processes at once for ``n_jobs`` (joblib's convention: negative counts from the core count)."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
        raise ValueError(f"hydra.launcher.n_jobs={n_jobs!r}: must be an integer >= 1, or -1 (every core), -2, ...")
    return max(1, n_jobs if n_jobs > 0 else (os.cpu_count() or 1) + 1 + n_jobs)


class LocalLauncher(Launcher):
    def __init__(self, n_jobs: int = -1) -> None:
        self.n_jobs = parallel_jobs(n_jobs)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        work = sweep_dir / ".local_launcher"
        base = Path(hydra_root(str(self.config.paths.root)))
        if base not in work.parents:
            raise NotPrivate(f"hydra.sweep.dir={sweep_dir}: the local launcher keeps its pickles under {base} only")
        ensure_private_tree(base, work)
        # what every job needs, written once, sealed with this launch's key; only its own processes read it
        context = work / f"context-{initial_job_idx}.pkl"
        key = new_key()
        task = inspect.unwrap(self.task_function)
        state = {
            "hydra_context": self.hydra_context,
            "config": self.config,
            "task": (task.__module__, task.__qualname__),
            "singleton_state": Singleton.get_state(),
        }
        # cloudpickle, as joblib's workers get it: Hydra's state holds local functions (OmegaConf resolvers)
        write_private(context, seal(cloudpickle.dumps(state), key))
        env = {**os.environ, KEY_ENV: key}
        threads = max((os.cpu_count() or 1) // self.n_jobs, 1)
        env.update({var: os.environ.get(var, str(threads)) for var in THREAD_VARS})
        env.setdefault("ENABLE_IPC", "1")

        results: list[JobReturn | None] = [None] * len(job_overrides)
        pending = list(enumerate(job_overrides))
        running: list[tuple[int, subprocess.Popen, Path]] = []
        try:
            while pending or running:
                while pending and len(running) < self.n_jobs:
                    number, overrides = pending.pop(0)
                    idx = initial_job_idx + number
                    result = work / f"job-{idx}.result.pkl"
                    # only a result this launch's own process writes is ever unpickled
                    result.unlink(missing_ok=True)
                    args = [
                        json.dumps(sys.path),
                        str(base),
                        str(context),
                        str(idx),
                        json.dumps(list(overrides)),
                        str(result),
                    ]
                    running.append(
                        (number, subprocess.Popen([sys.executable, "-c", WORKER_ENTRY, *args], env=env), result)
                    )
                # each process is awaited on its own (a poll, which works wherever Python does)
                ended = [job for job in running if job[1].poll() is not None]
                for job in ended:
                    running.remove(job)
                    number, proc, result = job
                    results[number] = job_return(proc, base, result, key, job_overrides[number])
                if not ended:
                    time.sleep(0.1)
        except BaseException:
            # Ctrl-C or the sweeper's stop: the jobs still running are stopped too (SIGTERM lets their runs
            # mark themselves interrupted), so that none is left behind as an orphan
            _stop([proc for _, proc, _ in running])
            raise
        finally:
            context.unlink(missing_ok=True)
            if not any(work.iterdir()):
                work.rmdir()
        return [r for r in results if r is not None]


def job_return(proc: subprocess.Popen, base: Path, result: Path, key: str, overrides: Sequence[str]) -> JobReturn:
    """What an ended job process returned: its sealed result, or a failed JobReturn saying how it ended (or
    that its result was not its own)."""
    if proc.returncode == 0 and result.exists():
        try:
            data = unseal(read_private(base, result), key, f"the result of job process {proc.pid} ({result})")
        except NotPrivate as exc:
            return JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=WorkerDied(str(exc)))
        ret = pickle.loads(data)  # sealed by the job process this launch started, in a folder only you can write
        result.unlink()
        return ret
    code = proc.returncode
    if code < 0:
        how = f"killed by {signal.Signals(-code).name}"
    elif code > 128 and code - 128 in {s.value for s in signal.Signals}:
        how = f"stopped by {signal.Signals(code - 128).name} (its run says interrupted)"
    else:
        how = f"ended with exit status {code}"
    return JobReturn(
        overrides=list(overrides),
        status=JobStatus.FAILED,
        _return_value=WorkerDied(
            f"the job's process (pid {proc.pid}) was {how} before it finished"
            + (" (out of memory?)" if code == -signal.SIGKILL else "")
        ),
    )


def _stop(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_job_process(base: str, context: str, idx: int, overrides: list[str], result: str) -> None:
    """One job, in its own process: Hydra's run_job as its launchers call it; the JobReturn to ``result``."""
    import importlib

    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import run_job

    # the launch's key, kept out of the environment of whatever the job starts
    key = os.environ.pop(KEY_ENV, None)
    if not key:
        raise NotPrivate(f"job {idx}: no launch key in {KEY_ENV}; the local launcher starts its job processes itself")
    blob = read_private(Path(base), Path(context))
    state = pickle.loads(unseal(blob, key, f"the launch context {context}"))  # sealed by this job's launcher
    setup_globals()
    Singleton.set_state(state["singleton_state"])
    module, name = state["task"]
    task_function: Any = importlib.import_module(module)
    for part in name.split("."):
        task_function = getattr(task_function, part)
    task_function = inspect.unwrap(task_function)
    hydra_context = state["hydra_context"]
    sweep_config = hydra_context.config_loader.load_sweep_config(state["config"], list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    try:
        ret = run_job(
            hydra_context=hydra_context,
            config=sweep_config,
            task_function=task_function,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    except BaseException as exc:
        if hasattr(exc, "exit_code"):  # a run stopped by a signal (pipeline.run.RunInterrupted): its folder says so
            print(f"[job {idx}] {exc}", file=sys.stderr, flush=True)
            sys.exit(exc.exit_code)
        raise
    try:
        data = cloudpickle.dumps(ret)
    except Exception:  # an error whose object cannot travel: its text does
        error = ret._return_value
        ret._return_value = RuntimeError(f"{type(error).__name__}: {error}")
        data = cloudpickle.dumps(ret)
    write_private(Path(result), seal(data, key))


# the job process's entry: the launching process's import path first (as multiprocessing's spawn does)
WORKER_ENTRY = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
    "from hydra_plugins.lcm_study.local_launcher import run_job_process; "
    "run_job_process(sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5]), sys.argv[6])"
)
