"""Image readers (in memory or lazy, window by window) and a streaming tiled-BigTIFF writer.

TIFF/BigTIFF inputs are opened lazily: uncompressed contiguous files are memory-mapped
(``tifffile.memmap``), others (compressed, tiled, strips) are read through tifffile's zarr store,
so :func:`unetseg.predict_tiled` reads only the windows it needs. Other formats load into memory
with OpenCV (BGR converted to RGB).
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from ..data.folder import read_image
from ..errors import UnetsegError
from ..fileio import atomic_path

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm")
# GeoTIFF: ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory, GeoDoubleParams,
# GeoAsciiParams, GDAL_NODATA
GEOTIFF_TAGS = (33550, 33922, 34264, 34735, 34736, 34737, 42113)


@dataclass
class ImageSource:
    """An opened input image: ``array`` is HxW or HxWxC (numpy, memmap or zarr), read by windows."""

    path: Path
    array: Any
    lazy: bool
    geotags: list[tuple] = field(default_factory=list)  # tifffile ``extratags`` to copy onto TIFF outputs

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def is_tiff(self) -> bool:
        return self.path.suffix.lower() in TIFF_SUFFIXES


class _ChannelsLast:
    """A lazy CxHxW array seen as HxWxC (planar TIFFs): slicing reads only the requested window."""

    def __init__(self, array: Any) -> None:
        self._array = array
        c, h, w = array.shape
        self.shape = (h, w, c)
        self.dtype = array.dtype

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        return np.moveaxis(np.asarray(self._array[(slice(None), *key)]), 0, -1)


def _geotags(page: tifffile.TiffPage) -> list[tuple]:
    tags = []
    for code in GEOTIFF_TAGS:
        tag = page.tags.get(code)
        if tag is not None:
            tags.append((code, int(tag.dtype), tag.count, tag.value, True))
    return tags


def _open_tiff(path: Path) -> ImageSource:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, page = series.axes, tif.pages.first
            geotags = _geotags(page)
            memmappable = page.is_memmappable and len(tif.series) == 1 and len(series.levels) == 1
        if memmappable:
            array = tifffile.memmap(path, mode="r")
        else:
            group_or_array = zarr.open(tifffile.imread(path, aszarr=True, series=0, level=0), mode="r")
            array = group_or_array["0"] if isinstance(group_or_array, zarr.Group) else group_or_array
    except (OSError, ValueError, KeyError, tifffile.TiffFileError) as err:
        raise UnetsegError(f"{path}: cannot read TIFF ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if array.ndim == 3 and not axes.endswith("S"):
        array = _ChannelsLast(array)  # planar (SYX / CYX) storage
    elif array.ndim not in (2, 3):
        raise UnetsegError(f"{path}: TIFF with axes {axes!r} shape {tuple(array.shape)} is not a single 2D image")
    return ImageSource(path, array, lazy=True, geotags=geotags)


def open_image(path: str | os.PathLike) -> ImageSource:
    """Open an image for :func:`unetseg.predict_tiled`: TIFF lazily, other formats in memory (RGB order).

    Raises UnetsegError naming the file when it is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise UnetsegError(f"{path}: no such file")
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _open_tiff(path)
    return ImageSource(path, read_image(path), lazy=False)  # the reader training uses: same channels, dtypes


def find_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files given directly, plus the image files (by suffix, sorted) in any folders given."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(p)
    return found


class TiffTileWriter:
    """Write a tiled BigTIFF band by band: ``writer[r0:r1] = rows`` in increasing, contiguous row order.

    tifffile pulls tiles from a generator in a background thread, so only one row of tiles (plus the
    bands in flight) is ever held in memory. The file appears under ``path`` only when every row was
    written and the writer closed without error (:func:`unetseg.fileio.atomic_path`).

    Args:
        path: output .tif path.
        shape: (H, W) or (H, W, C); C == 3 is written as RGB.
        dtype: pixel dtype.
        tile: TIFF tile shape (multiples of 16). Default (256, 256).
        compression: tifffile compression, default "zlib".
        extratags: tifffile extratags (e.g. GeoTIFF tags from :class:`ImageSource`).
        colormap: optional (256, 3) uint8 RGB palette; the file is then a palette-colour TIFF (uint8 only).
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype: Any, *,
                 tile: tuple[int, int] = (256, 256), compression: str | None = "zlib",
                 extratags: Sequence[tuple] = (), colormap: np.ndarray | None = None) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.tile = tile
        self.compression = compression
        self.extratags = list(extratags)
        self.colormap = colormap
        self._rows_written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._stack: ExitStack | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "TiffTileWriter":
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._thread = threading.Thread(target=self._write, args=(tmp,), name="unetseg-tiff-writer", daemon=True)
        self._thread.start()
        return self

    def _tiles(self) -> Iterator[np.ndarray]:
        th, tw = self.tile
        height, width = self.shape[:2]
        pending = np.zeros((0, *self.shape[1:]), self.dtype)
        for top in range(0, height, th):
            need = min(th, height - top)
            while len(pending) < need:
                band = self._queue.get()
                if band is None:
                    raise RuntimeError("TIFF writer closed before all rows were written")
                pending = np.concatenate([pending, band]) if len(pending) else band
            rows, pending = pending[:need], pending[need:]
            for left in range(0, width, tw):
                block = np.zeros((th, tw, *self.shape[2:]), self.dtype)
                part = rows[:, left : left + tw]
                block[: part.shape[0], : part.shape[1]] = part
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
            with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
                tif.write(self._tiles(), shape=self.shape, dtype=self.dtype, tile=self.tile,
                          compression=self.compression, extratags=self.extratags, **kwargs)
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
                raise RuntimeError(f"TIFF writer failed: {self._error}") from self._error
            try:
                self._queue.put(rows, timeout=0.1)
                break
            except queue.Full:
                continue
        self._rows_written += len(rows)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._stack is not None and self._thread is not None
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
        if self._error is not None:
            self._stack.__exit__(type(self._error), self._error, None)  # removes the temporary file
            if exc_type is None:
                raise RuntimeError(f"{self.path}: TIFF writing failed: {self._error}") from self._error
            return
        self._stack.__exit__(None, None, None)
