"""The allocator's two modes (glibc): keep freed memory for the next forward pass, or return it at once.

Keep (:func:`keep_freed_memory`), for torch's forward on a CPU: glibc serves blocks over its mmap threshold (128
KiB, rising to at most 32 MiB as it adapts) with fresh ``mmap`` pages and unmaps them on ``free``, so every
convolution output of a tile is page-faulted and zeroed anew. Dask's worker processes make it worse: they start
with ``MALLOC_TRIM_THRESHOLD_=65536``, which also freezes the threshold at 128 KiB. On a 2-core AMX Xeon a base-16
U-Net's fp32 512^2 forward took 0.63 s per tile in a Dask worker, 0.51 s in a plain process and 0.37 s with the
heap kept (140k, 63k and ~0.3k minor page faults per tile). jemalloc or tcmalloc preloaded do the same job.

Return (:func:`return_freed_memory`), for engines that plan their own memory (OpenVINO): the tile pipeline's big
buffers (windows, tiles, bands, a few MiB each, made and freed in three threads) are mapped and unmapped, and what
the process holds is handed back. glibc's adaptive threshold otherwise lets such blocks settle in each thread's
heap, where they stay: a 16384^2 run grew by ~170 MiB over its engine's own memory (AMD EPYC, 2 cores), ~50 MiB in
this mode.

``unetseg`` commands start in the keep mode (engine="auto" times torch first); :func:`unetseg.predict_tiled` and
the Dask workers switch to the mode of the engine that runs, once per run, so a program calling the library gets
the CLI's settings without touching malloc.
"""
from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

MMAP_THRESHOLD = 256 * 2**20  # keep: blocks up to this size come from the reusable heap
TRIM_THRESHOLD = 512 * 2**20  # keep: free memory kept at the top of the heap before it is returned
RETURN_MMAP_THRESHOLD = 2**20  # return: blocks from this size on are mapped, and unmapped when freed
RETURN_TRIM_THRESHOLD = 128 * 2**10  # return: glibc's default
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
_MODE: list[str] = []


@functools.cache
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  musl and other C libraries lack them: left alone
    except (OSError, AttributeError):
        return None
    return libc


def _set(mode: str, mmap: int, trim: int) -> bool:
    libc = _libc()
    if libc is None:
        return False
    if _MODE[-1:] != [mode]:
        if not (libc.mallopt(_M_MMAP_THRESHOLD, mmap) and libc.mallopt(_M_TRIM_THRESHOLD, trim)):
            return False
        _MODE[:] = [mode]
    return True


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (the keep mode); False where there is no glibc."""
    return _set("keep", MMAP_THRESHOLD, TRIM_THRESHOLD)


def return_freed_memory() -> bool:
    """Lower glibc's mmap and trim thresholds (the return mode) and hand back what is free now; False where there
    is no glibc."""
    done = _set("return", RETURN_MMAP_THRESHOLD, RETURN_TRIM_THRESHOLD)
    release_freed_memory()
    return done


def allocator_mode() -> str | None:
    """"keep", "return", or None while glibc's defaults hold (or there is no glibc)."""
    return _MODE[-1] if _MODE else None


def release_freed_memory() -> bool:
    """Hand the freed memory this process keeps back to the OS (glibc ``malloc_trim``) without changing the mode:
    between phases of a job whose next phase needs the memory for other things (the second pass over objects after
    tiling, another engine after timing torch's). False where there is no glibc."""
    libc = _libc()
    return libc is not None and bool(libc.malloc_trim(0))
