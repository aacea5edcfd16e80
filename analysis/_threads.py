"""Keep BLAS single-threaded inside the analysis (its matrices are small and it parallelises over
processes; why: docs/analysis.md, "Speed"). The helper is pipeline/blas.py (torch-free), shared with
the study runners."""

from pipeline.blas import single_threaded_blas

__all__ = ["single_threaded_blas"]
