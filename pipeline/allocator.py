"""Keep freed memory in the process for reuse (glibc) instead of returning it: a run frees and
reallocates the same few-MB temporaries thousands of times, which glibc's adaptive defaults turn
into fresh pages (minor page faults) each time; peak resident memory is unchanged."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_done = False


def keep_freed_memory() -> bool:
    """Once per process; a no-op (False) where the C library is not glibc."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # 32 MiB is glibc's largest mmap threshold on 64-bit; above it blocks are
    # mapped and unmapped whatever the setting. Trim only beyond 1 GiB free.
    ok = mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1 and mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    _done = ok
    if not ok:
        log.debug("mallopt refused; keeping the C library's default allocation thresholds")
    return ok
