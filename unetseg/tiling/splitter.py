"""The splitter: the tile grid read as raw windows, extrapolated and cut into tile batches on the device the model
runs on, ahead of the model in a background thread.

Tiles stay in the image's own dtype (uint8, uint16, ...) until the forward stage normalises them on the device: a
uint8 tile is a quarter of a float32 tile's bytes in the read-ahead queue and over the bus. Each window (one tile
row, about :data:`READ_COLUMNS` wide) is read from the source once, moved to the device once (on CUDA through
pinned host memory on a side stream, so the copy overlaps the previous batch's compute), mirrored there
(:meth:`~unetseg.tiling.padding.WindowRead.tensor`), and its tiles are cut from it.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .grid import TileGrid
from .padding import WindowRead, read_window

# Image columns per window read. Bounds the read buffer whatever the image width (a full-width band of a
# 16384 px RGB image is 25 MiB per copy); only the TIFF tiles straddling two windows are decoded twice.
READ_COLUMNS = 4096

TileIndex = tuple[int, int]


def travel_dtype(dtype: Any) -> np.dtype:
    """The dtype raw tiles of an image of ``dtype`` travel in: the image's own where torch holds it (uint8, uint16,
    int16, float32, ...), bool as uint8, anything else as float32 (what normalising it computes in first)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype.kind in "uif" and dtype.itemsize <= 8 and dtype != np.uint64:
        return dtype.newbyteorder("=")
    return np.dtype(np.float32)


@dataclass(frozen=True)
class TileBatch:
    """Raw tiles of the grid on the plan's device: ``x`` N x H x W x C (:func:`travel_dtype`), ``index`` their
    (row, col) tile indices; ``ready``: on CUDA, the event of the side stream that made them."""

    x: torch.Tensor
    index: list[TileIndex]
    ready: Any = None

    def tiles(self) -> torch.Tensor:
        """``x``, once it is there: on CUDA the caller's stream waits for the copy (and keeps its memory alive)."""
        if self.ready is not None:
            stream = torch.cuda.current_stream(self.x.device)
            stream.wait_event(self.ready)
            self.x.record_stream(stream)
        return self.x


def read_windows(image: Any, grid: TileGrid, pad_mode: str) -> Iterator[tuple[list[TileIndex], list[int], WindowRead]]:
    """The grid's windows in row-major order: each tile row is read in windows about ``READ_COLUMNS`` wide; each
    window comes with its tiles' indices and their first columns within it."""
    rows, cols = grid.rows, grid.cols
    tiles_per_read = max(1, READ_COLUMNS // cols.step)
    for i in range(rows.count):
        r0 = rows.input_start(i)
        for first in range(0, cols.count, tiles_per_read):
            last = min(first + tiles_per_read, cols.count) - 1
            c_start = cols.input_start(first)
            window = read_window(image, (r0, r0 + rows.tile), (c_start, cols.input_start(last) + cols.tile), pad_mode)
            js = list(range(first, last + 1))
            yield [(i, j) for j in js], [cols.input_start(j) - c_start for j in js], window


class Staging:
    """Moves window blocks to ``device``: on CPUs the block itself (no copy); on CUDA a copy into pinned host memory
    (torch's caching host allocator reuses it once its copy is done) and one asynchronous copy to the GPU on the
    staging stream."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def to_device(self, block: np.ndarray, dtype: np.dtype) -> torch.Tensor:
        block = np.ascontiguousarray(block, dtype=dtype)
        if not block.flags.writeable:  # a view of a read-only (memory-mapped) image: torch takes writable memory
            block = block.copy()
        host = torch.from_numpy(block)
        if self.device.type == "cpu":
            return host
        if self.stream is None:
            return host.to(self.device)
        pinned = torch.empty(host.shape, dtype=host.dtype, pin_memory=True)
        pinned.copy_(host)
        return pinned.to(self.device, non_blocking=True)

    def run(self) -> Any:
        """The context the staging work runs in (the staging stream on CUDA)."""
        return torch.cuda.stream(self.stream) if self.stream is not None else _NoContext()

    def done(self) -> Any:
        """An event marking the work issued so far (CUDA), else None."""
        if self.stream is None:
            return None
        event = torch.cuda.Event()
        event.record(self.stream)
        return event


class _NoContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def tile_batches(image: Any, grid: TileGrid, batch_size: int, pad_mode: str, device: torch.device,
                 dtype: np.dtype | None = None) -> Iterator[TileBatch]:
    """Raw tile batches of ``grid`` over ``image`` on ``device`` in row-major order, ``batch_size`` tiles each (the
    last may be shorter); ``dtype``: what the tiles travel in (default :func:`travel_dtype` of the image's)."""
    dtype = travel_dtype(image.dtype) if dtype is None else dtype
    staging = Staging(device)
    tile_h, tile_w = grid.tile_shape
    pending: list[torch.Tensor] = []
    index: list[TileIndex] = []
    with staging.run():
        for ids, starts, window in read_windows(image, grid, pad_mode):
            block = staging.to_device(window.block, dtype)
            rows = window.tensor(block)
            rows = rows if rows.dim() == 3 else rows[..., None]
            for ij, c0 in zip(ids, starts, strict=True):
                pending.append(rows[:tile_h, c0 : c0 + tile_w])
                index.append(ij)
                if len(pending) == batch_size:
                    yield TileBatch(torch.stack(pending), list(index), staging.done())
                    pending.clear()
                    index.clear()
        if pending:
            yield TileBatch(torch.stack(pending), list(index), staging.done())


def prefetch(iterator: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``iterator`` in a background thread, ``depth`` items ahead (torch and numpy release the GIL). Closing
    the returned generator (or an error in either thread) stops the thread; an error in it is raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(item: tuple[bool, Any]) -> bool:
        """Hand ``item`` on unless the consumer has stopped; False when it has."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in iterator:
                if not put((True, item)):
                    return
            put((True, end))
        except BaseException as err:  # handed to the consumer, which re-raises it
            put((False, err))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="unetseg-tile-reader", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
