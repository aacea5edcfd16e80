"""Planning a run: compose and validate its config, place it in the study grid, name it.

The one place that turns command-line overrides into a run's config, design cell and run id; the entry
point (pipeline/app.py), run packs (pipeline/packs.py) and the study sweeper (hydra_plugins/lcm_study)
all plan through it, so a run is the same however it is launched. The grid itself: pipeline/design.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict

from .config import (
    ConfigError,
    as_dict,
    check_added_keys,
    check_int,
    check_logger,
    check_plain_name,
    check_root,
    check_study_name,
    check_threads,
    check_wandb_mode,
)
from .config_schema import SEMANTIC, planned_keys, rule_of, validate_config
from .design import Cell, Design, assign, factor_keys, is_explicit, n_pairs, override_key, run_seed, study_cells
from .identity import run_id
from .schema import runs_folder, study_folder
from .studies import StudyRunner, get_runner

Compose = Callable[[Sequence[str]], DictConfig]
# The project's configs live at the repository root (conf/), beside the package;
# an absolute path makes `python -m pipeline` work from any working directory.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
# Overrides that a job's explicit form sets from its design (the sweeper freezes the run id too).
DESIGN_KEYS = planned_keys()


@dataclass(frozen=True)
class Plan:
    """A planned run: what ``run.execute`` computes, the sweeper launches and a pack runs, made once."""

    cfg: DictConfig  # validated, with its design block: what ``execute`` runs and config.yaml records
    run_id: str
    run_dir: Path
    # the overrides that name this run with its cell given explicitly (a counterbalanced seed i becomes
    # its cell, seed=<replicate> and participant=i): what the sweeper launches
    job: list[str]
    factors: list[str]  # the study's factor keys
    runner: StudyRunner  # the study's runner (looked up once, here)


def runs_root(cfg: DictConfig) -> Path:
    return runs_folder(study_folder(Path(cfg.paths.root).expanduser().resolve(), cfg.study.name))


def without_hydra(cfg: DictConfig) -> DictConfig:
    """``cfg`` (changed in place) without Hydra's own node: a run's config as a job sees it."""
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def with_design(cfg: DictConfig, design: Design, runner: StudyRunner) -> DictConfig:
    """The run's config with its design block filled in (what config.yaml records)."""
    cfg = cfg.copy()
    labels = cfg.get("labels", "real")
    with open_dict(cfg):
        cfg.design = {
            **design.cell.as_dict(),
            "cell": design.cell.label(),
            "replicate": design.replicate,
            "participant": design.participant,
            "assignment": design.assignment,
            "labels": labels,
            "rng_seed": run_seed(design.cell, design.replicate, labels, list(cfg.study.get("paired_over") or ())),
        }
        cfg.design.update(runner.design_extras(cfg, design))
    return cfg


def factor_value(cfg: DictConfig, key: str):
    """A factor's value in a composed config; a config group (data_source) counts by its name."""
    value = OmegaConf.select(cfg, key)
    return value.get("name") if isinstance(value, DictConfig) else value


def pairs_per_source(cfg: DictConfig, overrides: Sequence[str], compose: Compose) -> dict[str, int]:
    """Class pairs of each data source of the study: its chosen or default data set decides (composed with the
    study and Hydra's own overrides, hydra.searchpath among them: a data source may live in the user's configs)."""
    keep = [o for o in overrides if override_key(o) == "study" or override_key(o).startswith("hydra.")]
    counts = {}
    for source in cfg.study.data_sources:
        if source == cfg.data_source.name:
            dataset = cfg.dataset
        else:
            dataset = compose([*keep, f"data_source={source}"]).dataset
        counts[source] = n_pairs(int(dataset.n_classes))
    return counts


def cells_of(cfg: DictConfig, overrides: Sequence[str], compose: Compose) -> list[Cell]:
    """Every design cell of the run's study, in design order."""
    study = as_dict(cfg.study)
    try:
        # a counterbalanced run's data source is its cell's (the default one need not be in the study: a study
        # of the user's own data sources); an explicit data_source outside the study is the runner's to refuse
        counts = pairs_per_source(cfg, overrides, compose) if study.get("data_sources") else None
        return study_cells(study, counts)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class Planner:
    """Plans runs composed by ``compose(overrides)``; the study grid of each sweep line is built once."""

    def __init__(self, compose: Compose, max_threads: int | None = None):
        self.compose = compose
        self.max_threads = max_threads  # the cores a run gets where it runs (a Slurm task's), if not this machine's
        self._cells: dict[tuple, list[Cell]] = {}
        self._cell_only: dict[tuple, DictConfig] = {}

    def plan(self, cfg: DictConfig, overrides: Sequence[str]) -> Plan:
        """``cfg`` (composed from ``overrides``) validated, placed in its cell and named.

        With no factor on the command line, seed i is a participant who runs cell i mod n_cells as
        replicate i div n_cells; with one, the cell is explicit and seed is the replicate.
        """
        overrides = list(overrides)
        runner = get_runner(cfg.study.runner)
        check_root(cfg)
        check_study_name(cfg)
        check_wandb_mode()
        seed = check_int(cfg, "seed", 0)
        keys = factor_keys(cfg.study)
        if is_explicit(overrides, keys):
            cell = Cell(tuple((key, factor_value(cfg, key)) for key in keys))
            assignment = "counterbalanced" if cfg.participant is not None else "explicit"
            design = Design(cell, seed, cfg.participant, assignment)
            job = overrides
        else:
            cell, replicate = assign(seed, self.cells(cfg, overrides))
            if any(factor_value(cfg, key) != value for key, value in cell.factors):
                cfg = self.compose([*overrides, *cell.overrides()])
            design = Design(cell, replicate, seed, "counterbalanced")
            job = [o for o in overrides if override_key(o) not in (*keys, *DESIGN_KEYS)]
            job += [*cell.overrides(), f"seed={replicate}", f"participant={seed}"]
        validate_config(cfg)  # every key against its declared type, bounds and allowed values
        runner.validate(cfg)
        check_threads(cfg, self.max_threads)
        check_logger(cfg)
        # after the runner's own checks, whose messages say more about keys they know
        check_added_keys(overrides, self.compose)
        cfg = with_design(cfg, design, runner)
        # what needs the run's data and its place in the grid (its class pair, its seed's split)
        runner.validate_planned(cfg)
        rid = run_id(cfg, runner)
        # the run id names a folder under the study's runs/: a factor value cannot lead it elsewhere
        check_plain_name(f"the run id {rid!r} (from {', '.join(keys)})", rid, "it names the run's folder")
        return Plan(cfg, rid, runs_root(cfg) / rid, job, keys, runner)

    def cells(self, cfg: DictConfig, overrides: Sequence[str]) -> list[Cell]:
        """The cells of a counterbalanced run's study (the same for every seed of a sweep line)."""
        line = tuple(o for o in overrides if override_key(o) != "seed")
        if line not in self._cells:
            self._cells[line] = cells_of(cfg, list(line), self.compose)
        return self._cells[line]

    def condition(self, plan: Plan) -> str:
        """The run's overrides that set something other than its cell and replicate, to other values
        than its cell alone would have (``labels=shuffled``, ``trainer.epochs=1``, ``dataset=cricket``).

        Runs of one study that differ here are different experimental conditions, which pipeline.status
        counts separately. Keys that leave the run id alone (paths, logger, hydra, device, threads) are
        not conditions.
        """
        cfg, job = plan.cfg, plan.job
        cell_only = None
        parts = []
        # the study itself is no condition (its runs have a folder of their own), and the cell's factors
        # may be keys of that study's config (study.depth), so the baseline is composed with the study choice
        study = [o for o in job if override_key(o) == "study"]
        for override in job:
            key = override_key(override)
            top = key.split(".")[0].split("/")[0]
            if (
                key == "study"
                or key in plan.factors
                or key in DESIGN_KEYS
                or rule_of(top).role != SEMANTIC
                or rule_of(key).role != SEMANTIC
            ):
                continue
            here = OmegaConf.select(cfg, key)
            if here is None:  # a group that writes elsewhere (debug=quick) or a deleted key
                parts.append(override)
                continue
            if cell_only is None:
                cell = tuple(study + [o for o in job if override_key(o) in plan.factors])
                if cell not in self._cell_only:
                    self._cell_only[cell] = self.compose(list(cell))
                cell_only = self._cell_only[cell]
            there = OmegaConf.select(cell_only, key)
            if _plain(here) != _plain(there):
                parts.append(override)
        return " ".join(sorted(parts))


def apply_parsed_values(base: DictConfig, overrides: Sequence[Override]) -> DictConfig:
    """A copy of ``base`` with parsed plain-value overrides applied as Hydra applies them (in order, merged)."""
    cfg = copy.deepcopy(base)
    for override in overrides:
        OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
    return cfg


def apply_values(base: DictConfig, values: Sequence[str]) -> DictConfig:
    """``base`` with plain-value overrides (override lines) applied as Hydra applies them."""
    return apply_parsed_values(base, OverridesParser.create().parse_overrides(list(values)))


class SharedCompose:
    """Hydra's composition of a sweep's job configs, with the expensive part shared.

    A full composition costs ~0.2 s, which made planning a 750-run study take 3 minutes. The jobs of a
    sweep differ mostly in plain values (seed, pair, participant, expected_run_id), so the defaults tree
    is composed once per distinct set of structural overrides (config-group choices, +/~ and hydra keys)
    and the plain values are then applied as Hydra applies them (``apply_parsed_values``, which a pack's
    job uses too). The first run of every job is composed by Hydra from scratch, and every run is checked
    against the frozen run id, so a difference here could only make a run refuse, never run the wrong thing.
    """

    def __init__(self, config_loader: Any, config_name: str, run_mode: Any, hydra_overrides: Sequence[str] = ()):
        self.loader, self.config_name, self.run_mode = config_loader, config_name, run_mode
        # the launch's own hydra.* overrides (hydra.searchpath: the user's config folders), which Hydra adds
        # to every job's composition as its load_sweep_config does
        self.hydra_overrides = list(hydra_overrides)
        self.parser = OverridesParser.create(config_loader=config_loader)
        self._bases: dict[tuple, DictConfig] = {}

    def full(self, overrides: Sequence[str]) -> DictConfig:
        return without_hydra(
            self.loader.load_configuration(
                config_name=self.config_name, overrides=[*self.hydra_overrides, *overrides], run_mode=self.run_mode
            )
        )

    def __call__(self, overrides: Sequence[str]) -> DictConfig:
        structural, values = self.split(overrides)
        base_key = tuple(structural)
        if base_key not in self._bases:
            self._bases[base_key] = self.full(structural)
        try:
            return apply_parsed_values(self._bases[base_key], values)
        except Exception:
            return self.full(overrides)

    def split(self, overrides: Sequence[str]) -> tuple[list[str], list[Override]]:
        """(structural override lines, parsed plain-value overrides)."""
        repository = self.loader.repository
        structural: list[str] = []
        values: list[Override] = []
        for override in self.parser.parse_overrides(list(overrides)):
            key = override.key_or_group
            if (
                override.is_delete()
                or override.is_add()
                or override.is_force_add()
                or key.startswith("hydra")
                or repository.group_exists(key)
            ):
                assert override.input_line is not None  # set by the parser for every line it parses
                structural.append(override.input_line)
            else:
                values.append(override)
        return structural, values


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
