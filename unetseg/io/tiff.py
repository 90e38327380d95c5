"""TIFF/BigTIFF inputs, opened lazily: only the windows asked for are read and decoded.

Uncompressed contiguous files are memory-mapped (``tifffile.memmap``); others (compressed, tiled,
strips, pyramids) are read through tifffile's zarr store. Whatever the layout — bands as samples
(YXS), as pages or planes (CYX, QYX, ...), singleton axes anywhere — the image is seen as HxW or
HxWxC, the form every reader in :mod:`unetseg.io` returns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from ..errors import UnetsegError
from .levels import MissingLevel

# GeoTIFF: ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory, GeoDoubleParams,
# GeoAsciiParams (GDAL_NODATA, 42113, is written per output dtype, not copied)
GEOTIFF_TAGS = (33550, 33922, 34264, 34735, 34736, 34737)
GDAL_NODATA = 42113
EXTRA_SAMPLES = 338


class YXCView:
    """A lazy N-D array seen as HxW[xC]: ``view[r0:r1, c0:c1]`` reads only that window of the source.

    ``axes`` names the source's axes (tifffile letters); singleton axes other than Y and X are dropped and
    at most one other axis remains, which becomes the channel axis (last).
    """

    def __init__(self, array: Any, axes: str, path: Path) -> None:
        shape = tuple(int(n) for n in array.shape)
        if "Y" not in axes or "X" not in axes:
            raise UnetsegError(f"{path}: TIFF with axes {axes!r} and shape {shape} has no Y and X axes")
        others = [i for i, a in enumerate(axes) if a not in "YX" and shape[i] > 1]
        if len(others) > 1:
            raise UnetsegError(f"{path}: TIFF with axes {axes!r} and shape {shape} is not a single 2-D image "
                               "(it has more than one non-spatial axis)")
        self._array = array
        self._y, self._x = axes.index("Y"), axes.index("X")
        self._c = others[0] if others else None
        self._singletons = [i for i in range(len(axes)) if i not in (self._y, self._x, self._c)]
        self.dtype = np.dtype(array.dtype)
        self.shape = (shape[self._y], shape[self._x]) + (() if self._c is None else (shape[self._c],))
        self.ndim = len(self.shape)
        self.nodata: float | None = None  # the file's GDAL_NODATA value, set by open_tiff

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        rows, cols = key
        index: list[Any] = [0] * len(self._array.shape)
        index[self._y], index[self._x] = rows, cols
        if self._c is not None:
            index[self._c] = slice(None)
        block = np.asarray(self._array[tuple(index)])
        kept = sorted(i for i in (self._y, self._x, self._c) if i is not None)  # the axes left, in source order
        order = [kept.index(self._y), kept.index(self._x)] + ([] if self._c is None else [kept.index(self._c)])
        return np.ascontiguousarray(block.transpose(order)) if order != sorted(order) else block

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[:, :]
        return whole if dtype is None else whole.astype(dtype)


@dataclass(frozen=True)
class TiffInfo:
    """What a TIFF input carries besides pixels: GeoTIFF tags to copy and the GDAL nodata value."""

    geotags: list[tuple]
    nodata: float | None
    pixel_size: tuple[float, float] | None = None  # (y, x) at the level read
    unit: str | None = None
    alpha: bool = False  # the last sample is alpha (ExtraSamples 1, associated, or 2, unassociated)


def _read_info(page: tifffile.TiffPage) -> TiffInfo:
    tags = []
    for code in GEOTIFF_TAGS:
        tag = page.tags.get(code)
        if tag is not None:
            tags.append((code, int(tag.dtype), tag.count, tag.value, True))
    nodata = None
    tag = page.tags.get(GDAL_NODATA)
    if tag is not None:
        text = str(tag.value).strip().strip("\x00")
        try:
            nodata = float(text)
        except ValueError:
            nodata = None
    extra = page.tags.get(EXTRA_SAMPLES)
    values = () if extra is None else np.atleast_1d(extra.value).tolist()
    return TiffInfo(tags, nodata, alpha=bool(values) and values[-1] in (1, 2))


def tiff_nodata(path: str | Path) -> float | None:
    """The GDAL_NODATA tag value of a TIFF's first page (None without the tag or for unreadable files)."""
    try:
        with tifffile.TiffFile(path) as tif:
            return _read_info(tif.pages.first).nodata
    except Exception:  # noqa: BLE001  a damaged file is reported by the reader that reads its pixels
        return None


def _resolution_um(page: tifffile.TiffPage) -> tuple[float, float] | None:
    """(y, x) pixel size in micrometres from a page's resolution tags (unit inch or cm), if it has them."""
    per_unit = {2: 25400.0, 3: 10000.0}.get(int(page.tags.valueof("ResolutionUnit", 1)))  # um per inch / cm
    xres, yres = page.tags.valueof("XResolution"), page.tags.valueof("YResolution")
    if per_unit and xres and yres and xres[0] and yres[0]:
        return per_unit * yres[1] / yres[0], per_unit * xres[1] / xres[0]
    return None


# GeoTIFF keys (GeoKeyDirectoryTag entries): the model type, and the linear units of projected CRSs
_GT_MODEL_TYPE, _PROJ_LINEAR_UNITS = 1024, 3076
_GEOGRAPHIC = 2
_LINEAR_UNITS = {9001: "meter", 9002: "foot", 9003: "us-survey-foot"}


def _geo_keys(page: tifffile.TiffPage) -> dict[int, Any]:
    """The GeoKeyDirectory's directly-held values (key id -> value)."""
    directory = page.tags.valueof(34735)
    if not directory or len(directory) < 4:
        return {}
    count = int(directory[3])
    entries = directory[4 : 4 + 4 * count]
    return {int(entries[i]): entries[i + 3] for i in range(0, len(entries) - 3, 4) if int(entries[i + 1]) == 0}


def _geotiff_size(page: tifffile.TiffPage) -> tuple[tuple[float, float], str | None] | None:
    """(y, x) pixel size and unit from a GeoTIFF's ModelPixelScale (CRS units: "meter" for most projected
    CRSs, "degree" for geographic ones), if the page has one."""
    scale = page.tags.valueof(33550)
    if not scale or len(scale) < 2 or not (scale[0] > 0 and scale[1] > 0):
        return None
    keys = _geo_keys(page)
    if keys.get(_GT_MODEL_TYPE) == _GEOGRAPHIC:
        unit = "degree"
    else:
        unit = _LINEAR_UNITS.get(int(keys.get(_PROJ_LINEAR_UNITS, 9001)))
    return (float(scale[1]), float(scale[0])), unit


def _ome_size(tif: tifffile.TiffFile) -> tuple[tuple[float, float], str | None] | None:
    try:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        pixels = (pixels[0] if isinstance(pixels, list) else pixels)["Pixels"]
        size = float(pixels["PhysicalSizeY"]), float(pixels["PhysicalSizeX"])
    except (KeyError, TypeError, ValueError):  # no or malformed OME pixel size: none rather than no image
        return None
    return size, {"µm": "micrometer", "nm": "nanometer", "mm": "millimeter"}.get(pixels.get("PhysicalSizeXUnit", "µm"))


def _pixel_size(tif: tifffile.TiffFile, series: Any, level: int) -> dict[str, Any]:
    """Pixel size (y, x) and unit at ``level``: a GeoTIFF's ModelPixelScale, else the level's own resolution
    tags, else level 0's (or OME-XML's PhysicalSize) scaled by the level's power-of-2 reduction; {} when the file
    does not say."""
    first = series.levels[0].pages[0]
    geo = _geotiff_size(first)
    own = _resolution_um(series.levels[level].pages[0]) if geo is None else None
    if own is not None:
        return {"pixel_size": own, "unit": "micrometer"}
    base = _resolution_um(first)
    found = geo or ((base, "micrometer") if base is not None else _ome_size(tif) if tif.is_ome else None)
    if found is None:
        return {}
    x = series.axes.index("X")
    factor = 2 ** round(math.log2(series.levels[0].shape[x] / series.levels[level].shape[x]))
    return {"pixel_size": (found[0][0] * factor, found[0][1] * factor), "unit": found[1]}


def shaped_yxc(kind: str, axes: str, shape: tuple[int, ...]) -> bool:
    """Whether a TIFF series is a numpy HxWxC array written by ``tifffile.imwrite`` without axes: tifffile stores
    an array whose last axis is not 3 or 4 samples as H pages of W x C images (a "shaped" series, axes QYX). The
    band axis is then the shorter of the first and the last: (5, 512, 384) is five 512 x 384 bands, (512, 384, 5)
    one 512 x 384 image of five bands."""
    return kind == "shaped" and axes == "QYX" and len(shape) == 3 and shape[2] < shape[0]


def open_tiff(path: str | Path, level: int = 0) -> tuple[YXCView, TiffInfo]:
    """Open a TIFF lazily as an HxW[xC] view of pyramid ``level`` (0: full size; sub-resolutions of pyramidal
    and whole-slide TIFFs as tifffile sees them); a file that cannot be a 2-D image, or has no such level, is a
    one-line UnetsegError."""
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if not 0 <= level < len(series.levels):
                raise MissingLevel(f"{path}: has {len(series.levels)} pyramid level(s), level {level} does not exist")
            axes, page, kind = series.axes, tif.pages.first, series.kind
            info = _read_info(page)
            info = replace(info, **_pixel_size(tif, series, level))
            memmappable = page.is_memmappable and len(tif.series) == 1 and len(series.levels) == 1
        if memmappable:
            array = tifffile.memmap(path, mode="r")
        else:
            group_or_array = zarr.open(tifffile.imread(path, aszarr=True, series=0, level=level), mode="r")
            array = group_or_array["0"] if isinstance(group_or_array, zarr.Group) else group_or_array
        if len(array.shape) != len(axes):  # memmap of a squeezed page: trust the array's own shape
            axes = "YXS"[: len(array.shape)] if len(array.shape) in (2, 3) else axes
        if shaped_yxc(kind, axes, tuple(array.shape)):
            axes = "YXS"
    except UnetsegError:
        raise
    except Exception as err:  # noqa: BLE001  tifffile/zarr/codecs raise many types for damaged files
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnetsegError(f"{path}: cannot read TIFF ({detail})") from None
    view = YXCView(array, axes, path)
    view.nodata = info.nodata
    return view, info
