"""Keep freed activation memory for reuse instead of handing it back to the OS after every layer (glibc).

glibc serves blocks over its mmap threshold (128 KiB, rising to at most 32 MiB as it adapts) with fresh
``mmap`` pages and unmaps them on ``free``, so every convolution output of a tile is page-faulted and zeroed
anew. Dask's worker processes make it worse: they start with ``MALLOC_TRIM_THRESHOLD_=65536``, which also
freezes the threshold at 128 KiB. On a 2-core AMX Xeon a base-16 U-Net's fp32 512^2 forward took 0.63 s
per tile in a Dask worker, 0.51 s in a plain process and 0.37 s with the settings below (140k, 63k and
~0.3k minor page faults per tile). jemalloc or tcmalloc preloaded do the same job; this needs nothing.

``unetseg`` commands, the Dask workers running unetseg tasks and :func:`unetseg.predict_tiled` running the torch
engine on a CPU call :func:`keep_freed_memory` (once per process), so a program calling the library is as fast as
the CLI without touching malloc settings (OpenVINO plans its own memory). The cost: the process keeps up to
``TRIM_THRESHOLD`` of freed memory for reuse instead of returning it at once.
"""
from __future__ import annotations

import ctypes
import functools
import sys

MMAP_THRESHOLD = 256 * 2**20  # blocks up to this size come from the reusable heap
TRIM_THRESHOLD = 512 * 2**20  # free memory kept at the top of the heap before it is returned
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries: left as they are
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_freed_memory() -> bool:
    """Hand the freed memory this process keeps (:func:`keep_freed_memory`) back to the OS (glibc
    ``malloc_trim``): between phases of a job whose next phase needs the memory for other things (the second
    pass over objects after tiling). False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False
