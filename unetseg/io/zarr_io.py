"""Zarr arrays: created for chunk-by-chunk writers (Dask tasks); zarr and OME-Zarr (NGFF 0.4/0.5) images
opened lazily, one pyramid level, seen as HxW[xC] like every other reader."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import OutputError, UnetsegError
from .levels import MissingLevel
from .tiff import YXCView

ZARR_MARKERS = (".zgroup", ".zarray", "zarr.json")
MAX_BANDS = 16  # a plain 3-D zarr array is YXC when its last axis is at most this long, else CYX


def is_zarr(path: str | os.PathLike) -> bool:
    """A zarr store folder (v2 or v3), e.g. ``image.ome.zarr``."""
    path = Path(path)
    return path.is_dir() and any((path / m).is_file() for m in ZARR_MARKERS)


def create_array(path: str | os.PathLike, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...]) -> zarr.Array:
    """A new zarr array at ``path`` (replacing one there), filled with 0 until written, chunks ``chunks`` (HxW)."""
    chunks = tuple(chunks) + tuple(shape[len(chunks):])
    try:
        return zarr.open_array(os.fspath(path), mode="w", shape=shape, chunks=chunks, dtype=np.dtype(dtype),
                               fill_value=0)
    except OSError as err:
        raise OutputError(path, err.strerror or str(err)) from err


def _multiscales(attrs: dict[str, Any]) -> list | None:
    return attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")  # NGFF 0.4 | 0.5


def _ome_level(group: zarr.Group, path: Path, level: int) -> tuple[Any, str, tuple[float, float] | None, str | None]:
    """The array of multiscale ``level``, its axes as tifffile letters, its (y, x) pixel size and unit."""
    ms = _multiscales(dict(group.attrs))
    if not ms:
        raise UnetsegError(f"{path}: zarr group without OME-Zarr multiscales metadata")
    datasets = ms[0]["datasets"]
    if not 0 <= level < len(datasets):
        raise MissingLevel(f"{path}: has {len(datasets)} pyramid level(s), level {level} does not exist")
    axes = [a["name"] if isinstance(a, dict) else a for a in ms[0].get("axes", ["y", "x"])]
    letters = "".join({"c": "C", "t": "T", "z": "Z", "y": "Y", "x": "X"}.get(a.lower(), "Q") for a in axes)
    scale = None
    for t in datasets[level].get("coordinateTransformations", []):
        if t.get("type") == "scale" and "Y" in letters and "X" in letters:
            scale = float(t["scale"][letters.index("Y")]), float(t["scale"][letters.index("X")])
    units = {a["name"]: a.get("unit") for a in ms[0].get("axes", []) if isinstance(a, dict)}
    return group[datasets[level]["path"]], letters, scale, units.get("x")


def open_zarr(path: str | os.PathLike, level: int = 0) -> tuple[YXCView, tuple[float, float] | None, str | None]:
    """Open a zarr array or OME-Zarr image lazily: (HxW[xC] view, (y, x) pixel size or None, its unit or None).

    OME-Zarr: the multiscale ``level`` with its axes (singleton t/z/c dropped; one non-spatial axis left is the
    channel axis). A plain array: YX, or YXC / CYX by which end holds the (<= 16) bands.
    """
    path = Path(path)
    try:
        node = zarr.open(str(path), mode="r")
        if isinstance(node, zarr.Group):
            array, letters, scale, unit = _ome_level(node, path, level)
        else:
            if level:
                raise MissingLevel(f"{path}: a plain zarr array has one level only (level {level} asked)")
            array, scale, unit = node, None, None
            letters = {2: "YX", 3: "YXS" if node.shape[-1] <= MAX_BANDS else "SYX"}.get(node.ndim, "Q" * node.ndim)
    except UnetsegError:
        raise
    except Exception as err:  # noqa: BLE001  zarr raises many types for damaged stores
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnetsegError(f"{path}: cannot read zarr ({detail})") from None
    return YXCView(array, letters, path), scale, unit
