"""The splitter: mirrored windows of the (possibly lazy) image, cut into tiles, normalised into batches,
prepared in a background thread while the model runs."""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.nodata import valid_mask
from ..data.normalization import Normalization
from .grid import TileGrid
from .padding import gather_window

# Image columns per window read. Bounds the read buffer whatever the image width (a full-width band of a
# 16384 px RGB image is 25 MiB per copy); only the TIFF tiles straddling two windows are decoded twice.
READ_COLUMNS = 4096

TileIndex = tuple[int, int]


@dataclass(frozen=True)
class InvalidRule:
    """Which input pixels are invalid: equal to ``nodata`` (None: only NaN/Inf) in ``rule`` ("any"|"all") bands."""

    nodata: float | None
    rule: str = "any"


def read_tiles(image: Any, grid: TileGrid, pad_mode: str) -> Iterator[tuple[TileIndex, np.ndarray]]:
    """Raw input tiles (views of the mirrored image) in row-major order, with their (row, col) tile indices.

    Each tile row is read in windows (``gather_window``) about ``READ_COLUMNS`` wide, which are cut into tiles.
    """
    rows, cols = grid.rows, grid.cols
    tiles_per_read = max(1, READ_COLUMNS // cols.step)
    for i in range(rows.count):
        r0 = rows.input_start(i)
        for first in range(0, cols.count, tiles_per_read):
            last = min(first + tiles_per_read, cols.count) - 1
            c_start = cols.input_start(first)
            window = gather_window(image, (r0, r0 + rows.tile), (c_start, cols.input_start(last) + cols.tile), pad_mode)
            for j in range(first, last + 1):
                c0 = cols.input_start(j) - c_start
                yield (i, j), window[:, c0 : c0 + cols.tile]


def tile_batches(image: Any, grid: TileGrid, batch_size: int, pad_mode: str, norm: Normalization,
                 channels_last: bool, invalid: InvalidRule | None = None,
                 ) -> Iterator[tuple[torch.Tensor, list[TileIndex], list[np.ndarray | None] | None]]:
    """Normalised NCHW float32 tile batches in row-major order, with their (row, col) tile indices.

    With an ``invalid`` rule, each tile's invalid pixels (:func:`unetseg.data.nodata.valid_mask`) are set to 0
    (the normalised mean) and the third item lists per tile None or its HxW bool mask of invalid pixels (None
    for the whole batch when no tile has one); without, the third item is None.
    """
    tiles: list[np.ndarray] = []
    index: list[TileIndex] = []
    masks: list[np.ndarray | None] = []

    def emit() -> tuple[torch.Tensor, list[TileIndex], list[np.ndarray | None] | None]:
        x = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2)  # NHWC memory = channels_last
        found = list(masks) if any(m is not None for m in masks) else None
        return (x if channels_last else x.contiguous()), list(index), found

    for ij, tile in read_tiles(image, grid, pad_mode):
        x = norm.apply(tile)
        bad = None
        if invalid is not None:
            bad = ~valid_mask(tile, invalid.nodata, invalid.rule)
            if bad.any():
                x[bad] = 0.0
            else:
                bad = None
        tiles.append(x)
        index.append(ij)
        masks.append(bad)
        if len(tiles) == batch_size:
            yield emit()
            tiles.clear()
            index.clear()
            masks.clear()
    if tiles:
        yield emit()


def prefetch(iterator: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``iterator`` in a background thread, ``depth`` items ahead (torch and numpy release the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def work() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((True, end))
        except BaseException as err:  # handed to the consumer, which re-raises it
            q.put((False, err))

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
