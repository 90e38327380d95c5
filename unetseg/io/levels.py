"""Choosing the pyramid level of an input: by number, or the level whose pixel size is nearest a wanted one."""
from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import UnetsegError

MAX_LEVELS = 32


class MissingLevel(UnetsegError):
    """The input has no pyramid level of that number."""


def level_pixel_sizes(path: str | os.PathLike) -> list[tuple[float, float] | None]:
    """(y, x) pixel size of each pyramid level of ``path`` (None where the file does not record it)."""
    from .source import open_image

    sizes: list[tuple[float, float] | None] = []
    for level in range(MAX_LEVELS):
        try:
            sizes.append(open_image(path, level).pixel_size)
        except MissingLevel:
            break
    return sizes


def input_level(path: str | os.PathLike, level: int | None = None, pixel_size: float | None = None,
                trained_pixel_size: float | None = None) -> int:
    """The level to segment: ``level`` if given; else the level whose x pixel size is nearest (in ratio) to
    ``pixel_size`` (an error when the file records none) or, failing that, to the pixel size the model was
    trained at (level 0 when the file records none); else 0."""
    if level is not None:
        return level
    wanted = pixel_size or trained_pixel_size
    if not wanted:
        return 0
    if wanted <= 0:
        raise UnetsegError(f"--pixel-size {wanted}: must be positive")
    sizes = level_pixel_sizes(path)
    known = [(abs(math.log(s[1] / wanted)), n) for n, s in enumerate(sizes) if s is not None]
    if not known:
        if pixel_size:
            raise UnetsegError(f"{Path(path)}: records no pixel size, so --pixel-size cannot pick a level (use --level)")
        return 0
    return min(known)[1]
