"""Choosing the pyramid level of an input: by number, or the level whose pixel size is nearest a wanted one."""
from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import UnetsegError

MAX_LEVELS = 32
# micrometres per unit of the pixel sizes files record (OME, TIFF resolution tags, OME-Zarr axes, GeoTIFF CRS)
MICROMETRES_PER_UNIT = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "centimeter": 1e4,
                        "meter": 1e6, "metre": 1e6}


class MissingLevel(UnetsegError):
    """The input has no pyramid level of that number."""


def to_micrometres(size: float, unit: str | None) -> float | None:
    """``size`` in ``unit`` as micrometres; None for units that are not lengths (degrees, unknown names); a size
    with no unit is taken as micrometres (the unit of TIFF resolution tags as unetseg reads them)."""
    if unit is None:
        return float(size)
    factor = MICROMETRES_PER_UNIT.get(unit.lower())
    return None if factor is None else float(size) * factor


def level_pixel_sizes(path: str | os.PathLike) -> list[float | None]:
    """x pixel size in micrometres of each pyramid level of ``path`` (None where the file does not record it)."""
    from .source import open_image

    sizes: list[float | None] = []
    for level in range(MAX_LEVELS):
        try:
            source = open_image(path, level)
        except MissingLevel:
            break
        sizes.append(None if source.pixel_size is None else to_micrometres(source.pixel_size[1], source.unit))
    return sizes


def input_level(path: str | os.PathLike, level: int | None = None, pixel_size: float | None = None,
                trained_pixel_size: float | None = None) -> int:
    """The level to segment: ``level`` if given; else the level whose x pixel size is nearest (in ratio) to
    ``pixel_size`` (micrometres; an error when the file records none) or, failing that, to the pixel size the
    model was trained at (micrometres; level 0 when the file records none); else 0."""
    if level is not None:
        return level
    wanted = pixel_size or trained_pixel_size
    if not wanted:
        return 0
    if wanted <= 0:
        raise UnetsegError(f"--pixel-size {wanted}: must be positive")
    sizes = level_pixel_sizes(path)
    known = [(abs(math.log(s / wanted)), n) for n, s in enumerate(sizes) if s is not None]
    if not known:
        if pixel_size:
            raise UnetsegError(f"{Path(path)}: records no pixel size, so --pixel-size cannot pick a level (use --level)")
        return 0
    return min(known)[1]
