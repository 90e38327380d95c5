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

What the kept heap costs is held down three ways: both modes limit glibc to one heap for all threads
(:data:`ARENAS`), the tile loops hand freed memory back between batches (:func:`release_between_batches`), and
buffers that outlive several forward passes (finished row bands) get their own mapping (:func:`mapped_empty`).
`unetseg predict --tile-size 1024 --format index --engine torch` of a 16384^2 RGB TIFF (2-core AVX512 EPYC): 722
MiB above import before, 488-554 MiB over four runs with all three (and the U-Net decoder's smaller forward); the
default engine (OpenVINO, return mode) 498 -> 383-396 MiB.

``unetseg`` commands start in the keep mode (engine="auto" times torch first); :func:`unetseg.predict_tiled` and
the Dask workers switch to the mode of the engine that runs, once per run, so a program calling the library gets
the CLI's settings without touching malloc.
"""
from __future__ import annotations

import ctypes
import functools
import math
import mmap
import sys
import time
from typing import Any

import numpy as np

MMAP_THRESHOLD = 256 * 2**20  # keep: blocks up to this size come from the reusable heap
TRIM_THRESHOLD = 512 * 2**20  # keep: free memory kept at the top of the heap before it is returned
RETURN_MMAP_THRESHOLD = 2**20  # return: blocks from this size on are mapped, and unmapped when freed
RETURN_TRIM_THRESHOLD = 128 * 2**10  # return: glibc's default
# Both modes: one heap for all threads. glibc gives threads their own heaps (arenas), and a heap's freed memory serves
# only that heap's threads: the tile reader's windows, the forward's activations and the writer's tiles each kept
# their own high-water mark, one beside the other (`unetseg predict --engine torch` of a 4096^2 RGB TIFF at tile 1024,
# 2-core AVX512 EPYC: 512 MiB above import with glibc's arenas, 446 MiB with one, no slower).
ARENAS = 1
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameter numbers (malloc.h)
MAPPED_FROM_BYTES = 2**20  # :func:`mapped_empty` maps blocks from this size on
RELEASE_EVERY_SECONDS = 5.0  # keep: freed memory handed back this often (:func:`release_between_batches`)
_MODE: list[str] = []
_RELEASED: list[float] = []  # when release_between_batches last handed memory back


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
        if not (libc.mallopt(_M_MMAP_THRESHOLD, mmap) and libc.mallopt(_M_TRIM_THRESHOLD, trim)
                and libc.mallopt(_M_ARENA_MAX, ARENAS)):
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


def mapped_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised array of ``shape`` and ``dtype`` in its own anonymous memory mapping, unmapped when the
    array is freed (numpy's ``np.empty`` below :data:`MAPPED_FROM_BYTES`). For buffers that outlive several forward
    passes, such as a finished row band of labels waiting for its writer: from the kept heap, such a block sits
    between the passes' activations and splits its free space, so the heap grows by the pieces it cannot reuse."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < MAPPED_FROM_BYTES:
        return np.empty(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype).reshape(shape)


def release_between_batches() -> bool:
    """Hand the freed memory back between forward passes (call it when their activations are free): in the keep
    mode at most once every :data:`RELEASE_EVERY_SECONDS`, in the return mode after every batch.

    Keep: the kept heap fragments as tiles of different lifetimes come and go; a 16384^2 `--engine torch` run at
    tile 1024 grew to 601 MiB above import without this, 554 MiB handing back every 5 s and 488 MiB every 1 s
    (2-core AVX512 EPYC); every 1 s cost ~10 % of the speed, every 5 s nothing measurable: the next forward pass
    faults its pages in again once per interval instead of once per tile.

    Return: blocks over the mmap threshold are mapped only when no free space in the heap holds them, so after
    torch was timed (engine="auto") the pipeline's windows and bands were served from torch's freed heap and kept
    resident when freed: the default engine's 16384^2 run peaked 510-537 MiB above import against 426 MiB with
    ``--engine openvino`` (2-core AMX Xeon); handing back after each batch, 435 MiB after the choice, no slower
    (freed blocks are faulted in again on reuse, as mapped ones are). True when memory was handed back."""
    if allocator_mode() is None:
        return False
    now = time.monotonic()
    if not _RELEASED:
        _RELEASED.append(now)  # the first call starts the clock
        return False
    if allocator_mode() == "keep" and now - _RELEASED[0] < RELEASE_EVERY_SECONDS:
        return False
    _RELEASED[0] = now
    return release_freed_memory()


def release_freed_memory() -> bool:
    """Hand the freed memory this process keeps back to the OS (glibc ``malloc_trim``) without changing the mode:
    between phases of a job whose next phase needs the memory for other things (the second pass over objects after
    tiling, another engine after timing torch's). False where there is no glibc."""
    libc = _libc()
    return libc is not None and bool(libc.malloc_trim(0))
