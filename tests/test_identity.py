"""Run identity over a growing configuration (pipeline/identity.py, the registry in pipeline/config_schema.py):
adding a key with a default renames no finished run, a key must be declared before a config may hold it,
and the rules that keep ids stable (speed-only keys, switched-off blocks) hold."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from hydra import compose, initialize_config_dir

from pipeline import config_schema
from pipeline.config import ConfigError
from pipeline.config_schema import key
from pipeline.identity import semantic_view
from pipeline.planning import CONFIG_DIR, Planner
from tests.helpers import run_plan

PLANS = [
    (),
    ("data_source=sentence", "pair=3", "seed=2"),
    ("labels=shuffled", "seed=40"),
    ("study=architectures", "seed=4"),
    ("study=critical_pathways", "seed=0"),
    ("study=multitask", "seed=1"),
]


def plan_ids(conf_dir: str, root) -> dict:
    ids = {}
    with initialize_config_dir(conf_dir, version_base="1.3"):
        planner = Planner(lambda o: compose("config", overrides=list(o)))
        for overrides in PLANS:
            line = [*overrides, f"paths.root={root}"]
            ids[overrides] = planner.plan(compose("config", overrides=line), line).run_id
    return ids


@pytest.fixture
def grown_conf(tmp_path, monkeypatch):
    """The project's conf/ with a new trainer key at its default (0: no warm-up, what every run did), and
    the key declared in the registry as added later with that value as 'before'."""
    conf = tmp_path / "conf"
    shutil.copytree(CONFIG_DIR, conf)
    with open(conf / "trainer" / "default.yaml", "a") as fh:
        fh.write("\n# epochs of linear learning-rate warm-up\nwarmup_epochs: 0\n")

    @dataclasses.dataclass(kw_only=True)
    class GrownTrainer(config_schema.SequenceTrainer):
        warmup_epochs: int = key(0, ge=0, since="99.0.0", before=0)

    grown = dataclasses.replace(config_schema.RUNNERS["sequence"], trainer=GrownTrainer)
    monkeypatch.setitem(config_schema.RUNNERS, "sequence", grown)
    monkeypatch.setattr(config_schema, "_ALL", None)  # the registry's cache of every key's rule
    yield conf
    config_schema._ALL = None


def test_adding_a_key_with_a_default_renames_no_run(tmp_path, grown_conf):
    before = plan_ids(CONFIG_DIR, tmp_path / "out")
    after = plan_ids(str(grown_conf), tmp_path / "out")
    assert after == before
    # the key is in the config (config.yaml records it) and a value other than the default is another run
    with initialize_config_dir(str(grown_conf), version_base="1.3"):
        planner = Planner(lambda o: compose("config", overrides=list(o)))
        line = ["trainer.warmup_epochs=2", f"paths.root={tmp_path / 'out'}"]
        warm = planner.plan(compose("config", overrides=line), line)
    assert warm.cfg.trainer.warmup_epochs == 2 and warm.run_id != before[()]
    assert warm.run_id.rsplit("-", 1)[0] == before[()].rsplit("-", 1)[0]  # the same cell and replicate


def test_a_key_the_registry_does_not_declare_is_refused(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONFIG_DIR, conf)
    with open(conf / "trainer" / "default.yaml", "a") as fh:
        fh.write("\nwarmup_epochs: 0\n")
    with initialize_config_dir(str(conf), version_base="1.3"):
        planner = Planner(lambda o: compose("config", overrides=list(o)))
        line = [f"paths.root={tmp_path / 'out'}"]
        with pytest.raises(ConfigError, match="trainer.warmup_epochs: unknown key; the keys of trainer are epochs, lr"):
            planner.plan(compose("config", overrides=line), line)


@pytest.mark.parametrize(
    "override",
    [
        "probe.knn.gram_precision=float64",  # speed only: the same curves, bit for bit
        "probe.gradient_spectrum.top_k=4",  # an option of a probe that is switched off
        "deficit.onset=3",  # a deficit schedule of kind none
        "trainer.device=cpu",  # where, not what
        "trainer.num_threads=2",
    ],
)
def test_what_cannot_change_a_run_leaves_its_id_alone(tmp_path, override):
    root = f"paths.root={tmp_path}"
    assert run_plan(override, root).run_id == run_plan(root).run_id


@pytest.mark.parametrize(
    "override", ["trainer.grad_clip_norm=null", "probe.gradient_spectrum.enabled=true", "trainer.lr=0.01"]
)
def test_what_changes_a_run_changes_its_id(tmp_path, override):
    root = f"paths.root={tmp_path}"
    assert run_plan(override, root).run_id != run_plan(root).run_id


def test_the_view_of_a_companion_run_ignores_the_headline_groups_and_hashes_moved_keys_where_they_were():
    config = {
        "study": {
            "name": "s",
            "runner": "critical_pathways",
            "factors": ["study.depth"],
            "levels": {"x": [1]},
        },
        "dataset": {"name": "watch"},
        "trainer": {"lr": 0.1, "device": "cpu"},  # the study's own trainer; lr was study.lr until 0.4.0
        "labels": "real",
        "seed": 4,
        "paths": {"root": "/x"},
        "design": {"study.depth": 2, "replicate": 1, "participant": 9},
    }
    assert semantic_view(config) == {
        "study": {"name": "s", "runner": "critical_pathways", "factors": ["study.depth"], "lr": 0.1},
        "design": {"study.depth": 2, "replicate": 1},
    }


# Run ids of runs planned before the companion studies' training keys moved to the trainer group (and the
# dense-sample study's category-structure options to probe.category_structure), with the overrides of then
# and of now: the run ids are the same, so their finished runs are found done.
MOVED = [
    (("study=multitask_pyle2023", "seed=3"), (), "multitask_pyle2023-initlarge-r001-d0bdb58dbb"),
    (
        ("study=critical_pathways_paper", "seed=2"),
        (),
        "critical_pathways_paper-depth4-deficit_onset750-deficit_length150-r000-a74387a948",
    ),
    (
        ("study=dense_sample", "seed=1"),
        ("trainer.epochs=2", "probe.category_structure.per_class=20"),  # were study.epochs, study.category_structure
        "dense_sample-train_per_class500-r001-bd4af46230",
    ),
    (
        ("study=multitask", "seed=0"),
        ("trainer.lr=2.0", "trainer.lr_by_init.large=0.5"),  # were study.lr, study.lr_by_init.large
        "multitask-initstandard-r000-c9d7a6dbdd",
    ),
    (("study=architectures", "seed=7"), (), "gesture-p02-gru-r000-becb7a2597"),
]


@pytest.mark.parametrize("plan,moved,expected", MOVED)
def test_keys_that_moved_keep_their_runs_ids(tmp_path, plan, moved, expected):
    assert run_plan(*plan, *moved, f"paths.root={tmp_path}").run_id == expected
