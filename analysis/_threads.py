"""Keep BLAS single-threaded inside the analysis (its matrices are small and it parallelises over
processes; why: docs/analysis.md, "Speed"). Without threadpoolctl nothing changes."""

from __future__ import annotations

import contextlib


def single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
