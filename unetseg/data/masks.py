"""Masks: class-index or colour images read as HxW class ids, with class values and nodata mapped."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnetsegError
from ..io.images import file_nodata, read_labels
from .classes import ClassTable
from .labels import label_dtype
from .nodata import valid_mask

__all__ = ["MASK_MODES", "colors_to_index", "read_mask", "read_mask_counted"]

MASK_MODES = ("index", "color")


def colors_to_index(
    rgb: np.ndarray, classes: ClassTable, *, ignore_color: Sequence[int] | None = None,
    ignore_index: int | None = None, name: str = "mask",
) -> np.ndarray:
    """Map an HxWx3 RGB (or HxW gray, read as (v, v, v)) mask onto class ids via ``classes.colors``.

    Pixels of ``ignore_color`` become ``ignore_index``. Returns HxW uint8 (uint16 beyond 255).
    Raises UnetsegError naming ``name`` and the first colour not in the table.
    """
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    if not np.issubdtype(rgb.dtype, np.integer) or rgb.max(initial=0) > 255:
        raise UnetsegError(f"{name}: colour masks must be 8-bit RGB, got dtype {rgb.dtype} "
                           f"with values up to {rgb.max()}")
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(classes.colors)}
    if ignore_color is not None:
        if ignore_index is None:
            raise UnetsegError("ignore_color needs an ignore_index to map it to")
        r, g, b = (int(v) for v in ignore_color)
        table[(r << 16) | (g << 8) | b] = ignore_index
    keys = np.array(sorted(table), np.int32)
    values = np.array([table[k] for k in keys.tolist()], np.int64)
    pos = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
    unknown = keys[pos] != codes
    if unknown.any():
        y, x = np.argwhere(unknown)[0]
        code = int(codes[y, x])
        colour = (code >> 16, (code >> 8) & 255, code & 255)
        raise UnetsegError(f"{name}: colour {colour} (at row {y}, column {x}; {int(unknown.sum())} pixel(s) "
                           f"in all) is not in the class table {dict(zip(classes.names, classes.colors, strict=True))}")
    return values[pos].astype(label_dtype(int(values.max()) + 1))


def read_mask(path: str | os.PathLike, **options: Any) -> np.ndarray:
    """:func:`read_mask_counted` without the count."""
    return read_mask_counted(path, **options)[0]


def read_mask_counted(
    path: str | os.PathLike, *, mask_mode: str = "index", classes: ClassTable | None = None,
    ignore_index: int | None = None, ignore_color: Sequence[int] | None = None,
    class_values: Sequence[float] | None = None, nodata: float | None = None, nodata_label: int | None = None,
) -> tuple[np.ndarray, int]:
    """Read a mask as HxW class ids: uint8 (uint16 when ids exceed 255).

    ``mask_mode="index"``: the pixel values are the ids (a gray mask saved as RGB with equal channels is
    accepted; floats holding integral values too), or, with ``class_values``, value ``class_values[i]`` is
    class ``i`` (any other value that is not ``ignore_index`` is an error naming it, its pixel count and the
    file). Pixels equal to ``nodata`` (default: the file's GDAL_NODATA tag) and NaN become ``nodata_label``
    (default ``ignore_index``). ``"color"``: RGB colours are mapped through ``classes`` (required) by
    :func:`colors_to_index`; an alpha channel is dropped. Range checks against the class count are left to
    the caller. Returns the labels and the number of nodata pixels.
    """
    path = Path(path)
    if mask_mode not in MASK_MODES:
        raise UnetsegError(f"mask_mode={mask_mode!r} is not one of {MASK_MODES}")
    array = read_labels(path)
    if mask_mode == "color":
        if classes is None:
            raise UnetsegError("mask_mode='color' needs a class table (names and colours)")
        if array.ndim == 3:
            if array.shape[2] not in (3, 4):
                raise UnetsegError(f"{path}: a colour mask needs 3 (RGB) or 4 (RGBA) channels, got {array.shape[2]}")
            array = array[..., :3]
        return colors_to_index(array, classes, ignore_color=ignore_color, ignore_index=ignore_index,
                               name=str(path)), 0
    if array.ndim == 3:
        if not all(np.array_equal(array[..., 0], array[..., c]) for c in range(1, min(array.shape[2], 3))):
            raise UnetsegError(f"{path}: index mask has {array.shape[2]} channels with different values; "
                               "use mask_mode='color' with a class table for colour masks")
        array = array[..., 0]
    nodata = file_nodata(path) if nodata is None else nodata
    missing = ~valid_mask(array, nodata)
    label = ignore_index if nodata_label is None else nodata_label
    if missing.any() and label is None:
        raise UnetsegError(f"{path}: {int(missing.sum())} mask pixel(s) are nodata/NaN; set data.ignore_index "
                           "to the label they should get")
    labels = _values_to_ids(array, missing, path, class_values, ignore_index)
    if missing.any():
        labels = labels.astype(label_dtype(max(int(labels.max(initial=0)), label) + 1), copy=False)
        labels[missing] = label
    return labels, int(missing.sum())


def _values_to_ids(array: np.ndarray, missing: np.ndarray, path: Path, class_values: Sequence[float] | None,
                   ignore_index: int | None) -> np.ndarray:
    """Mask values -> class ids (pixels in ``missing`` are left 0 for the caller to label)."""
    known = array[~missing] if missing.any() else array
    if class_values is None:
        if not np.issubdtype(array.dtype, np.integer) and not np.array_equal(known, np.round(known)):
            bad = known[known != np.round(known)]
            raise UnetsegError(f"{path}: index mask holds non-integral value {float(bad[0])!r} "
                               f"({int(bad.size)} pixel(s)); masks hold class ids")
        if known.size and known.min() < 0:
            raise UnetsegError(f"{path}: index mask holds negative value {known.min().item()!r} "
                               f"({int((known == known.min()).sum())} pixel(s)); use data.class_values to map "
                               "values to classes")
        top = int(known.max(initial=0))
        return np.where(missing, 0, array).astype(label_dtype(top + 1), copy=False)
    values = np.asarray(class_values, np.float64)
    order = np.argsort(values)
    keys = values[order]
    flat = np.where(missing, keys[0], array).astype(np.float64)
    pos = np.clip(np.searchsorted(keys, flat), 0, len(keys) - 1)
    listed = keys[pos] == flat
    unknown = ~listed & ~missing
    if ignore_index is not None:
        unknown &= flat != ignore_index
    if unknown.any():
        value = flat[unknown][0]
        count = int((flat == value).sum())
        shown = int(value) if value == round(value) else value
        raise UnetsegError(f"{path}: mask value {shown!r} ({count} pixel(s)) is not in class_values "
                           f"{[int(v) if v == round(v) else v for v in class_values]}, nor the ignore/nodata value")
    ids = np.where(listed, order[pos], ignore_index if ignore_index is not None else 0)
    return ids.astype(label_dtype(max(len(values), (ignore_index or 0) + 1)), copy=False)
