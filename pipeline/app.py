"""The Hydra entry point: ``python -m pipeline [-m] key=value ...`` (planning: pipeline/planning.py)."""

from __future__ import annotations

import contextlib
import copy
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from . import command_help
from .config import ConfigError, check_hydra_folders, config_error_in, hydra_root, root_value
from .packs import run_pack
from .planning import CONFIG_DIR, Plan, Planner, without_hydra
from .private import NotPrivate, ensure_private_tree
from .run import RunInterrupted, RunOutcome, execute

__all__ = ["ValidateBeforeRun", "main"]

# A single run's plan, made by the callback before Hydra makes its output folder and taken by main (Hydra
# calls both in this process, main with a copy of the callback's config), so that the run is planned once.
_single_run_plans: dict[tuple[str, ...], Plan] = {}


def _hydra_compose(overrides: Sequence[str]) -> DictConfig:
    return hydra.compose(config_name="config", overrides=list(overrides))


class ValidateBeforeRun(Callback):
    """A single run's config is validated before Hydra makes its output folder (conf/config.yaml,
    hydra.callbacks), so that a bad value leaves nothing behind; a sweep's runs are validated by the study
    sweeper before it makes the sweep folder."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        overrides = list(config.hydra.overrides.task)
        try:
            plan = Planner(_hydra_compose).plan(without_hydra(copy.deepcopy(config)), overrides)
            # Hydra's folder of this run stays in <paths.root>/.hydra, which is made private to you first
            root = root_value(config)
            check_hydra_folders(config.hydra, root, "run")
            ensure_private_tree(Path(hydra_root(root)), Path(hydra_root(root)))
        except (ConfigError, NotPrivate) as exc:
            _refuse(exc)
        except Exception as exc:
            refusal = config_error_in(exc)  # a resolver's refusal (an empty $LCM_OUTPUTS)
            if refusal is None:
                raise
            _refuse(refusal)
        _single_run_plans[tuple(overrides)] = plan


def _refuse(exc: BaseException) -> None:
    # Hydra turns a callback's exception into a warning and goes on: stop here, as Hydra's own
    # errors do (the message, exit status 1)
    print(f"Error in the configuration: {exc}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    """The ``lcm`` command (and ``python -m pipeline``): Hydra's, except that shell completion leaves out
    the config options only the defaults list picks (``dataset=default_gesture``, pipeline/command_help.py)."""
    if not command_help.is_completion_query(sys.argv[1:]):
        hydra_main()
        return
    answer = io.StringIO()
    with contextlib.redirect_stdout(answer):
        hydra_main()
    print(command_help.without_internal_choices(answer.getvalue(), Path(CONFIG_DIR)))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> RunOutcome | list[object]:
    planner = Planner(_hydra_compose)
    if cfg.get("pack_file"):
        return run_pack(cfg, planner, execute)
    overrides = list(HydraConfig.get().overrides.task)
    plan = _single_run_plans.pop(tuple(overrides), None) or planner.plan(cfg, overrides)
    single = HydraConfig.get().mode == RunMode.RUN
    try:
        outcome = execute(plan)
    except RunInterrupted as exc:
        if not single:
            raise  # the sweeper (or the launcher's worker) reports it
        print(
            f"\nrun interrupted by {exc.signal_name}: its folder says so; run the same command again to compute it",
            file=sys.stderr,
        )
        sys.exit(exc.exit_code)
    if single:
        note = f" ({outcome.note})" if outcome.note else ""
        print(
            f"\nrun {outcome.run_id}: {outcome.state}{note}\nrecord: {outcome.run_dir}\n"
            f"  curves.parquet (learning-curve map), readouts.parquet, summary.json, config.yaml"
        )
    return outcome
