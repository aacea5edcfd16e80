"""The Hydra entry point: ``python -m pipeline [-m] key=value ...``."""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from .config import ConfigError, check_added_keys, check_int, check_root, check_wandb_mode
from .design import Cell, Design, assign, factor_keys, is_explicit, n_pairs, override_key, study_cells
from .packs import run_pack
from .run import RunInterrupted, RunOutcome, execute, with_design
from .studies import get_runner

log = logging.getLogger("pipeline")

Compose = Callable[[Sequence[str]], DictConfig]
# The project's configs live at the repository root (conf/), beside the package;
# an absolute path makes `python -m pipeline` work from any working directory.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def pairs_per_source(cfg: DictConfig, overrides: Sequence[str], compose: Compose) -> dict[str, int]:
    """Class pairs of each data source of the study: its chosen or default data set decides."""
    keep = [o for o in overrides if override_key(o) == "study"]
    counts = {}
    for source in cfg.study.data_sources:
        if source == cfg.data_source.name:
            dataset = cfg.dataset
        else:
            dataset = compose([*keep, f"data_source={source}"]).dataset
        counts[source] = n_pairs(int(dataset.n_classes))
    return counts


def cells_of(cfg: DictConfig, overrides: Sequence[str], compose: Compose) -> list[Cell]:
    study = OmegaConf.to_container(cfg.study, resolve=True)
    if study.get("data_sources"):
        if cfg.data_source.name not in study["data_sources"]:
            raise ConfigError(
                f"data_source={cfg.data_source.name} is not in study {study['name']!r} "
                f"(its data sources: {', '.join(study['data_sources'])})"
            )
        return study_cells(study, pairs_per_source(cfg, overrides, compose))
    try:
        return study_cells(study)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def factor_value(cfg: DictConfig, key: str):
    """A factor's value in a composed config; a config group (data_source) counts by its name."""
    value = OmegaConf.select(cfg, key)
    return value.get("name") if isinstance(value, DictConfig) else value


def resolve_design(cfg: DictConfig, overrides: Sequence[str], compose: Compose) -> tuple[DictConfig, Design]:
    """Place the run in the study grid (see pipeline/design.py); recompose for the cell if needed."""
    keys = factor_keys(cfg.study)
    if is_explicit(overrides, keys):
        cell = Cell(tuple((key, factor_value(cfg, key)) for key in keys))
        assignment = "counterbalanced" if cfg.participant is not None else "explicit"
        return cfg, Design(cell, int(cfg.seed), cfg.participant, assignment)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed!r}: must be an integer >= 0")
    cell, replicate = assign(int(cfg.seed), cells_of(cfg, overrides, compose))
    if any(factor_value(cfg, key) != value for key, value in cell.factors):
        cfg = compose([*overrides, *cell.overrides()])
    return cfg, Design(cell, replicate, int(cfg.seed), "counterbalanced")


def prepare(cfg: DictConfig, overrides: Sequence[str], compose: Compose) -> DictConfig:
    """Validated run config with its design block, ready for ``execute``."""
    runner = get_runner(cfg.study.runner)
    check_root(cfg)
    check_wandb_mode()
    check_int(cfg, "seed", 0)
    cfg, design = resolve_design(cfg, overrides, compose)
    runner = get_runner(cfg.study.runner)
    runner.validate(cfg)
    # after the runner's own checks, whose messages say more about keys they know
    check_added_keys(overrides, compose)
    return with_design(cfg, design)


def _hydra_compose(overrides: Sequence[str]) -> DictConfig:
    return hydra.compose(config_name="config", overrides=list(overrides))


class ValidateBeforeRun(Callback):
    """A single run's config is validated before Hydra makes its output folder (conf/config.yaml,
    hydra.callbacks), so that a bad value leaves nothing behind; a sweep's runs are validated by the study
    sweeper before it makes the sweep folder."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        cfg = copy.deepcopy(config)
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            prepare(cfg, list(config.hydra.overrides.task), _hydra_compose)
        except ConfigError as exc:
            # Hydra turns a callback's exception into a warning and goes on: stop here, as Hydra's own
            # errors do (the message, exit status 1)
            print(f"Error in the configuration: {exc}", file=sys.stderr)
            sys.exit(1)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> RunOutcome:
    overrides = list(HydraConfig.get().overrides.task)
    if cfg.get("pack_file"):
        return run_pack(
            cfg, _hydra_compose, lambda run_cfg, run_overrides: execute(prepare(run_cfg, run_overrides, _hydra_compose))
        )
    run_cfg = prepare(cfg, overrides, _hydra_compose)
    try:
        outcome = execute(run_cfg)
    except RunInterrupted as exc:
        if HydraConfig.get().mode.name != "RUN":
            raise  # the sweeper (or the launcher's worker) reports it
        print(
            f"\nrun interrupted by {exc.signal_name}: its folder says so; run the same command again to compute it",
            file=sys.stderr,
        )
        sys.exit(exc.exit_code)
    if HydraConfig.get().mode.name == "RUN":
        print(
            f"\nrun {outcome.run_id}: {outcome.state}\nrecord: {outcome.run_dir}\n"
            f"  curves.parquet (learning-curve map), readouts.parquet, summary.json, config.yaml"
        )
    return outcome
