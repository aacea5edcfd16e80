"""The Hydra entry point: ``python -m pipeline [-m] key=value ...``."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from .config import ConfigError, validate
from .design import Design, assign, is_explicit, n_pairs, override_key, study_cells
from .run import RunOutcome, execute, pair_class_names, with_design

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


def resolve_design(cfg: DictConfig, overrides: Sequence[str], compose: Compose) -> tuple[DictConfig, Design]:
    """Place the run in the study grid (see pipeline/design.py); recompose if the cell's source differs."""
    if is_explicit(overrides):
        assignment = "counterbalanced" if cfg.participant is not None else "explicit"
        return cfg, Design(cfg.data_source.name, int(cfg.pair), int(cfg.seed), cfg.participant, assignment)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed!r}: must be an integer >= 0")
    if cfg.data_source.name not in cfg.study.data_sources:
        raise ConfigError(f"data_source={cfg.data_source.name} is not in study {cfg.study.name!r} "
                          f"(its data sources: {', '.join(cfg.study.data_sources)})")
    cells = study_cells(cfg.study.data_sources, pairs_per_source(cfg, overrides, compose))
    cell, replicate = assign(int(cfg.seed), cells)
    if cell.data_source != cfg.data_source.name:
        cfg = compose([*overrides, f"data_source={cell.data_source}"])
    with open_dict(cfg):
        cfg.pair = cell.pair
    return cfg, Design(cell.data_source, cell.pair, replicate, int(cfg.seed), "counterbalanced")


def prepare(cfg: DictConfig, overrides: Sequence[str], compose: Compose) -> DictConfig:
    """Validated run config with its design block, ready for ``execute``."""
    cfg, design = resolve_design(cfg, overrides, compose)
    validate(cfg)
    return with_design(cfg, design, pair_class_names(cfg, design.pair))


def _hydra_compose(overrides: Sequence[str]) -> DictConfig:
    return hydra.compose(config_name="config", overrides=list(overrides))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> RunOutcome:
    overrides = list(HydraConfig.get().overrides.task)
    run_cfg = prepare(cfg, overrides, _hydra_compose)
    outcome = execute(run_cfg)
    if HydraConfig.get().mode.name == "RUN":
        print(f"\nrun {outcome.run_id}: {outcome.state}\nrecord: {outcome.run_dir}\n"
              f"  curves.parquet (learning-curve map), readouts.parquet, summary.json, config.yaml")
    return outcome
