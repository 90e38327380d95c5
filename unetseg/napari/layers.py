"""Between napari layers and unetseg: what a layer's data means to a model, and how a class map is shown.

Two codings of a Labels layer meet here. A map unetseg made (Segment widget, reader) holds **class ids**
(0..K-1, every pixel labelled, the nodata label for invalid pixels) and says so in ``layer.metadata["unetseg"]``.
A layer the user painted from scratch is **painted**: 0 = not labelled (napari's eraser), ``v >= 1`` = class
``v - 1``. Either becomes a training mask of class ids with :data:`UNLABELLED` where nothing is known.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.classes import ClassTable
from ..errors import UnetsegError

META_KEY = "unetseg"  # layer.metadata[META_KEY]: {"coding": "classes", "classes": [...], "colors": [...]}
UNLABELLED = 255  # mask value of pixels with no label; the mask file's GDAL_NODATA, so training ignores them
MAX_PAINTED_CLASSES = 254  # painted values 1..254 -> classes 0..253 fit a uint8 mask beside UNLABELLED


def class_colormap(table: ClassTable, nodata_label: int | None = None) -> Any:
    """A napari ``DirectLabelColormap`` drawing class ``i`` in ``table.colors[i]``; transparent: the table's
    transparent classes, black classes (a black background would only darken the image) and the nodata label."""
    from napari.utils.colormaps import DirectLabelColormap

    colors: dict[int | None, Any] = {None: np.zeros(4, np.float32)}
    for i, rgb in enumerate(table.colors):
        clear = i in table.transparent or tuple(rgb) == (0, 0, 0)
        colors[i] = np.zeros(4, np.float32) if clear else np.array([*(np.asarray(rgb) / 255.0), 1.0], np.float32)
    if nodata_label is not None:
        colors[int(nodata_label)] = np.zeros(4, np.float32)
    return DirectLabelColormap(color_dict=colors)


def class_layer_kwargs(table: ClassTable, name: str, nodata_label: int | None = None, **extra: Any) -> dict[str, Any]:
    """``add_labels`` keyword arguments for a class-id map: its colours, the class names as features (napari's
    status bar shows the class under the cursor) and the metadata that marks the layer as class-coded."""
    ids = list(range(table.num_classes))
    return {"name": name, "colormap": class_colormap(table, nodata_label),
            "features": {"index": ids, "class": list(table.names)},
            "metadata": {META_KEY: {"coding": "classes", "classes": list(table.names),
                                    "colors": [list(map(int, c)) for c in table.colors],
                                    "nodata_label": nodata_label}},
            **extra}


def class_table_of(metadata: dict[str, Any]) -> ClassTable | None:
    """The class table a class-coded layer's metadata records, else None."""
    info = (metadata or {}).get(META_KEY)
    if not info or info.get("coding") != "classes" or not info.get("classes"):
        return None
    names = info["classes"]
    colors = info.get("colors") or ClassTable.default(len(names)).colors
    return ClassTable(tuple(names), tuple(tuple(c) for c in colors))


def training_mask(labels: Any, metadata: dict[str, Any] | None = None, name: str = "labels"
                  ) -> tuple[np.ndarray, list[str] | None]:
    """A Labels layer's data as a training mask: (HxW, or DxHxW for a volume, uint8 class ids, :data:`UNLABELLED`
    where nothing is known; the class names a class-coded layer records, else None).

    A class-coded layer (:func:`class_layer_kwargs`; a corrected segmentation) keeps its ids, its nodata label
    becoming unlabelled; a painted layer maps ``v -> v - 1`` and 0 -> unlabelled. Raises UnetsegError (naming
    ``name``) for a layer with no labelled pixel, more classes than a uint8 mask holds, or negative values."""
    data = np.asarray(labels)
    if data.ndim not in (2, 3):
        raise UnetsegError(f"labels layer {name!r}: {data.ndim}-D data {data.shape}; train takes a 2-D labels layer "
                           "(one plane of the image) or a 3-D one (a volume)")
    if data.size and data.min() < 0:
        raise UnetsegError(f"labels layer {name!r}: negative label {int(data.min())}; labels are class ids")
    table = class_table_of(metadata or {})
    if table is not None:
        nodata = (metadata or {})[META_KEY].get("nodata_label")
        known = (data < table.num_classes) & (data != (-1 if nodata is None else nodata))
        mask = np.where(known, data, UNLABELLED).astype(np.uint8)
        names: list[str] | None = list(table.names)
    else:
        top = int(data.max()) if data.size else 0
        if top > MAX_PAINTED_CLASSES:
            raise UnetsegError(f"labels layer {name!r}: label {top}; painted labels 1..{MAX_PAINTED_CLASSES} are "
                               "classes (0 = not labelled)")
        mask = np.where(data > 0, data.astype(np.int64) - 1, UNLABELLED).astype(np.uint8)
        names = None
    if not (mask != UNLABELLED).any():
        raise UnetsegError(f"labels layer {name!r} has no labelled pixel: paint some pixels of each class first")
    return mask, names


class ChannelsLast:
    """A Cx... array (CxHxW, CxDxHxW; numpy, dask, zarr) read as ...xC: the layout the tiler reads, without loading
    it."""

    def __init__(self, data: Any) -> None:
        self.data = data
        c, *spatial = (int(s) for s in data.shape)
        self.shape, self.dtype, self.ndim = (*spatial, c), np.dtype(data.dtype), len(spatial) + 1

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        return np.moveaxis(np.asarray(self.data[(slice(None), *key)]), 0, -1)


def model_input(data: Any, rgb: bool, in_channels: int, leading: Sequence[int] = (), name: str = "image",
                dims: int = 2) -> Any:
    """The image (HxW[xC]) or, for a 3D model (``dims=3``), the volume (DxHxW[xC]) a model with ``in_channels``
    bands segments from a layer's data, still lazy.

    ``rgb`` layers are ...x3/4 (the alpha band dropped for 3-band models); a non-RGB layer whose axis before the
    last ``dims`` has ``in_channels`` planes is bands first (CxHxW, CxDxHxW); any other extra leading axes (a
    stack, a time series) are indexed by ``leading`` (the viewer's current position on them), so the plane (the
    volume) on screen is segmented. Raises UnetsegError naming ``name`` when the bands cannot match the model's or
    the layer has fewer axes than the model segments."""
    shape = tuple(int(s) for s in data.shape)
    if len(shape) - int(rgb) < dims:
        what = "a volume (DxHxW)" if dims == 3 else "an image (HxW)"
        raise UnetsegError(f"image {name!r} ({'x'.join(map(str, shape))}) has {len(shape) - int(rgb)} spatial "
                           f"axes; the model is {dims}-D and segments {what}")
    if rgb:
        plane = _index_leading(data, shape[: -dims - 1], leading)
        bands = shape[-1]
        if bands == in_channels:
            return plane
        if bands == 4 and in_channels == 3:
            return _RGBOnly(plane)
        if in_channels == 1:
            raise UnetsegError(f"image {name!r} is RGB; the model takes 1 band: convert the layer to grayscale")
        raise UnetsegError(f"image {name!r} has {bands} bands (RGB); the model takes {in_channels}")
    if in_channels > 1 and len(shape) > dims and shape[-dims - 1] == in_channels:
        return ChannelsLast(_index_leading(data, shape[: -dims - 1], leading))
    if in_channels == 1:
        return _index_leading(data, shape[:-dims], leading)
    first = "CxDxHxW" if dims == 3 else "CxHxW"
    raise UnetsegError(f"image {name!r} ({'x'.join(map(str, shape))}) has no axis of {in_channels} bands the model "
                       f"takes: open it with its bands as the first axis ({first}) or as RGB")


def _index_leading(data: Any, leading_shape: tuple[int, ...], leading: Sequence[int]) -> Any:
    if not leading_shape:
        return data
    at = [int(i) for i in leading][: len(leading_shape)]
    at += [0] * (len(leading_shape) - len(at))
    return _Plane(data, tuple(min(max(i, 0), n - 1) for i, n in zip(at, leading_shape, strict=True)))


class _Plane:
    """One plane (fixed leading indices) of an N-D array, sliced lazily."""

    def __init__(self, data: Any, at: tuple[int, ...]) -> None:
        self.data, self.at = data, at
        self.shape = tuple(int(s) for s in data.shape[len(at):])
        self.dtype, self.ndim = np.dtype(data.dtype), len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        return np.asarray(self.data[(*self.at, *key)])


class _RGBOnly:
    """An RGBA image read as RGB."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.shape = (*tuple(int(s) for s in data.shape[:-1]), 3)
        self.dtype, self.ndim = np.dtype(data.dtype), len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.data[key])[..., :3]


def level_placement(base_shape: Sequence[int], level_shape: Sequence[int], scale: Sequence[float],
                    translate: Sequence[float], dims: int = 2) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(scale, translate) of the last ``dims`` axes for a map computed at a coarser pyramid level, so that it lies
    over the full-resolution layer: a level pixel covers ``f`` base pixels, its centre ``(f - 1) / 2`` in."""
    f = [b / max(s, 1) for b, s in zip(base_shape[-dims:], level_shape[-dims:], strict=True)]
    sc = tuple(float(s) * k for s, k in zip(scale[-dims:], f, strict=True))
    tr = tuple(float(t) + (k - 1) / 2 * float(s) for t, k, s in zip(translate[-dims:], f, scale[-dims:], strict=True))
    return sc, tr
