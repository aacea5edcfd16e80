"""The study sweeper stands on Hydra's public plugin API: its sweep expansion is the basic sweeper's (checked
here against the pinned Hydra's own, an internal class used only as the reference), and a failed job's
exception is read without Hydra's extra console line."""

from __future__ import annotations

import io
from contextlib import redirect_stderr

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the reference, in this test only
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus

from hydra_plugins.lcm_study.study_sweeper import StudySweeper, SweepFailed, job_error, sweep_jobs

SWEEPS = [
    ["seed=range(0,5)"],
    ["seed=range(0,25)", "trainer.epochs=20", "paths.root=/tmp/x"],
    ["data_source=gesture,sentence", "pair=0,3", "seed=1"],
    ["labels=real,shuffled", "seed=range(0,3)", "labels=shuffled"],  # a key given twice keeps the last
    ["+study.extra=1,2", "~logger", "study=critical_pathways", "seed=range(2,8,3)"],
    ["seed=choice(4,1,9)", "trainer.lr=0.001,0.01", "hydra.sweeper.runs_per_job=2"],
    ["model.hidden_size=null", "dataset=cricket,imigue", "pair=range(2)"],
    [],
]


@pytest.mark.parametrize("arguments", SWEEPS)
def test_the_sweep_is_the_basic_sweepers(arguments):
    overrides = OverridesParser.create().parse_overrides(arguments)
    assert sweep_jobs(overrides) == BasicSweeper.split_arguments(overrides, None)[0]


def test_an_interval_sweep_is_refused_with_the_override():
    overrides = OverridesParser.create().parse_overrides(["trainer.lr=interval(0.1,1.0)"])
    # by name, not by class: Hydra's plugin scan may load the sweeper module afresh during a test session
    with pytest.raises(Exception, match=r"trainer.lr=interval\(0.1,1.0\): an interval sweep") as refused:
        sweep_jobs(overrides)
    assert type(refused.value).__name__ == SweepFailed.__name__


def test_the_sweeper_is_a_public_hydra_sweeper():
    assert BasicSweeper not in StudySweeper.__mro__
    assert {c.__module__.split(".")[1] for c in StudySweeper.__mro__ if c.__module__.startswith("hydra.")} == {
        "plugins"
    }


def test_a_failed_jobs_exception_is_read_quietly():
    error = ValueError("the run failed")
    failed = JobReturn(overrides=["seed=1"], status=JobStatus.FAILED)
    failed.return_value = error
    console = io.StringIO()
    with redirect_stderr(console):
        assert job_error(failed) is error
    assert console.getvalue() == ""
    done = JobReturn(overrides=["seed=2"], status=JobStatus.COMPLETED)
    done.return_value = 3
    with pytest.raises(ValueError, match="did not fail"):
        job_error(done)
