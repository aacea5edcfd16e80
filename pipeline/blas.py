"""BLAS thread limits, torch-free so that pipeline/ and analysis/ share them.

A sweep or the analysis runs one process per core and multiplies small matrices; several BLAS
threads per process only oversubscribe the cores (three times slower mixed models on 2 cores).
The KNN probe's compiled search limits scipy's BLAS, which torch's thread setting does not reach,
to the run's torch threads.
"""

from __future__ import annotations

import contextlib


class _BlasThreads(contextlib.ContextDecorator):
    def __init__(self, threads: int = 1) -> None:
        self._threads = threads
        self._limits = None

    def _recreate_cm(self):
        # a fresh limiter per decorated call, so nested or recursive calls restore their own state
        return type(self)(self._threads)

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - comes with scikit-learn, a dependency
            return self
        self._limits = threadpool_limits(limits=self._threads, user_api="blas")
        return self

    def __exit__(self, *exc) -> None:
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None


def single_threaded_blas() -> _BlasThreads:
    """BLAS limited to one thread: ``with single_threaded_blas():`` or ``@single_threaded_blas()``."""
    return _BlasThreads(1)


def blas_threads(threads: int) -> _BlasThreads:
    """BLAS limited to ``threads`` threads, as a context or a decorator."""
    return _BlasThreads(threads)
