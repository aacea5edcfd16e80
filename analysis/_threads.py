"""Keep BLAS single-threaded inside the analysis.

The analysis parallelises over processes (``--jobs``) and its matrices are
small (tens of columns): multi-threaded OpenBLAS only spins, and on a loaded
2-core machine it made the mixed models three times slower. ``python -m
analysis`` sets ``OPENBLAS_NUM_THREADS=1`` before numpy loads; this context
manager does the same for library callers (threadpoolctl comes with
scikit-learn, a dependency; without it, nothing changes).
"""

from __future__ import annotations

import contextlib


def single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
