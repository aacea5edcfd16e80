"""The declared schema (pipeline/config_schema.py): every config the project ships satisfies it, so a key added
to a YAML file without its declaration fails here (and at planning) rather than slipping into run ids; values
are checked as written, never converted; the registry answers each reader the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pipeline.config import ConfigError
from pipeline.config_schema import (
    DESIGN,
    PLUMBING,
    SEMANTIC,
    groups_ignored,
    planned_keys,
    rule_of,
    validate_config,
)
from pipeline.planning import CONFIG_DIR

CONF = Path(CONFIG_DIR)
OPTIONS = (
    [f"study={p.stem}" for p in sorted((CONF / "study").glob("*.yaml"))]
    + [f"model={p.stem}" for p in sorted((CONF / "model").glob("*.yaml")) if p.stem != "custom"]
    + [f"dataset={p.stem}" for p in sorted((CONF / "dataset").glob("*.yaml")) if p.stem not in ("arrays",)]
    + [f"data_source={p.stem}" for p in sorted((CONF / "data_source").glob("*.yaml"))]
    + ["debug=quick"]
)


def composed(*overrides: str):
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("option", OPTIONS)
def test_every_shipped_config_satisfies_its_schema(option):
    extra = ["data_source=sentence"] if option in ("dataset=bbc_news", "dataset=emotion") else []
    validate_config(composed(option, *extra))  # a key without its declaration: "<key>: unknown key ..."


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.batchnorm_time=yes", "model.batchnorm_time='yes': must be true or false"),
        ("trainer.epochs='5'", "trainer.epochs='5': must be an integer"),
        ("trainer.epochs=5.0", "trainer.epochs=5.0: must be an integer"),
        ("probe.knn.splits=[train,7]", "probe.knn.splits=['train', 7]: must be a list of strings"),
        ("split.val_fraction=1", "split.val_fraction=1: must be a number > 0 and < 1"),
        ("deficit.unit=minute", "deficit.unit='minute': allowed values are epoch, step"),
        ("+trainer.warmup=1", "trainer.warmup: unknown key; the keys of trainer are epochs"),
    ],
)
def test_values_are_checked_as_written_naming_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        validate_config(composed(override))
    assert message in str(err.value)


def test_one_registry_for_every_reader():
    assert rule_of("trainer.device").role == PLUMBING and rule_of("logger.wandb.project").role == PLUMBING
    assert rule_of("pair").role == DESIGN and rule_of("study.levels").role == DESIGN
    assert rule_of("trainer.lr").role == SEMANTIC and rule_of("model.hidden_size").role == SEMANTIC
    # the companion studies' training keys moved from their study block: hashed where they were
    assert rule_of("trainer.lr", "critical_pathways").moved_from == "study.lr"
    assert rule_of("trainer.lr", "sequence").moved_from is None
    assert planned_keys() == ("seed", "participant", "expected_run_id", "pack_file")
    assert groups_ignored("sequence") == () and "trainer" not in groups_ignored("multitask")
    assert "dataset" in groups_ignored("multitask") and "probe" not in groups_ignored("dense_sample")
