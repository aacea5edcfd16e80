"""The analysis stage: learning-curve metrics and statistics from the run records.

Reads run folders written by the pipeline (or a metrics table in the authors'
format), computes the four learning-curve metrics per run and epoch
(``analysis.metrics``), fits the authors' least squares (``analysis.ols``)
and mixed-effects models (``analysis.stats``), says which of the study's claims
replicate (``analysis.replication``), and writes tables, figures and
a report (``python -m analysis --help``; ``docs/analysis.md``).

This package never imports torch (tested).
"""

__all__ = ["cli", "collect", "figures", "formula", "lmm", "metrics", "ols", "replication", "report", "stats", "tables"]
