"""Streaming tiled BigTIFF writer: rows go in band by band, only one row of tiles is ever held."""
from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from ..errors import OutputError
from .atomic import atomic_path, describe_os_error, is_fatal, scratch_beside
from .tiff import GDAL_NODATA


def verify_tiff(shape: tuple[int, ...], dtype: Any, levels: int = 1) -> Callable[[Path], None]:
    """A check for :func:`atomic_path`: the file's header parses and declares ``shape``, ``dtype`` and ``levels``."""
    def check(path: Path) -> None:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if tuple(series.shape) != tuple(shape) or np.dtype(series.dtype) != np.dtype(dtype):
                raise ValueError(f"read back shape {series.shape} {series.dtype}, wrote {shape} {dtype}")
            if len(series.levels) != levels:
                raise ValueError(f"read back {len(series.levels)} pyramid levels, wrote {levels}")
    return check


def downsampled_tiles(source: Any, shape: tuple[int, ...], tile: tuple[int, int]) -> Iterator[np.ndarray]:
    """Tiles (row-major) of ``source[::2, ::2]`` (nearest: labels stay labels), ``shape`` its HxW[xC]; each tile
    reads only its 2x window of the lazy ``source``."""
    th, tw = tile
    for top in range(0, shape[0], th):
        for left in range(0, shape[1], tw):
            part = np.asarray(source[2 * top : 2 * (top + th), 2 * left : 2 * (left + tw)])[::2, ::2]
            block = np.zeros((th, tw, *shape[2:]), part.dtype)
            block[: part.shape[0], : part.shape[1]] = part
            yield block


def nodata_tag(value: float | int | None) -> list[tuple]:
    """The GDAL_NODATA extratag for ``value`` (ASCII, as GDAL writes it), or none."""
    if value is None:
        return []
    text = str(int(value)) if float(value).is_integer() else repr(float(value))
    return [(GDAL_NODATA, "s", 0, text, True)]


class TiffTileWriter:
    """Write a tiled BigTIFF band by band: ``writer[r0:r1] = rows`` in increasing, contiguous row order.

    tifffile pulls tiles from a generator in a background thread, so only one row of tiles (plus the
    bands in flight) is ever held in memory. The file appears under ``path`` only when every row was
    written and the writer closed without error (:func:`unetseg.io.atomic.atomic_path`).

    Args:
        path: output .tif path.
        shape: (H, W) or (H, W, C); C == 3 is written as RGB.
        dtype: pixel dtype.
        tile: TIFF tile shape (multiples of 16). Default (256, 256).
        compression: tifffile compression, default "zlib".
        extratags: tifffile extratags (e.g. GeoTIFF tags from :class:`ImageSource`).
        colormap: optional (256, 3) uint8 RGB palette; the file is then a palette-colour TIFF (uint8 only).
        levels: pyramid levels (default 1: none). Levels 1.. are sub-resolutions (SubIFDs, as OME-TIFF and
            tifffile read them) made by nearest downsampling of the level above, read back from the file
            tile by tile once it is written, so memory stays flat.
        resolution: optional (x, y) pixels per centimetre of level 0 (TIFF resolution tags).
        cog: False (default): the streamed file is the output. True: it is a hidden temporary next to ``path``,
            copied at the end into a Cloud Optimized GeoTIFF (:mod:`unetseg.io.cog`, needs rasterio) with the
            same tags, colour map and pyramid (as overviews), which becomes ``path`` once GDAL reads it back as
            a COG; the temporary is removed either way.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype: Any, *,
                 tile: tuple[int, int] = (256, 256), compression: str | None = "zlib",
                 extratags: Sequence[tuple] = (), colormap: np.ndarray | None = None, levels: int = 1,
                 resolution: tuple[float, float] | None = None, cog: bool = False) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.tile = tile
        self.compression = compression
        self.extratags = list(extratags)
        self.colormap = colormap
        self.levels = levels
        self.resolution = resolution
        self.cog = cog
        self._rows_written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._stack: ExitStack | None = None
        self._thread: threading.Thread | None = None
        self._final_tmp: Path | None = None  # with cog: the temporary the COG is assembled in
        self._streamed: Path | None = None

    def __enter__(self) -> "TiffTileWriter":
        self._stack = ExitStack()
        if self.cog:
            from .cog import verify_cog

            self._final_tmp = self._stack.enter_context(
                atomic_path(self.path, verify=verify_cog(self.shape, self.dtype, self.levels)))
            self._streamed = self._stack.enter_context(scratch_beside(self.path))
        else:
            self._streamed = self._stack.enter_context(
                atomic_path(self.path, verify=verify_tiff(self.shape, self.dtype, self.levels)))
        self._thread = threading.Thread(target=self._write, args=(self._streamed,), name="unetseg-tiff-writer",
                                        daemon=True)
        self._thread.start()
        return self

    def _tiles(self) -> Iterator[np.ndarray]:
        th, tw = self.tile
        height, width = self.shape[:2]
        # the rows not yet written, as views of their bands: each tile is filled from them directly (joining the
        # bands into one array copied a band's worth of rows per tile row, from the heap the forward pass keeps)
        parts: deque[np.ndarray] = deque()
        for top in range(0, height, th):
            need = min(th, height - top)
            while sum(len(p) for p in parts) < need:
                band = self._queue.get()
                if band is None:
                    raise RuntimeError("TIFF writer closed before all rows were written")
                parts.append(band)
            pieces = []
            while need:
                piece = parts[0][:need]
                pieces.append(piece)
                need -= len(piece)
                parts[0] = parts[0][len(piece):]
                if not len(parts[0]):
                    parts.popleft()
            for left in range(0, width, tw):
                block = np.zeros((th, tw, *self.shape[2:]), self.dtype)
                row = 0
                for piece in pieces:
                    part = piece[:, left : left + tw]
                    block[row : row + len(part), : part.shape[1]] = part
                    row += len(part)
                yield block

    def _write(self, tmp: Path) -> None:
        try:
            kwargs: dict[str, Any] = {}
            if self.colormap is not None:
                cmap = np.zeros((3, 256), np.uint16)
                cmap[:, : len(self.colormap)] = np.asarray(self.colormap, np.uint16).T * 257
                kwargs.update(photometric="palette", colormap=cmap)
            elif len(self.shape) == 3 and self.shape[2] == 3:
                kwargs.update(photometric="rgb")
            else:
                kwargs.update(photometric="minisblack")
                if len(self.shape) == 3:  # bands as samples of each pixel (else tifffile takes them as planes)
                    kwargs.update(planarconfig="contig")
            kwargs.update(dtype=self.dtype, tile=self.tile, compression=self.compression)
            if self.cog:  # tifffile's shape description would name the COG's first IFD only: tifffile misreads it
                kwargs.update(metadata=None)

            def resolution(level: int) -> dict[str, Any]:
                if self.resolution is None:
                    return {}
                return {"resolution": tuple(r / 2**level for r in self.resolution), "resolutionunit": "CENTIMETER"}

            with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
                tif.write(self._tiles(), shape=self.shape, extratags=self.extratags,
                          subifds=self.levels - 1 or None, **resolution(0), **kwargs)
                shape = self.shape
                for level in range(1, self.levels):
                    tif.filehandle.flush()
                    shape = (-(-shape[0] // 2), -(-shape[1] // 2), *shape[2:])
                    with tifffile.TiffFile(tmp) as done:
                        above = zarr.open(done.series[0].levels[level - 1].aszarr(), mode="r")
                        tif.write(downsampled_tiles(above, shape, self.tile), shape=shape, subfiletype=1,
                                  **resolution(level), **kwargs)
        except BaseException as err:
            self._error = err
            while True:  # unblock a producer waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def __setitem__(self, key: slice, rows: np.ndarray) -> None:
        if not isinstance(key, slice) or key.start != self._rows_written or key.step not in (None, 1):
            raise ValueError(f"TiffTileWriter takes contiguous row bands in order; expected rows from {self._rows_written}")
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:]:
            raise ValueError(f"band shape {rows.shape} does not fit image shape {self.shape}")
        while True:
            if self._error is not None:
                raise OutputError(self.path, describe_os_error(self._error), fatal=is_fatal(self._error)) \
                    from self._error
            try:
                self._queue.put(rows, timeout=0.1)
                break
            except queue.Full:
                continue
        self._rows_written += len(rows)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._stack is None or self._thread is None:
            raise RuntimeError("TiffTileWriter used outside a with block")
        if exc_type is None and self._rows_written != self.shape[0] and self._error is None:
            exc = RuntimeError(f"{self.path}: only {self._rows_written} of {self.shape[0]} rows were written")
            exc_type = type(exc)
        if exc_type is not None:
            self._error = self._error or exc
        while self._thread.is_alive():  # the end marker; the writer thread drains the queue meanwhile
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        if self._error is None and self._final_tmp is not None:
            self._assemble_cog()
        if self._error is not None:
            self._stack.__exit__(type(self._error), self._error, None)  # removes the temporary file
            if exc_type is None:
                raise OutputError(self.path, describe_os_error(self._error), fatal=is_fatal(self._error)) \
                    from self._error
            return
        self._stack.__exit__(None, None, None)

    def _assemble_cog(self) -> None:
        """The streamed file (full resolution, then its pyramid) copied in COG order into the final temporary."""
        from .cog import copy_as_cog

        assert self._streamed is not None and self._final_tmp is not None
        try:
            copy_as_cog(self._streamed, self._final_tmp)
        except Exception as err:  # noqa: BLE001  reported as the output's one-line error by __exit__
            self._error = err
