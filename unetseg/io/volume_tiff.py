"""TIFF z-stacks in and out: OME-TIFF and ImageJ hyperstacks (and plain multi-page stacks) read lazily as
(Z, Y, X[, C]) volumes with their voxel size; labels written as an OME-TIFF z-stack (axes ZYX) with the input's
``PhysicalSizeZ/Y/X``, slab by slab into a memory-mapped file, atomically and checked.

Spacing: OME-XML ``PhysicalSizeZ/Y/X`` (+ their units, default µm), else ImageJ's ``spacing`` (z) and the
X/YResolution tags (pixels per ``unit``), converted to micrometres; a file that says nothing has spacing 1.0 and
unit None.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from ..errors import OutputError, UnetsegError
from .atomic import atomic_path
from .volume import ZYXCView, to_micrometres, unit_name

OME_UNITS = {"micrometer": "µm", "millimeter": "mm", "nanometer": "nm", "centimeter": "cm", "meter": "m"}


class TiffVolume(ZYXCView):
    """A TIFF z-stack as a lazy (Z, Y, X[, C]) :class:`~unetseg.io.volume.Volume` (memory-mapped when the file is
    uncompressed and contiguous, else read through tifffile's zarr store, chunk by chunk).

    Attributes: as :class:`~unetseg.io.volume.Volume`; ``spacing`` in micrometres when the file gives a unit;
    ``affine`` is ``diag(dx, dy, dz, 1)`` (TIFF has no orientation); ``axes`` the series' axes.
    """



def _ome_spacing(tif: tifffile.TiffFile) -> tuple[tuple[float, float, float], str | None] | None:
    try:
        image = tifffile.xml2dict(tif.ome_metadata or "")["OME"]["Image"]
        pixels = (image[0] if isinstance(image, list) else image)["Pixels"]
    except (KeyError, TypeError, ValueError):
        return None
    sizes: list[float | None] = []
    units: list[str | None] = []
    for axis in "ZYX":
        if f"PhysicalSize{axis}" not in pixels:
            sizes.append(None)
            continue
        sizes.append(float(pixels[f"PhysicalSize{axis}"]))
        units.append(unit_name(pixels.get(f"PhysicalSize{axis}Unit", "µm")))
    if all(s is None for s in sizes):
        return None
    if None in units or len(set(units)) > 1:  # unknown or mixed units: convert each that we can
        return None
    converted, unit = to_micrometres(tuple(1.0 if s is None else s for s in sizes), units[0])
    return (converted[0], converted[1], converted[2]), unit


def _imagej_spacing(tif: tifffile.TiffFile) -> tuple[tuple[float, float, float], str | None] | None:
    meta = tif.imagej_metadata or {}
    page = tif.pages.first
    xres, yres = page.tags.valueof("XResolution"), page.tags.valueof("YResolution")
    inplane = (yres[1] / yres[0], xres[1] / xres[0]) if xres and yres and xres[0] and yres[0] else None
    if "spacing" not in meta and inplane is None:
        return None
    dz = float(meta.get("spacing", 1.0))
    dy, dx = inplane or (1.0, 1.0)
    converted, unit = to_micrometres((dz, dy, dx), meta.get("unit"))
    return (converted[0], converted[1], converted[2]), unit


def open_tiff_volume(path: str | os.PathLike) -> TiffVolume:
    """The TIFF z-stack at ``path`` as a lazy :class:`TiffVolume`: axes from its first series (``ZYX``, ``ZCYX``,
    ``ZYXC``, ``CZYX``; T=1 dropped), spacing from OME-XML or ImageJ metadata. A T>1 series, one without Z (a 2-D
    image), or an unreadable file is a one-line UnetsegError naming it."""
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            found = _ome_spacing(tif) if tif.is_ome else _imagej_spacing(tif) if tif.is_imagej else None
            memmappable = (tif.pages.first.is_memmappable and len(tif.series) == 1 and len(series.levels) == 1
                           and series.dataoffset is not None)
        if memmappable:
            array: Any = tifffile.memmap(path, mode="r", series=0)
        else:
            node = zarr.open(tifffile.imread(path, aszarr=True, series=0, level=0), mode="r")
            array = node["0"] if isinstance(node, zarr.Group) else node
        if len(array.shape) != len(axes):
            raise UnetsegError(f"{path}: TIFF series axes {axes!r} do not match its shape {tuple(array.shape)}")
    except UnetsegError:
        raise
    except Exception as err:  # noqa: BLE001  tifffile/zarr/codecs raise many types for damaged files
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnetsegError(f"{path}: cannot read TIFF ({detail})") from None
    spacing, unit = found if found is not None else ((1.0, 1.0, 1.0), None)
    return TiffVolume(array, axes, path, spacing, unit)


class OmeTiffSlabWriter:
    """Labels as an OME-TIFF z-stack (axes ZYX, uint8/uint16, uncompressed), written slab by slab along Z
    (``writer[z0:z1] = slab``, any order) into a memory-mapped temporary file that :meth:`close` checks (series
    axes, shape, dtype, PhysicalSize*, every slice written) and renames onto ``path``; nothing is left at ``path``
    when writing fails or stops early (:meth:`abort`).

    Args:
        path: the output, e.g. ``out/x_labels.ome.tif``.
        shape: (Z, Y, X). dtype: uint8 or uint16.
        spacing: (dz, dy, dx) in ``unit`` (written as PhysicalSizeZ/Y/X); unit None writes no physical size.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype: Any,
                 spacing: tuple[float, ...], unit: str | None) -> None:
        self.path, self.shape, self.dtype = Path(path), tuple(int(n) for n in shape[:3]), np.dtype(dtype)
        if self.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"OME-TIFF labels are uint8 or uint16, not {self.dtype}")
        self.spacing, self.unit = tuple(float(s) for s in spacing), unit_name(unit)
        self._written = np.zeros(self.shape[0], bool)
        self._context = atomic_path(self.path, verify=self._verify)
        self._tmp = self._context.__enter__()
        try:
            self._map: Any = tifffile.memmap(self._tmp, shape=self.shape, dtype=self.dtype, ome=True,
                                             photometric="minisblack", metadata=self.metadata())
        except BaseException as err:
            self._context.__exit__(type(err), err, err.__traceback__)
            raise

    def metadata(self) -> dict[str, Any]:
        """The OME metadata written: axes ZYX and, with a known unit, PhysicalSizeZ/Y/X and their units."""
        meta: dict[str, Any] = {"axes": "ZYX"}
        if self.unit is not None:
            for axis, size in zip("ZYX", self.spacing, strict=True):
                meta[f"PhysicalSize{axis}"] = size
                meta[f"PhysicalSize{axis}Unit"] = OME_UNITS.get(self.unit, "µm")
        return meta

    def __setitem__(self, key: slice, slab: np.ndarray) -> None:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise ValueError(f"slabs are written as writer[z0:z1] = slab, got {key}")
        self._map[key] = slab
        self._written[key] = True

    def close(self) -> Path:
        """Flush, check and rename the file; returns ``path``."""
        if not self._written.all():
            self.abort()
            raise OutputError(self.path, f"only {int(self._written.sum())} of {self.shape[0]} slices were written")
        try:
            self._map.flush()
            del self._map
        except BaseException as err:
            self._context.__exit__(type(err), err, err.__traceback__)
            raise
        self._context.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (an interrupted prediction)."""
        self.__dict__.pop("_map", None)
        error = OutputError(self.path, "writing stopped before the volume was complete")
        try:
            self._context.__exit__(OutputError, error, None)
        except OutputError:
            pass

    def _verify(self, tmp: Path) -> None:
        with tifffile.TiffFile(tmp) as tif:
            series = tif.series[0]
            if (series.axes, tuple(series.shape), series.dtype) != ("ZYX", self.shape, self.dtype):
                raise OutputError(self.path, f"reads back as {series.axes} {series.shape} {series.dtype}, expected "
                                             f"ZYX {self.shape} {self.dtype}")
            found = _ome_spacing(tif)
        if self.unit is not None and (found is None or not np.allclose(
                found[0], to_micrometres(self.spacing, self.unit)[0], rtol=1e-6)):
            raise OutputError(self.path, f"reads back with spacing {found}, expected {self.spacing} {self.unit}")


def write_tiff_labels(path: str | os.PathLike, labels: np.ndarray, like: Any) -> Path:
    """Write a whole (Z, Y, X) label volume as an OME-TIFF with ``like``'s spacing and unit; returns ``path``."""
    labels = np.asarray(labels)
    if labels.shape != tuple(like.shape[:3]):
        raise UnetsegError(f"{path}: labels of shape {labels.shape} do not match the volume's {like.shape[:3]}")
    writer = OmeTiffSlabWriter(path, labels.shape, labels.dtype, like.spacing, like.unit)
    try:
        writer[0 : labels.shape[0]] = labels
    except BaseException:
        writer.abort()
        raise
    return writer.close()
