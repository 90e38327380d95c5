"""Opening prediction inputs: TIFFs lazily (window by window), other formats in memory; finding them in folders."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UnetsegError
from .levels import MissingLevel
from .images import is_image_file, is_tiff, read_image
from .slide import is_slide, open_slide
from .tiff import open_tiff
from .zarr_io import is_zarr, open_zarr

# Outputs unetseg writes are named "<stem>_<kind>.<ext>"; a folder given as input skips them.
OUTPUT_KINDS = ("index", "palette", "overlay", "probs", "summary")


@dataclass
class ImageSource:
    """An opened input image: ``array`` is HxW or HxWxC (numpy, or a lazy view read by windows)."""

    path: Path
    array: Any
    geotags: list[tuple] = field(default_factory=list)  # tifffile ``extratags`` to copy onto TIFF outputs
    nodata: float | None = None  # the file's own nodata value (GDAL_NODATA tag), if any
    pixel_size: tuple[float, float] | None = None  # (y, x) physical size of a pixel at the level read, if known
    unit: str | None = None  # of pixel_size ("micrometer", ...)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def is_tiff(self) -> bool:
        return is_tiff(self.path)


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
        return ImageSource(path, view, info.geotags, info.nodata, info.pixel_size, info.unit)
    if level:
        raise MissingLevel(f"{path}: has one level only (level {level} asked)")
    return ImageSource(path, read_image(path))


def output_source_stem(path: Path) -> str | None:
    """For a file named like one of unetseg's outputs (``<stem>_index.png``, ``<stem>_probs.tif``, ...) the
    ``<stem>`` part, else None. OME outputs (``<stem>_index.ome.zarr``, ``.ome.tif``) count too."""
    name = path.stem.removesuffix(".ome")
    for kind in OUTPUT_KINDS:
        if name.endswith(f"_{kind}") and len(name) > len(kind) + 1:
            return name[: -len(kind) - 1]
    return None


def _skip_outputs(files: list[Path]) -> list[Path]:
    """``files`` of one folder without unetseg's outputs: a file named ``<x>_<kind>.<ext>`` is an output when
    an image of stem ``x`` (or named ``x`` with its dot as ``_``, e.g. ``a.tif`` for ``a_tif``) is there too."""
    sources = {f.stem for f in files} | {f.name.replace(".", "_") for f in files}
    return [f for f in files if output_source_stem(f) not in sources]


def find_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files given directly, plus the image files (by suffix, sorted) in any folders given.

    Inside folders, hidden files and unetseg's outputs next to their source image are skipped, so an output
    folder equal to an input folder is never read back as input. Each file comes once.
    """
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and not is_zarr(p):
            found += _skip_outputs(sorted(f for f in p.iterdir() if not f.name.startswith(".")
                                          and (is_image_file(f) or is_zarr(f) or is_slide(f))))
        else:
            found.append(p)
    return list(dict.fromkeys(found))  # a file named twice (or inside a folder also given) is done once
