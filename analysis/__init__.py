"""The analysis stage: learning-curve metrics, statistics, figures and a report from the run records
(``python -m analysis --help``; docs/analysis.md). Never imports torch (tested)."""

__all__ = ["cli", "collect", "figures", "formula", "lmm", "metrics", "ols", "replication", "report", "stats", "tables"]
