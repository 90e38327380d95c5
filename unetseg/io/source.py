"""Opening prediction inputs: TIFFs lazily (window by window), other formats in memory; finding them in folders."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnetsegError
from .images import is_image_file, is_tiff, read_image
from .levels import MissingLevel
from .nifti import is_nifti
from .slide import is_slide, open_slide
from .tiff import open_tiff
from .zarr_io import is_zarr, open_zarr


@dataclass
class ImageSource:
    """An opened input image: ``array`` is HxW or HxWxC (numpy, or a lazy view read by windows)."""

    path: Path
    array: Any
    geotags: list[tuple] = field(default_factory=list)  # tifffile ``extratags`` to copy onto TIFF outputs
    nodata: float | None = None  # the file's own nodata value (GDAL_NODATA tag), if any
    pixel_size: tuple[float, float] | None = None  # (y, x) physical size of a pixel at the level read, if known
    unit: str | None = None  # of pixel_size ("micrometer", ...)
    alpha: bool = False  # the last channel is an alpha (transparency) band: RGBA/grey+alpha PNGs, TIFF ExtraSamples
    dropped_alpha: bool = False  # ``array`` is the file's without its alpha band (:meth:`without_alpha`)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def is_tiff(self) -> bool:
        return is_tiff(self.path)

    def without_alpha(self) -> ImageSource:
        """This source without its alpha band (the pixels under it are read as they are), for a model trained on
        the colour bands alone; itself when it has none."""
        if not self.alpha:
            return self
        return replace(self, array=FirstChannels(self.array, int(self.shape[2]) - 1), alpha=False, dropped_alpha=True)


class FirstChannels:
    """The first ``count`` channels of an HxWxC array or lazy view, read window by window as the view is
    (``view[r0:r1, c0:c1]``); HxW when ``count`` is 1."""

    def __init__(self, inner: Any, count: int) -> None:
        self._inner, self._count = inner, count
        self.dtype = np.dtype(inner.dtype)
        self.shape = tuple(int(n) for n in inner.shape[:2]) + ((count,) if count > 1 else ())
        self.ndim = len(self.shape)

    def _keep(self, block: np.ndarray) -> np.ndarray:
        return block[..., : self._count] if self._count > 1 else block[..., 0]

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        return self._keep(np.asarray(self._inner[key]))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        block = np.ascontiguousarray(self._keep(np.asarray(self._inner)))
        return block if dtype is None else block.astype(dtype)


def open_image(path: str | os.PathLike, level: int = 0) -> ImageSource:
    """Open an image for :func:`unetseg.predict_tiled`: TIFF and zarr/OME-Zarr lazily, other formats in memory
    (RGB order). ``level``: the pyramid level of a pyramidal TIFF, whole-slide image or OME-Zarr (0 = full size).

    Raises UnetsegError naming the file when it is missing or unreadable, or has no such level.
    """
    path = Path(path)
    if is_zarr(path):
        view, pixel_size, unit = open_zarr(path, level)
        return ImageSource(path, view, pixel_size=pixel_size, unit=unit)
    if not path.is_file():
        raise UnetsegError(f"{path}: no such file")
    if is_slide(path):
        view, pixel_size, unit = open_slide(path, level)
        return ImageSource(path, view, pixel_size=pixel_size, unit=unit)
    if is_tiff(path):
        view, info = open_tiff(path, level)
        return ImageSource(path, view, info.geotags, info.nodata, info.pixel_size, info.unit, info.alpha)
    if level:
        raise MissingLevel(f"{path}: has one level only (level {level} asked)")
    image = read_image(path)
    # PNG/WebP/BMP with 2 or 4 channels: grey or colour + alpha (OpenCV reads a grey+alpha PNG as 4 channels)
    return ImageSource(path, image, alpha=image.ndim == 3 and image.shape[2] in (2, 4))


def recorded_pixel_size(path: str | os.PathLike) -> tuple[tuple[float, float], str | None] | None:
    """The (y, x) pixel size and unit a file's metadata records (TIFF resolution tags, OME-XML, GeoTIFF pixel
    scale, OME-Zarr axes), or None; formats without such metadata (PNG, JPEG) are not read."""
    path = Path(path)
    if not (is_tiff(path) or is_zarr(path) or is_slide(path)):
        return None
    source = open_image(path)
    return None if source.pixel_size is None else (source.pixel_size, source.unit)


def find_images(inputs: Sequence[str | os.PathLike],
                skip: Callable[[list[Path]], list[Path]] | None = None) -> list[Path]:
    """Files given directly, plus the image files (by suffix, sorted) in any folders given.

    Inside folders, hidden files are skipped, and ``skip`` (if given) filters each folder's list (the predict
    command leaves out unetseg's own outputs, :func:`unetseg.outputs.naming.skip_outputs`). Each file comes once.
    """
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and not is_zarr(p):
            files = sorted(f for f in p.iterdir() if not f.name.startswith(".")
                           and (is_image_file(f) or is_zarr(f) or is_slide(f) or is_nifti(f)))
            found += files if skip is None else skip(files)
        else:
            found.append(p)
    return list(dict.fromkeys(found))  # a file named twice (or inside a folder also given) is done once
