"""The service process's malloc settings (glibc): output chunks reuse freed memory.

Each pipe read takes a buffer of up to 1 MiB, freed once the log writer and every
subscriber are done with it. With glibc's defaults, freed memory at the top of the heap
past 128 KiB goes back to the kernel, and allocations past its (moving) mmap threshold
get fresh mappings, so the next chunks land on new pages: a page fault per 4 KiB, 38
thousand per 200 MB streamed. Serving blocks up to 2 MiB from the heap and keeping up to
32 MiB of free heap brings the faults to none and the stream's ratio to a raw pipe read
from 0.58x to 0.63x (docs/benchmarks.md); the peak memory is what it was.

Only the service process does this (`run_service`): an embedding process (the bridge's
fallback, the Python API) keeps its own allocator settings.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt() parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
HEAP_BLOCKS_UP_TO = 2 * 1024 * 1024
KEEP_FREE_HEAP = 32 * 1024 * 1024


def keep_chunk_memory() -> bool:
    """Apply the settings; False where the C library has no such knobs (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, HEAP_BLOCKS_UP_TO) == 1
    done = mallopt(M_TRIM_THRESHOLD, KEEP_FREE_HEAP) == 1 and done
    if not done:  # musl's mallopt() is a stub that returns 0
        log.debug("malloc settings not applied (not glibc)")
    return done
