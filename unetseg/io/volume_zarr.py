"""3D OME-Zarr images (NGFF 0.4/0.5 ``multiscales``) read lazily as (Z, Y, X[, C]) volumes, chunk by chunk: axes
from the metadata's ``axes``, spacing from level 0's ``coordinateTransformations`` ``scale`` (converted to
micrometres when the axes name a unit)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import zarr

from ..errors import UnetsegError
from .volume import ZYXCView, to_micrometres
from .zarr_io import _multiscales

LETTERS = {"c": "C", "t": "T", "z": "Z", "y": "Y", "x": "X"}


class ZarrVolume(ZYXCView):
    """Level 0 of an OME-Zarr image as a lazy (Z, Y, X[, C]) :class:`~unetseg.io.volume.Volume`; ``affine`` is
    ``diag(dx, dy, dz, 1)``."""



def _level0(path: Path) -> tuple[Any, str, list[float] | None, str | None]:
    """Level 0's array, its axes as tifffile letters, its scale (one per axis) and the spatial unit."""
    node = zarr.open(str(path), mode="r")
    if not isinstance(node, zarr.Group):
        raise UnetsegError(f"{path}: a plain zarr array has no axes; volumes are read from OME-Zarr images")
    ms = _multiscales(dict(node.attrs))
    if not ms:
        raise UnetsegError(f"{path}: zarr group without OME-Zarr multiscales metadata")
    axes = ms[0].get("axes")
    if not axes:
        raise UnetsegError(f"{path}: OME-Zarr multiscales without axes")
    names = [a["name"] if isinstance(a, dict) else str(a) for a in axes]
    letters = "".join(LETTERS.get(n.lower(), "Q") for n in names)
    dataset = ms[0]["datasets"][0]
    scale = None
    for t in [*ms[0].get("coordinateTransformations", []), *dataset.get("coordinateTransformations", [])]:
        if t.get("type") == "scale":  # the dataset's scale, times the multiscale-wide one if any
            values = [float(v) for v in t["scale"]]
            scale = values if scale is None else [a * b for a, b in zip(scale, values, strict=True)]
    units = [a.get("unit") for a in axes if isinstance(a, dict) and a.get("type") == "space"]
    return node[dataset["path"]], letters, scale, units[0] if units and len(set(units)) == 1 else None


def zarr_axes(path: str | os.PathLike) -> tuple[str, tuple[int, ...]]:
    """The axes (tifffile letters) and shape of an OME-Zarr image's level 0."""
    array, letters, _, _ = _level0(Path(path))
    return letters, tuple(int(n) for n in array.shape)


def open_zarr_volume(path: str | os.PathLike) -> ZarrVolume:
    """The OME-Zarr image at ``path`` (level 0) as a lazy :class:`ZarrVolume`; a store without multiscales, a time
    series, or one without z is a one-line UnetsegError naming it."""
    path = Path(path)
    try:
        array, letters, scale, unit = _level0(path)
    except UnetsegError:
        raise
    except Exception as err:  # noqa: BLE001  zarr raises many types for damaged stores
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnetsegError(f"{path}: cannot read OME-Zarr ({detail})") from None
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
    if scale is not None and all(a in letters for a in "ZYX") and len(scale) == len(letters):
        spacing, unit = to_micrometres(tuple(scale[letters.index(a)] for a in "ZYX"), unit)
    else:
        unit = None
    return ZarrVolume(array, letters, path, (spacing[0], spacing[1], spacing[2]), unit)
