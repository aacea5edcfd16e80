"""Probes: each measures one quantity of the model on a schedule (see base.py)."""

from __future__ import annotations

from .base import Probe, ProbeContext
from .category_structure import CategoryStructureProbe
from .gradient_spectrum import GradientSpectrumProbe
from .knn import KnnProbe, knn_accuracy

PROBES = {"knn": KnnProbe, "gradient_spectrum": GradientSpectrumProbe, "category_structure": CategoryStructureProbe}


def build_probes(probe_cfg) -> list[Probe]:
    """Instantiate the enabled probes of ``cfg.probe`` (a mapping name -> options)."""
    probes = []
    for name, options in probe_cfg.items():
        if name not in PROBES:
            raise ValueError(f"probe.{name} is unknown; allowed: {', '.join(sorted(PROBES))}")
        options = dict(options)
        if not options.pop("enabled", True):
            continue
        probes.append(PROBES[name](**options))
    return probes


__all__ = [
    "Probe",
    "ProbeContext",
    "KnnProbe",
    "knn_accuracy",
    "GradientSpectrumProbe",
    "CategoryStructureProbe",
    "PROBES",
    "build_probes",
]
