"""probe.knn.ties and probe.knn.mode: validated before anything runs, part of the run's identity, recorded."""

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import ConfigError
from pipeline.identity import run_id
from pipeline.probes import ProbeContext
from pipeline.probes.knn import KnnProbe, knn_curve
from pipeline.run import execute
from pipeline.schema import KNN_TIE_SHARE
from tests.helpers import run_cli, run_config, run_plan


def test_the_tie_rule_and_the_mode_are_part_of_the_run_id():
    default = run_config()
    assert default.probe.knn.ties == "expected_random_order" and default.probe.knn.mode == "resubstitution"
    ids = {
        run_id(default),
        run_id(run_config("probe.knn.ties=self_first_by_index")),
        run_id(run_config("probe.knn.mode=leave_one_out")),
    }
    assert len(ids) == 3


def test_the_products_precision_is_not_part_of_the_run_id():
    """float32 and float64 products give the same curves (test_knn_compiled.py): one run, one id, the id that
    float64, the default before, gave."""
    default = run_config()
    assert default.probe.knn.gram_precision == "float32"
    assert run_id(default) == run_id(run_config("probe.knn.gram_precision=float64"))
    assert run_id(default) != run_id(run_config("probe.knn.k=5"))


def test_a_run_done_under_one_rule_is_not_done_for_the_other(tmp_path):
    old = execute(run_plan("trainer.epochs=1", "probe.knn.ties=self_first_by_index", f"paths.root={tmp_path}"))
    new = execute(run_plan("trainer.epochs=1", f"paths.root={tmp_path}"))
    assert old.state == new.state == "done" and old.run_id != new.run_id
    again = execute(run_plan("trainer.epochs=1", f"paths.root={tmp_path}"))
    assert again.state == "done" and not again.computed
    curves = {name: pd.read_parquet(o.run_dir / "curves.parquet") for name, o in (("old", old), ("new", new))}
    for table in curves.values():
        share = table[table.probe == KNN_TIE_SHARE]
        assert set(share.split) == {"train"} and share.value.between(0, 1).all()
        assert len(share) == len(table[(table.probe == "knn") & (table.split == "train")])
    # the same run under the two rules: the gesture data's padded tails tie, so the maps differ
    assert not curves["old"].equals(curves["new"])


@pytest.mark.parametrize(
    "key,value,allowed",
    [
        ("ties", "random", ["expected_random_order", "self_first_by_index"]),
        ("mode", "loo", ["resubstitution", "leave_one_out"]),
    ],
)
def test_bad_values_fail_before_anything_runs(tmp_path, key, value, allowed):
    with pytest.raises(ConfigError, match=f"probe.knn.{key}={value!r}"):
        run_config(f"probe.knn.{key}={value}")
    result = run_cli(f"probe.knn.{key}={value}", f"paths.root={tmp_path}", timeout=60)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    for word in [f"probe.knn.{key}", *allowed]:
        assert word in message, message
    assert not (tmp_path / "headline").exists()


def test_probe_rows_hold_the_accuracy_and_the_tie_share():
    rng = np.random.default_rng(0)
    states = torch.tensor(rng.normal(size=(40, 5, 3)))
    states[20:] = states[0]  # half the samples at one fixed point
    labels = torch.tensor(rng.integers(0, 2, 40))
    ctx = ProbeContext(
        epoch=3,
        model=torch.nn.Identity(),
        x_train=states,
        y_train=labels,
        x_test=states[:5],
        y_test=labels[:5],
        training_pass_states=states,
        clean_pass_states=lambda x: x,
    )
    for mode in ("resubstitution", "leave_one_out"):
        rows = KnnProbe(mode=mode, splits=("train", "test")).measure(ctx)
        curve = knn_curve(states, labels, leave_one_out=mode == "leave_one_out")
        knn = rows[(rows.probe == "knn") & (rows.split == "train")]
        share = rows[rows.probe == KNN_TIE_SHARE]
        np.testing.assert_array_equal(knn.value, curve.accuracy)
        np.testing.assert_array_equal(share.value, curve.tie_share)
        assert share.value.min() >= 0.5 and list(share.split.unique()) == ["train"]
        assert list(knn.time_slice) == list(share.time_slice) == [1, 2, 3, 4, 5]
        assert (rows.epoch == 3).all() and len(rows[rows.split == "test"]) == 5
