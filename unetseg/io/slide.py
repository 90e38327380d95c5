"""Whole-slide images (Aperio SVS, Hamamatsu NDPI, Leica SCN, Ventana BIF, ...) through ``tiffslide``.

tiffslide was chosen over openslide-python + openslide-bin: it is built on tifffile (which unetseg already
uses for every TIFF), ships as pure-Python wheels, reads levels lazily through a zarr store — the same
window-by-window access as every other reader here — and reports the slide's microns per pixel. Formats
it does not read (MIRAX, ...) need OpenSlide. Needs ``pip install unetseg[scale]``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import UnetsegError
from .levels import MissingLevel
from .tiff import YXCView

SLIDE_SUFFIXES = (".svs", ".ndpi", ".scn", ".bif", ".qptiff")


def is_slide(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in SLIDE_SUFFIXES


def open_slide(path: str | os.PathLike, level: int = 0) -> tuple[YXCView, tuple[float, float] | None, str | None]:
    """Open pyramid ``level`` of a whole-slide image lazily: (HxWxC view, (y, x) microns per pixel or None, unit)."""
    path = Path(path)
    try:
        import tiffslide
    except ImportError:
        raise UnetsegError(f"{path}: whole-slide images need tiffslide: pip install 'unetseg[scale]'") from None
    try:
        slide = tiffslide.TiffSlide(path)
        if not 0 <= level < slide.level_count:
            raise MissingLevel(f"{path}: has {slide.level_count} pyramid level(s), level {level} does not exist")
        array: Any = slide.zarr_group[str(level)]
        props = slide.properties
        down = float(slide.level_downsamples[level])
    except UnetsegError:
        raise
    except Exception as err:  # noqa: BLE001  vendor formats fail in many ways
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnetsegError(f"{path}: cannot read whole-slide image ({detail})") from None
    mpp = props.get("tiffslide.mpp-y"), props.get("tiffslide.mpp-x")
    size = (float(mpp[0]) * down, float(mpp[1]) * down) if all(mpp) else None
    letters = "YXS" if len(array.shape) == 3 else "YX"
    return YXCView(array, letters, path), size, "micrometer" if size else None
