"""Keep BLAS single-threaded inside the analysis (the helper is pipeline/blas.py, torch-free)."""

from pipeline.blas import single_threaded_blas

__all__ = ["single_threaded_blas"]
