"""The configuration's declared shape, and the one registry of what each key is for.

Every config group (``model``, ``trainer``, ``probe``, ``dataset``, ``data_source``, ``split``, ``deficit``,
``logger``, ``paths``) and each study runner's study block is a typed dataclass here; a field's type says
what a value may be (``int``, ``float``, ``bool``, ``str``, ``Optional``, lists, nested blocks) and its
metadata (``key(...)``) says the rest: bounds, allowed values, and the key's role:

- ``semantic``: what the run computes; part of its run id (``pipeline.identity``);
- ``design``: where the run sits in the study's grid (its cell and replicate, the grid itself); the run id
  holds the design block, not these keys;
- ``plumbing``: where or how a run is executed or mirrored (paths, logger, device, threads, the sweeper's
  bookkeeping); never part of a run id, never an experimental condition.

``validate_config`` checks a composed config against the schema of its choices (the model by its name or
``_target_``, the data set by its loader, the study block and trainer by the study's runner): an unknown
key, a value of the wrong type, out of bounds or not among the allowed values is a ``ConfigError`` naming
the key, raised while planning, before anything is written. Values are checked as written, never
converted (a ``1`` stays an ``int``, ``yes`` is not a boolean), so that a config's run id is that of its
values. (Hydra's ConfigStore would merge these dataclasses into the composed config and convert values
on the way, which would change run ids and accept ``yes`` for ``true``; the schema is therefore applied
as a check of the composed config, which is equivalent for every key and leaves the YAML files as they
are.)

Run identity (``pipeline.identity``): keys added after the registry's first version carry ``since``
(the version, ``pipeline.schema.VERSION``, that added them) and ``before`` (the value under which runs
computed what they computed before the key existed). A key at its ``before`` value is left out of the
run id, so adding a key with a default renames no finished run. A key moved from elsewhere carries
``moved_from`` (its old path), under which the run id keeps hashing it.

Torch-free, Hydra-free (omegaconf only): the analysis reads the registry too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field
from typing import Any, Union

from omegaconf import DictConfig, ListConfig, OmegaConf

from .config import ConfigError, config_error_in

__all__ = [
    "GROUP_RULES",
    "PLUMBING_GROUPS",
    "DESIGN_BLOCK",
    "DESIGN_ASSIGNMENT",
    "NOTHING",
    "FACTOR",
    "PER_SOURCE",
    "PROBE_RULE",
    "groups_ignored",
    "SEQUENCE_KEYS",
    "sweeper_keys",
    "planned_keys",
    "with_analysis",
    "DESIGN",
    "PLUMBING",
    "SEMANTIC",
    "KeyRule",
    "key",
    "RunConfig",
    "RunnerSchema",
    "RUNNERS",
    "runner_schema",
    "schema_of",
    "validate_config",
    "validate_node",
    "rules",
    "rule_of",
    "keys_with_role",
    "OPEN",
]

DESIGN, PLUMBING, SEMANTIC = "design", "plumbing", "semantic"
ROLES = (DESIGN, PLUMBING, SEMANTIC)
NOTHING: Any = object()  # no such value (``before`` / ``identity`` unset)
# the analysis: a design factor it models or keeps apart (labels, data source, study); a setting it compares
# within each data source (the data set, the batch size each source sets); a probe rule it selects on
FACTOR, PER_SOURCE, PROBE_RULE = "factor", "per_source", "probe_rule"


@dataclass(frozen=True)
class KeyRule:
    """What a key may hold and what it is for (see the module docstring)."""

    role: str = SEMANTIC
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    since: str | None = None
    before: Any = NOTHING
    identity: Any = NOTHING  # hashed as this value whatever it is (a key that changes speed only)
    moved_from: str | None = None
    off: Any = NOTHING  # this key at this value switches its block off: the block contributes nothing
    sweeper: bool = False  # set by the study sweeper for its bookkeeping, never by hand
    analysis: str | None = None  # FACTOR, PER_SOURCE, PROBE_RULE or None (a condition)
    doc: str = ""


def key(default: Any = MISSING, *, factory: Any = MISSING, **rule: Any) -> Any:
    """A dataclass field with its rule in the metadata (``key(50, ge=1)``, ``key(factory=list)``)."""
    return field(default=default, default_factory=factory, metadata={"rule": KeyRule(**rule)})


def plumbing(default: Any = MISSING, **rule: Any) -> Any:
    return key(default, role=PLUMBING, **rule)


class Open:
    """Marks a dataclass whose node may hold keys beyond its fields (a user's module takes its own
    arguments; a registered extra data loader its own options): those are checked by who reads them."""


OPEN = Open

# ------------------------------------------------------------------------------------------------ top level


@dataclass(kw_only=True)
class RunConfig:
    """The top-level plain keys of a run (conf/config.yaml)."""

    pair: int = key(0, role=DESIGN, ge=0, doc="the k-th class pair of the data set")
    seed: int = key(0, role=DESIGN, ge=0, doc="the replicate, or the participant of a counterbalanced sweep")
    labels: str = key("real", choices=("real", "shuffled"), analysis=FACTOR)
    participant: int | None = key(None, role=DESIGN, ge=0, sweeper=True, doc="a counterbalanced sweep's participant")
    expected_run_id: str | None = plumbing(None, sweeper=True, doc="the run id frozen at launch")
    pack_file: str | None = plumbing(None, sweeper=True, doc="a job's list of runs")


@dataclass(kw_only=True)
class SplitConfig:
    test_fraction: float = key(0.2, gt=0, lt=1)
    val_fraction: float = key(0.2, gt=0, lt=1)
    oversample: bool = key(True)


@dataclass(kw_only=True)
class DeficitConfig:
    kind: str = key("none", choices=("none", "zero", "noise"), off="none")
    onset: int = key(0, ge=0)
    length: int = key(0, ge=0)
    unit: str = key("epoch", choices=("epoch", "step"))
    sources: list[str] | None = key(None)
    features: list[int] | None = key(None)
    fraction: float = key(1.0, gt=0, le=1)
    noise_std: float = key(1.0, gt=0)


@dataclass(kw_only=True)
class PathsConfig:
    root: str = plumbing("outputs")


@dataclass(kw_only=True)
class WandbXAxis(Open):
    default: str = plumbing("epoch", choices=("epoch", "step"))


@dataclass(kw_only=True)
class WandbConfig(Open):
    """The W&B mirror's settings: plumbing (never in a run id); the mirror's own keys beyond these are
    checked by pipeline.config.check_logger."""

    project: str = plumbing("learning-curve-maps")
    entity: str | None = plumbing(None)
    media_every: int = plumbing(25, ge=0)
    color_scale: list[float] = plumbing(MISSING)
    chance: Any = plumbing("auto")
    x_axis: WandbXAxis = field(default_factory=WandbXAxis)
    console: str = plumbing("off", choices=("off", "auto", "wrap", "redirect"))
    requirements: bool = plumbing(False)
    init_timeout: float = plumbing(30, gt=0)
    finish_timeout: float = plumbing(60, gt=0)


@dataclass(kw_only=True)
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass(kw_only=True)
class DataSourceConfig:
    name: str = key(MISSING, analysis=FACTOR)
    batch_size: int = key(MISSING, ge=1)


# ------------------------------------------------------------------------------------------------ the models


@dataclass(kw_only=True)
class RecurrentModel:
    """``model=lstm|gru|rnn`` (pipeline/model.py)."""

    name: str = key(MISSING, choices=("lstm", "gru", "rnn", "transformer", "tcn"))
    # 4096 units: an LSTM of ~270 M weights, far beyond the study's networks
    hidden_size: int | None = key(None, ge=1, le=4096)
    min_hidden_size: int = key(32, ge=1, le=4096)
    batchnorm_time: bool = key(True)


@dataclass(kw_only=True)
class TransformerModel(RecurrentModel):
    n_heads: int = key(2, ge=1, le=64)
    n_layers: int = key(1, ge=1, le=64)
    feedforward_size: int | None = key(None, ge=1, le=65536)
    dropout: float = key(0.0, ge=0, lt=1)


@dataclass(kw_only=True)
class TCNModel(RecurrentModel):
    kernel_size: int = key(3, ge=2, le=64)
    n_layers: int | None = key(None, ge=1, le=30)


@dataclass(kw_only=True)
class CustomModel(Open):
    """``model=custom model._target_=pkg.Net``: the other keys are the module's arguments."""

    name: str = key("custom")
    _target_: str = key(MISSING)


MODELS: dict[str, type] = {
    "lstm": RecurrentModel,
    "gru": RecurrentModel,
    "rnn": RecurrentModel,
    "transformer": TransformerModel,
    "tcn": TCNModel,
}

# ------------------------------------------------------------------------------------------------ the trainer


@dataclass(kw_only=True)
class SequenceTrainer:
    """The sequence studies' training (pipeline/train.py)."""

    epochs: int = key(50, ge=1)
    lr: float = key(0.001, gt=0, lt=10)
    batch_size: int = key(MISSING, ge=1, analysis=PER_SOURCE)
    shuffle: bool = key(True)
    device: str = plumbing("auto")
    num_threads: int | None = plumbing(1, ge=0)
    readout_batchnorm: str = key("eval", choices=("eval", "train_mode_as_authors"))
    grad_clip_norm: float | None = key(1.0, gt=0, since="0.3.0", before=None)


# ------------------------------------------------------------------------------------------------ the probes


@dataclass(kw_only=True)
class KNNProbe:
    enabled: bool = key(True, off=False)
    k: int = key(3, ge=1)
    states: str = key("training_pass", choices=("training_pass", "clean_pass"))
    splits: list[str] = key(factory=lambda: ["train"])
    # speed only (float32 and float64 products give the same curves, bit for bit): hashed as the value the
    # run ids were made with before the default became float32
    gram_precision: str = key("float32", choices=("float32", "float64"), identity="float64")
    ties: str = key(
        "expected_random_order", choices=("expected_random_order", "self_first_by_index"), analysis=PROBE_RULE
    )
    mode: str = key("resubstitution", choices=("resubstitution", "leave_one_out"), analysis=PROBE_RULE)


@dataclass(kw_only=True)
class GradientSpectrumProbe:
    enabled: bool = key(False, off=False)
    group_by: str = key("class")
    batch_size: int = key(256, ge=1)
    top_k: int = key(8, ge=1)
    kinds: list[str] = key(factory=lambda: ["gradient", "activation", "delta"])
    layers: list[str] | None = key(None)
    include_all: bool = key(True)
    schedule: str = key("log", choices=("log", "every_epoch", "list"))
    per_decade: float = key(5, gt=0)
    epochs: list[int] | None = key(None)
    at_init: bool = key(False)


@dataclass(kw_only=True)
class CategoryStructureProbe:
    enabled: bool = key(False, off=False)
    per_class: int = key(50, ge=1)
    split: str = key("test", choices=("test", "train"))
    layers: Any = key("auto")
    include_input: bool = key(True)
    metric: str = key("euclidean", choices=("euclidean", "correlation"))
    embedding: bool = key(True)
    schedule: str = key("every_epoch", choices=("log", "every_epoch", "list"))
    per_decade: float = key(5, gt=0)
    epochs: list[int] | None = key(None)


@dataclass(kw_only=True)
class ProbeConfig:
    knn: KNNProbe = field(default_factory=KNNProbe)
    gradient_spectrum: GradientSpectrumProbe = field(default_factory=GradientSpectrumProbe)
    category_structure: CategoryStructureProbe = field(default_factory=CategoryStructureProbe)


# ------------------------------------------------------------------------------------------------ data sets


@dataclass(kw_only=True)
class DatasetConfig(Open):
    """What every data set declares (conf/dataset/); a loader's own options are checked by its loader."""

    name: str = key(MISSING)
    source: str = key(MISSING)
    loader: str = key(MISSING)
    n_classes: int = key(MISSING, ge=2)
    class_names: list[str] = key(MISSING)
    time_slices: int | None = key(None, ge=1, le=100_000)


@dataclass(kw_only=True)
class WatchDataset:
    name: str = key(MISSING)
    source: str = key(MISSING)
    loader: str = key("watch")
    classes: list[str] = key(MISSING)
    n_classes: int = key(MISSING, ge=2)
    class_names: list[str] = key(MISSING)
    downsample: int = key(2, ge=1)
    window: int = key(150, ge=1)
    stride: int = key(16, ge=1)
    min_length: int = key(30, ge=1)
    time_slices: int | None = key(150, ge=1, le=100_000)
    channels: list[str] | None = key(None)
    standardize: Any = key("recording")
    sample_seed: int = key(0, ge=0)
    root: str | None = key(None)


@dataclass(kw_only=True)
class BBCNewsDataset:
    name: str = key(MISSING)
    source: str = key(MISSING)
    loader: str = key("bbc_news")
    topics: list[str] = key(MISSING)
    n_classes: int = key(MISSING, ge=2)
    class_names: list[str] = key(MISSING)
    time_slices: int | None = key(40, ge=1, le=100_000)
    min_tokens: int = key(5, ge=1)
    per_class: int | None = key(1300, ge=1)
    sample_seed: int = key(0, ge=0)
    embeddings: str = key("glove6b50d_package")
    root: str | None = key(None)
    openings: Any = key(None)


@dataclass(kw_only=True)
class UCRDataset:
    name: str = key(MISSING)
    source: str = key(MISSING)
    loader: str = key("ucr")
    ucr_name: str = key(MISSING)
    splits: list[str] = key(factory=lambda: ["TRAIN", "TEST"])
    classes: list[int] = key(MISSING)
    n_classes: int = key(MISSING, ge=2)
    class_names: list[str] = key(MISSING)
    min_length: int = key(1, ge=1)
    stride: int = key(1, ge=1)
    time_slices: int | None = key(150, ge=1, le=100_000)
    root: str | None = key(None)


@dataclass(kw_only=True)
class IMiGUEDataset:
    name: str = key(MISSING)
    source: str = key(MISSING)
    loader: str = key("imigue")
    root: str = key("data/imigue")
    labels: str | None = key(None)
    npz_cache: str | None = key(None)
    time_slices: int | None = key(150, ge=1, le=100_000)
    groups: list[list[int]] = key(MISSING)
    n_classes: int = key(MISSING, ge=2)
    class_names: list[str] = key(MISSING)


@dataclass(kw_only=True)
class EmotionDataset:
    name: str = key(MISSING)
    source: str = key(MISSING)
    loader: str = key("emotion")
    root: str = key("data/emotion")
    splits: list[str] = key(factory=lambda: ["train"])
    n_classes: int = key(MISSING, ge=2)
    class_names: list[str] = key(MISSING)
    embeddings: str = key(MISSING)
    time_slices: int | None = key(None, ge=1, le=100_000)
    min_tokens: int = key(1, ge=1)
    per_class: int | None = key(None, ge=1)
    sample_seed: int = key(0, ge=0)


@dataclass(kw_only=True)
class ArraysDataset:
    """``dataset=arrays``: your own data set in the arrays format (pipeline/data/arrays.py)."""

    name: str = key("arrays")
    source: str = key(MISSING)
    loader: str = key("arrays")
    path: str | None = key(None)
    class_names: list[str] = key(MISSING)
    n_classes: int = key(MISSING, ge=2)
    sha256: str = key(MISSING)
    time_slices: int | None = key(None, ge=1, le=100_000)


DATASETS: dict[str, type] = {
    "watch": WatchDataset,
    "bbc_news": BBCNewsDataset,
    "ucr": UCRDataset,
    "imigue": IMiGUEDataset,
    "emotion": EmotionDataset,
    "arrays": ArraysDataset,
}

# ------------------------------------------------------------------------------------------------ studies


@dataclass(kw_only=True)
class StudyBlock(Open):
    """What every study declares; the runner's own keys follow its schema (``RUNNERS``)."""

    name: str = key(MISSING, analysis=FACTOR)
    runner: str = key(MISSING)
    factors: list[str] = key(MISSING)
    levels: dict[str, list[Any]] | None = key(None, role=DESIGN, doc="the grid of a counterbalanced sweep")
    data_sources: list[str] | None = key(None, role=DESIGN, doc="the data sources of the grid, in order")


@dataclass(kw_only=True)
class SequenceStudy:
    """``runner: sequence`` (the headline study, study=architectures)."""

    name: str = key(MISSING, analysis=FACTOR)
    runner: str = key("sequence")
    factors: list[str] = key(MISSING)
    levels: dict[str, list[Any]] | None = key(None, role=DESIGN)
    data_sources: list[str] | None = key(None, role=DESIGN)
    # factors whose levels share a run's random choices (a paired design, study=architectures)
    paired_over: list[str] | None = key(None, since="0.3.0", before=None)


@dataclass(kw_only=True)
class CriticalPathwaysStudy:
    name: str = key(MISSING, analysis=FACTOR)
    runner: str = key("critical_pathways")
    factors: list[str] = key(MISSING)
    levels: dict[str, list[Any]] | None = key(None, role=DESIGN)
    depth: int = key(4, ge=1)
    deficit_onset: int = key(0, ge=0)
    deficit_length: int = key(20, ge=0)
    width: int = key(100, ge=1)
    init_scale: float = key(0.01, gt=0)
    init: str = key("mirrored", choices=("mirrored", "independent", "aligned"))
    aligned_noise: float = key(0.1)  # > 0 where init is aligned (the runner checks it)
    hierarchy_levels: int = key(3, ge=1)
    record_every: int = key(10, ge=1)
    paired: bool = key(True)


@dataclass(kw_only=True)
class MatrixCompletionStudy:
    name: str = key(MISSING, analysis=FACTOR)
    runner: str = key("critical_matrix_completion")
    factors: list[str] = key(MISSING)
    levels: dict[str, list[Any]] | None = key(None, role=DESIGN)
    depth: int = key(3, ge=1)
    deficit_steps: int = key(0, ge=0)
    size: int = key(100, ge=2)
    rank_deficit: int = key(10, ge=1)
    rank_target: int = key(5, ge=1)
    n_observed: int = key(2000, ge=1)
    init_scale: float = key(0.001, gt=0)
    dtype: str = key("float32", choices=("float32", "float64"))
    record_every: int = key(50, ge=1)
    n_singular: int = key(10, ge=1)
    paired: bool = key(True)


@dataclass(kw_only=True)
class MultitaskKernel:
    probe_lr: float = key(0.001, gt=0)
    n_query_stimuli: int = key(9, ge=1)
    n_components: int = key(12, ge=1)
    max_train: int = key(648, ge=1)
    every_epochs: int = key(0, ge=0)


@dataclass(kw_only=True)
class MultitaskInitRange:
    """Weights ~ U(-range, range), per initialisation."""

    standard: float = key(0.1, gt=0)
    large: float = key(1.0, gt=0)


@dataclass(kw_only=True)
class MultitaskStudy:
    name: str = key(MISSING, analysis=FACTOR)
    runner: str = key("multitask")
    factors: list[str] = key(MISSING)
    levels: dict[str, list[Any]] | None = key(None, role=DESIGN)
    init: str = key("standard", choices=("standard", "large"))
    init_range: MultitaskInitRange = field(default_factory=MultitaskInitRange)
    n_input_groups: int = key(4, ge=1)
    n_features: int = key(3, ge=1)
    n_output_groups: int = key(3, ge=1)
    hidden: int = key(200, ge=1)
    bias: float = key(-2.0)
    n_train_stimuli: int = key(54, ge=1)
    n_train_draws: int = key(0, ge=0)
    eval_every: int = key(10, ge=1)
    # single-task epochs between recorded losses during fine-tuning; absent before 0.3.0 (every epoch)
    finetune_eval_every: int | None = key(None, ge=1, since="0.4.0", before=None)
    finetune_sizes: list[int] = key(factory=lambda: [1, 2, 3])
    test_multitask_sizes: list[int] = key(factory=lambda: [2, 3])
    kernel: MultitaskKernel = field(default_factory=MultitaskKernel)
    paired: bool = key(True)


@dataclass(kw_only=True)
class DenseSampleData:
    seed: int = key(0, ge=0)
    draw: str = key("replicate", choices=("replicate", "fixed"))
    per_class: int = key(600, ge=2)
    train_per_class: int = key(500, ge=1)
    size: int = key(16, ge=8)
    rotation_deg: float = key(25, ge=0)
    scale: list[float] = key(factory=lambda: [0.75, 1.15])
    shear: float = key(0.25, ge=0)
    translate: float = key(0.15, ge=0)
    stroke: list[float] = key(factory=lambda: [0.07, 0.13])
    clutter: int = key(2, ge=0)
    noise: float = key(0.35, ge=0)


@dataclass(kw_only=True)
class DenseSampleNet:
    channels: list[int] = key(factory=lambda: [32, 64, 128])
    hidden: list[int] = key(factory=lambda: [1024, 384])


@dataclass(kw_only=True)
class DenseSampleCheckpoints:
    per_decade: float = key(6, gt=0)


@dataclass(kw_only=True)
class DenseSampleStudy:
    name: str = key(MISSING, analysis=FACTOR)
    runner: str = key("dense_sample")
    factors: list[str] = key(MISSING)
    levels: dict[str, list[Any]] | None = key(None, role=DESIGN)
    data: DenseSampleData = field(default_factory=DenseSampleData)
    model: DenseSampleNet = field(default_factory=DenseSampleNet)
    checkpoints: DenseSampleCheckpoints = field(default_factory=DenseSampleCheckpoints)


# ------------------------------------------------------------------------------------------------ companion trainers
# The companion studies' training keys, in the trainer group (conf/trainer/<study>.yaml, chosen by the study's
# config). Until 0.3.0 they were keys of the study block: ``moved_from`` keeps their runs' ids.


@dataclass(kw_only=True)
class CompanionTrainer:
    device: str = plumbing("auto")
    num_threads: int | None = plumbing(1, ge=0)


@dataclass(kw_only=True)
class CriticalPathwaysTrainer(CompanionTrainer):
    """Full-batch gradient descent on 0.5 * the summed squared error."""

    lr: float = key(0.01, gt=0, moved_from="study.lr")
    steps: int = key(1000, ge=1, moved_from="study.steps")


@dataclass(kw_only=True)
class MatrixCompletionTrainer(CompanionTrainer):
    """Gradient descent on 0.5 * the mean squared error over the observed entries."""

    lr: float = key(10.0, gt=0, moved_from="study.lr")
    steps: int = key(2000, ge=1, moved_from="study.steps")


@dataclass(kw_only=True)
class MultitaskLrByInitTrainer:
    standard: float | None = key(None, gt=0, moved_from="study.lr_by_init.standard")
    large: float | None = key(None, gt=0, moved_from="study.lr_by_init.large")


@dataclass(kw_only=True)
class MultitaskTrainer(CompanionTrainer):
    """SGD of the multitasking network: phase 1 on the single tasks, phase 2 fine-tuning."""

    lr: float = key(4.0, gt=0, moved_from="study.lr")
    lr_by_init: MultitaskLrByInitTrainer = field(default_factory=MultitaskLrByInitTrainer)
    batch_size: int | str = key(64, moved_from="study.batch_size")
    loss_reduction: str = key("mean", choices=("mean", "sum"), moved_from="study.loss_reduction")
    single_epochs: int = key(300, ge=0, moved_from="study.single_epochs")
    finetune_epochs: int = key(20, ge=0, moved_from="study.finetune_epochs")


@dataclass(kw_only=True)
class DenseSampleTrainer(CompanionTrainer):
    optimizer: str = key("adam", choices=("adam", "sgd"), moved_from="study.optimizer")
    lr: float = key(0.0005, gt=0, moved_from="study.lr")
    batch_size: int = key(50, ge=1, moved_from="study.batch_size")
    epochs: int = key(5, ge=1, moved_from="study.epochs")


@dataclass(kw_only=True)
class DenseSampleCategoryStructure:
    """The dense-sample study runs the category-structure probe at its own checkpoints, whatever ``enabled``
    and the schedule say (those are not read: left out of its run ids); its options were study keys until 0.3.0."""

    enabled: bool = plumbing(False, doc="not read by the dense-sample study")
    per_class: int = key(50, ge=1, moved_from="study.category_structure.per_class")
    split: str = key("test", choices=("test", "train"), moved_from="study.category_structure.split")
    layers: Any = key("auto", moved_from="study.category_structure.layers")
    include_input: bool = key(True, moved_from="study.category_structure.include_input")
    metric: str = key("euclidean", choices=("euclidean", "correlation"), moved_from="study.category_structure.metric")
    embedding: bool = key(True, moved_from="study.category_structure.embedding")
    schedule: str = plumbing("every_epoch", choices=("log", "every_epoch", "list"), doc="not read")
    per_decade: float = plumbing(5, gt=0, doc="not read")
    epochs: list[int] | None = plumbing(None, doc="not read")


@dataclass(kw_only=True)
class DenseSampleProbes:
    """The probe group as the dense-sample study reads it."""

    knn: KNNProbe = field(default_factory=KNNProbe)
    gradient_spectrum: GradientSpectrumProbe = field(default_factory=GradientSpectrumProbe)
    category_structure: DenseSampleCategoryStructure = field(default_factory=DenseSampleCategoryStructure)


@dataclass(frozen=True)
class RunnerSchema:
    """A study runner's study block, and the top-level groups its runs read (the others are left out of
    their run ids: a companion study's runs do not change with the headline study's data set or model)."""

    study: type
    reads: tuple[str, ...] | None = None  # None: every group
    trainer: type = SequenceTrainer
    probe: type = ProbeConfig


# the top-level keys of the sequence studies beyond the study block: what a companion study's runs ignore
SEQUENCE_KEYS = ("data_source", "dataset", "model", "trainer", "probe", "split", "labels", "pair", "deficit")
RUNNERS: dict[str, RunnerSchema] = {
    "sequence": RunnerSchema(SequenceStudy),
    "critical_pathways": RunnerSchema(CriticalPathwaysStudy, ("study", "trainer"), CriticalPathwaysTrainer),
    "critical_matrix_completion": RunnerSchema(MatrixCompletionStudy, ("study", "trainer"), MatrixCompletionTrainer),
    "multitask": RunnerSchema(MultitaskStudy, ("study", "trainer"), MultitaskTrainer),
    "dense_sample": RunnerSchema(
        DenseSampleStudy, ("study", "trainer", "probe"), DenseSampleTrainer, DenseSampleProbes
    ),
}


def groups_ignored(runner: str) -> tuple[str, ...]:
    """The top-level keys of the sequence studies that a runner's runs do not read: left out of their run ids,
    their W&B config and their conditions (a companion study's runs ignore the headline data set)."""
    reads = runner_schema(runner).reads
    return () if reads is None else tuple(k for k in SEQUENCE_KEYS if k not in reads)


def runner_schema(runner: str) -> RunnerSchema:
    """The schema of a runner (a registered extra runner without one: an open study block, every group read)."""
    return RUNNERS.get(runner, RunnerSchema(StudyBlock))


# ------------------------------------------------------------------------------------------------ choosing


def schema_of(cfg: DictConfig) -> dict[str, type]:
    """The schema of each top-level node of a composed config, by its choices."""
    model = cfg.get("model")
    dataset = cfg.get("dataset")
    is_custom = isinstance(model, DictConfig) and (
        "_target_" in model.keys() and (OmegaConf.is_missing(model, "_target_") or model.get("_target_") is not None)
    )
    study = cfg.get("study")
    runner = runner_schema(str(study.get("runner")) if isinstance(study, DictConfig) else "")
    return {
        "study": runner.study,
        "data_source": DataSourceConfig,
        "dataset": DATASETS.get(str(dataset.get("loader")), DatasetConfig)
        if isinstance(dataset, DictConfig)
        else DatasetConfig,
        "model": CustomModel
        if is_custom
        else MODELS.get(str(model.get("name")), RecurrentModel)
        if isinstance(model, DictConfig)
        else RecurrentModel,
        "trainer": runner.trainer,
        "probe": runner.probe,
        "logger": LoggerConfig,
        "paths": PathsConfig,
        "deficit": DeficitConfig,
        "split": SplitConfig,
    }


# ------------------------------------------------------------------------------------------------ validating


def _rule(f: dataclasses.Field) -> KeyRule:
    return f.metadata.get("rule", KeyRule())


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin in (Union, types.UnionType):
        parts = [_describe(a) for a in typing.get_args(tp) if a is not type(None)]
        none = type(None) in typing.get_args(tp)
        return " or ".join(parts) + (" or null" if none else "")
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a block of keys"
    return "a value"


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _matches(value: Any, tp: Any) -> bool:
    """``value`` (plain or a config node) is of type ``tp``, without conversion."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, (list, ListConfig)) and all(_matches(v, item) for v in _plain(value))
    if origin is dict:
        _, item = typing.get_args(tp)
        return isinstance(value, (dict, DictConfig)) and all(_matches(v, item) for v in _plain(value).values())
    if dataclasses.is_dataclass(tp):
        return isinstance(value, (dict, DictConfig))
    return True


def _bounds_text(rule: KeyRule, integer: bool) -> str:
    if integer and rule.ge is not None and rule.le is not None:
        return f"in {rule.ge:g}..{rule.le:g}"
    parts = [
        f"{op} {bound:g}"
        for op, bound in ((">=", rule.ge), (">", rule.gt), ("<=", rule.le), ("<", rule.lt))
        if bound is not None
    ]
    return " and ".join(parts)


def _check_value(path: str, value: Any, tp: Any, rule: KeyRule) -> None:
    if not _matches(value, tp):
        raise ConfigError(f"{path}={_shown(value)}: must be {_describe(tp)}")
    if value is None:
        return
    if rule.choices is not None and value not in rule.choices:
        raise ConfigError(f"{path}={_shown(value)}: allowed values are {', '.join(map(str, rule.choices))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ok = (
            (rule.ge is None or value >= rule.ge)
            and (rule.gt is None or value > rule.gt)
            and (rule.le is None or value <= rule.le)
            and (rule.lt is None or value < rule.lt)
        )
        if not ok:
            optional = type(None) in typing.get_args(tp)
            integer = tp is int or int in typing.get_args(tp)
            what = "an integer" if integer else "a number"
            raise ConfigError(
                f"{path}={_shown(value)}: must be {what} {_bounds_text(rule, integer)}"
                + (" or null" if optional else "")
            )


def _shown(value: Any) -> str:
    return repr(_plain(value))


def validate_node(node: Any, schema: type, path: str) -> None:
    """Check a config node against a dataclass schema (recursively); ConfigError naming the first bad key."""
    if not isinstance(node, DictConfig):
        raise ConfigError(
            f"{path}={_shown(node)}: must be a block of keys ({', '.join(f.name for f in dataclasses.fields(schema))})"
        )
    hints = _hints(schema)
    fields_ = _fields(schema)
    if not issubclass(schema, Open):
        unknown = [k for k in node.keys() if k not in fields_]
        if unknown:
            raise ConfigError(f"{path}.{unknown[0]!s}: unknown key; the keys of {path} are {', '.join(fields_)}")
    for name, f in fields_.items():
        where = f"{path}.{name}"
        if name not in node.keys():
            continue  # an older config without a later key: its default
        if OmegaConf.is_missing(node, name):
            raise ConfigError(
                f"{where} is required (it is ??? in the config): give it on the command line, e.g. {where}=..."
            )
        try:
            value = node[name]
        except Exception as exc:  # an interpolation that cannot be resolved (a resolver's refusal)
            inner = config_error_in(exc)
            raise ConfigError(f"{where}: {inner or exc}") from None
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, DictConfig):
            validate_node(value, tp, where)
            continue
        _check_value(where, value, tp, _rule(f))


def validate_config(cfg: DictConfig) -> None:
    """Check every top-level node of a composed run config against its schema (``schema_of``)."""
    groups = schema_of(cfg)
    known = {f.name for f in dataclasses.fields(RunConfig)} | set(groups) | {DESIGN_BLOCK, "hydra"}
    unknown = [k for k in cfg.keys() if k not in known]
    if unknown:
        raise ConfigError(f"{unknown[0]!s}: unknown key; the top-level keys are {', '.join(sorted(known - {'hydra'}))}")
    for name, f in {f.name: f for f in dataclasses.fields(RunConfig)}.items():
        if name in cfg:
            _check_value(name, cfg[name], _hints(RunConfig)[name], _rule(f))
    for name, schema in groups.items():
        if name in cfg and cfg.get(name) is not None:
            validate_node(cfg[name], schema, name)


# ------------------------------------------------------------------------------------------------ the registry


def _walk(schema: type, prefix: str) -> Iterator[tuple[str, KeyRule, type]]:
    hints = _hints(schema)
    for f in dataclasses.fields(schema):
        path = f"{prefix}{f.name}"
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            yield from _walk(tp, f"{path}.")
        else:
            yield path, _rule(f), schema


def rules(runner: str = "sequence", model: str = "lstm", loader: str | None = None) -> dict[str, KeyRule]:
    """Every key of a run's config (the given choices) with its rule: the one registry."""
    out: dict[str, KeyRule] = {}
    for path, rule, _ in _walk(RunConfig, ""):
        out[path] = rule
    schema = runner_schema(runner)
    groups = {
        "study": schema.study,
        "data_source": DataSourceConfig,
        "dataset": DATASETS.get(loader or "", DatasetConfig),
        "model": CustomModel if model == "custom" else MODELS.get(model, RecurrentModel),
        "trainer": schema.trainer,
        "probe": schema.probe,
        "logger": LoggerConfig,
        "paths": PathsConfig,
        "deficit": DeficitConfig,
        "split": SplitConfig,
    }
    for group, group_schema in groups.items():
        for path, rule, _ in _walk(group_schema, f"{group}."):
            out[path] = rule
    return out


# Rules of whole top-level groups: where and how runs are executed or mirrored (plumbing), and how the
# analysis treats a group (the data source and the study are design factors it models or keeps apart; a
# data set is compared within its data source)
GROUP_RULES: dict[str, KeyRule] = {
    "paths": KeyRule(role=PLUMBING),
    "logger": KeyRule(role=PLUMBING),
    "hydra": KeyRule(role=PLUMBING),
    "data_source": KeyRule(analysis=FACTOR),
    "dataset": KeyRule(analysis=PER_SOURCE),
    "study": KeyRule(analysis=FACTOR),
}
PLUMBING_GROUPS = tuple(name for name, rule in GROUP_RULES.items() if rule.role == PLUMBING)
# the design block a planned run carries (pipeline/planning.py): its cell, replicate and how it was assigned
DESIGN_BLOCK = "design"
DESIGN_ASSIGNMENT = ("participant", "assignment")  # how a run was assigned to its cell, not where it is


def _runner_rules(runner: str) -> dict[str, KeyRule]:
    """The rules of a runner's schemas (every model and loader), by path."""
    out: dict[str, KeyRule] = {}
    for model in (*MODELS, "custom"):
        for loader in DATASETS:
            for path, rule in rules(runner, model, loader).items():
                out.setdefault(path, rule)
    return out


def _all_rules() -> dict[str, dict[str, KeyRule]]:
    """Per runner (``""``: every runner's, the sequence runner's first), the rules of every key path."""
    out: dict[str, dict[str, KeyRule]] = {runner: _runner_rules(runner) for runner in RUNNERS}
    merged: dict[str, KeyRule] = {}
    for table in out.values():
        for path, rule in table.items():
            merged.setdefault(path, rule)
    out[""] = merged
    return out


_ALL: dict[str, dict[str, KeyRule]] | None = None


def _table(runner: str | None) -> dict[str, KeyRule]:
    global _ALL
    if _ALL is None:
        _ALL = _all_rules()
    return _ALL.get(runner or "", _ALL[""])


def rule_of(path: str, runner: str | None = None) -> KeyRule:
    """The rule of a key path (``trainer.device``) or of a whole group (``logger``), as the runner's schemas
    declare it (``runner`` None: the first schema that knows the path); every key of a plumbing group is
    plumbing; a key no schema knows is semantic (validate_config refuses it in a run's config)."""
    top = path.split(".")[0]
    if top in PLUMBING_GROUPS:
        return GROUP_RULES[top]
    if path in GROUP_RULES:
        return GROUP_RULES[path]
    return _table(runner).get(path, KeyRule())


def sweeper_keys() -> tuple[str, ...]:
    """The top-level keys the study sweeper sets for its bookkeeping (participant, expected_run_id, ...)."""
    return tuple(f.name for f in dataclasses.fields(RunConfig) if _rule(f).sweeper)


def planned_keys() -> tuple[str, ...]:
    """The keys a planned job sets from its design: the replicate (``seed``) and the sweeper's keys."""
    return ("seed", *sweeper_keys())


def keys_with_role(role: str, top_level: bool = False) -> tuple[str, ...]:
    """Every known key path with this role (``top_level``: only keys without a dot, and whole groups)."""
    found = [
        p for p, r in {**_table(None), **GROUP_RULES}.items() if r.role == role and (not top_level or "." not in p)
    ]
    return tuple(dict.fromkeys(found))


def with_analysis(kind: str, top_level: bool = False) -> tuple[str, ...]:
    """Every known key path the analysis treats as ``kind`` (FACTOR, PER_SOURCE, PROBE_RULE)."""
    found = [
        p for p, r in {**_table(None), **GROUP_RULES}.items() if r.analysis == kind and (not top_level or "." not in p)
    ]
    return tuple(dict.fromkeys(found))
