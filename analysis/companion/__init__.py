"""Report sections of the companion studies (docs/science.md section 2), never importing torch.

Each module's ``section(study_dir, out_dir, where=None)`` reads the done runs under ``study_dir/runs/`` and returns
``{"title", "html" (an HTML fragment, markupsafe.Markup), "tables": {name: DataFrame}}``.
"""

# ---------------------------------------------------------------------------
# Which section reads which study (by the runner named in the runs' config)
# ---------------------------------------------------------------------------
import importlib
import json
import traceback
from pathlib import Path

import yaml

from pipeline.runfolder import atomic_write_csv
from pipeline.schema import CONFIG, DONE, STATUS, run_folders, study_folder, study_folders, table_file

from .common import MixedConditions, para

SECTION_MODULES = {
    "critical_pathways": "critical",
    "critical_matrix_completion": "critical",
    "multitask": "multitask",
    "dense_sample": "dense_sample",
}


def study_runner(study_dir: Path) -> str | None:
    """The runner of a study folder's done runs (from the first one's config.yaml)."""
    for run_dir in run_folders(study_dir):
        try:
            if json.loads((run_dir / STATUS).read_text()).get("state") != DONE:
                continue
            config = yaml.safe_load((run_dir / CONFIG).read_text())
        except (OSError, ValueError, yaml.YAMLError):
            continue
        return (config.get("study") or {}).get("runner")
    return None


def companion_sections(root: Path, study: str | None, out: Path, where: dict[str, str] | None = None) -> list[dict]:
    """Every companion section that the studies under ``root`` call for (``where``: KEY=VALUE selections of
    runs, the --where option).

    A section that fails is reported as a section holding its error, so that
    a broken companion analysis is seen in the report instead of hidden; one whose runs mix conditions
    says which keys differ and how to select one.
    """
    root = Path(root)
    studies = [study_folder(root, study)] if study else study_folders(root)
    sections = []
    for study_dir in studies:
        runner = study_runner(study_dir)
        modules = []
        if runner in SECTION_MODULES:
            modules.append(SECTION_MODULES[runner])
        # gradient spectra of any study (sequence runs, the dense-sample study) get the spectra section
        if any((run / table_file("gradient_spectrum")).exists() for run in run_folders(study_dir)):
            modules.append("spectra")
        for name in modules:
            target = Path(out) / "companion" / study_dir.name
            target.mkdir(parents=True, exist_ok=True)
            try:
                module = importlib.import_module(f"{__name__}.{name}")
                section = module.section(study_dir, target, where=where)
            except MixedConditions as exc:
                section = {
                    "title": f"{study_dir.name}: the {name} analysis refused to pool different conditions",
                    "html": para(str(exc)),
                    "tables": {},
                    "error": f"MixedConditions: {exc}",
                }
            except Exception as exc:
                from .common import error_html

                section = {
                    "title": f"{study_dir.name}: the {name} analysis failed",
                    "html": error_html("".join(traceback.format_exception(exc))[-4000:]),
                    "tables": {},
                    "error": f"{type(exc).__name__}: {exc}",
                }
            for table_name, frame in (section.get("tables") or {}).items():
                atomic_write_csv(target / f"{table_name}.csv", frame)
            section["study"] = study_dir.name
            sections.append(section)
    return sections
