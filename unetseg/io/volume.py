"""Volumes (DxHxW[xC]) from any file unetseg reads them from, behind one lazy interface, :class:`Volume`.

:func:`open_volume` picks the reader by the file: NIfTI (``.nii``, ``.nii.gz``: :class:`~unetseg.io.nifti.NiftiVolume`),
TIFF z-stacks (OME-TIFF, ImageJ hyperstacks, plain multi-page stacks: :class:`~unetseg.io.volume_tiff.TiffVolume`)
and OME-Zarr images (NGFF 0.4/0.5 ``multiscales``: :class:`~unetseg.io.volume_zarr.ZarrVolume`). Every reader
shows its file as a C-order (Z, Y, X[, C]) array, reads only the window it is asked for, and says the voxel size
(``spacing``, (dz, dy, dx)) and its ``unit``. ``affine`` is the 4x4 voxel-to-world matrix in NIfTI's convention
(for (x, y, z) voxel indices): the file's own for NIfTI, ``diag(dx, dy, dz, 1)`` for formats without an
orientation. The label writers (:mod:`unetseg.io.nifti`, :mod:`unetseg.io.volume_tiff`,
:mod:`unetseg.io.ome_zarr_labels`) take their geometry from these attributes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import UnetsegError

# length units, as NGFF (OME-Zarr) names them, in micrometres: the unit readers convert OME sizes to
MICROMETRE = "micrometer"
UNIT_UM = {"angstrom": 1e-4, "nanometer": 1e-3, MICROMETRE: 1.0, "millimeter": 1e3, "centimeter": 1e4,
           "meter": 1e6}
# spellings found in OME-XML (PhysicalSize*Unit), ImageJ (unit) and NIfTI headers
UNIT_NAMES = {"å": "angstrom", "nm": "nanometer", "µm": MICROMETRE, "μm": MICROMETRE, "um": MICROMETRE,
              "micron": MICROMETRE, "\\u00b5m": MICROMETRE, "mm": "millimeter", "cm": "centimeter", "m": "meter"}
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".tif", ".tiff", ".zarr")  # what open_volume reads (a TIFF also by content)


def unit_name(text: str | None) -> str | None:
    """The NGFF name of a length unit spelt ``text`` ("µm", "um", "micron", "micrometer", ...), None if unknown."""
    if not text:
        return None
    key = str(text).strip().lower()
    return key if key in UNIT_UM else UNIT_NAMES.get(key)


def to_micrometres(sizes: tuple[float, ...], unit: str | None) -> tuple[tuple[float, ...], str | None]:
    """``sizes`` in ``unit`` converted to micrometres; sizes of an unknown unit are kept, with unit None."""
    name = unit_name(unit)
    if name is None:
        return tuple(float(s) for s in sizes), None
    return tuple(float(s) * UNIT_UM[name] for s in sizes), MICROMETRE


def millilitres_per_voxel(spacing: tuple[float, ...], unit: str | None) -> float | None:
    """The volume of one voxel in millilitres (cubic centimetres), None when the unit is unknown."""
    name = unit_name(unit)
    if name is None:
        return None
    mm = UNIT_UM[name] / 1e3
    return float(np.prod([s * mm for s in spacing])) / 1000.0


def diagonal_affine(spacing: tuple[float, float, float]) -> np.ndarray:
    """The NIfTI-convention affine (for (x, y, z) voxel indices) of a volume with no orientation:
    ``diag(dx, dy, dz, 1)``."""
    dz, dy, dx = spacing
    return np.diag([dx, dy, dz, 1.0])


@runtime_checkable
class Volume(Protocol):
    """A lazy (Z, Y, X[, C]) volume: what every volume reader returns and every volume writer takes its geometry
    from.

    Attributes:
        path: the file it reads.
        shape: (Z, Y, X) or (Z, Y, X, C).
        dtype: the dtype reads return.
        spacing: voxel size (dz, dy, dx) as floats in ``unit`` (1.0 each when the file does not say).
        unit: the spacing's length unit as NGFF names it ("millimeter", "micrometer"), None when unknown.
        affine: 4x4 voxel-to-world matrix for (x, y, z) voxel indices (NIfTI's convention).
        nodata: the file's nodata value, or None.
    """

    @property
    def path(self) -> Path: ...

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def ndim(self) -> int: ...

    @property
    def spacing(self) -> tuple[float, ...]: ...

    @property
    def unit(self) -> str | None: ...

    @property
    def affine(self) -> np.ndarray: ...

    @property
    def nodata(self) -> float | None: ...

    def __getitem__(self, key: Any) -> np.ndarray:
        """``volume[z0:z1, y0:y1, x0:x1]`` (unit-step slices, channels whole): only that window is read."""
        ...


class ZYXCView:
    """A lazy N-D array (a zarr array, a tifffile memmap) with named axes, seen as (Z, Y, X[, C]).

    ``axes`` names the source's axes with tifffile letters (Z, Y, X; C or S for channels; T time; Q or I an
    unnamed axis, taken as Z when there is no Z). Singleton axes are dropped; T of more than one point, a missing
    Z, Y or X, or a second channel axis is a one-line UnetsegError naming ``path`` and the axes. ``spacing`` (z, y, x)
    and ``unit`` are the file's; ``affine`` is ``diag(dx, dy, dz, 1)`` (these formats carry no orientation).
    """

    nodata = None

    def __init__(self, array: Any, axes: str, path: Path, spacing: tuple[float, float, float],
                 unit: str | None) -> None:
        self.path, self.spacing, self.unit = path, spacing, unit
        self.affine = diagonal_affine(spacing)
        shape = tuple(int(n) for n in array.shape)
        axes = axes.upper()
        described = f"axes {axes!r} and shape {shape}"
        if "T" in axes and shape[axes.index("T")] > 1:
            raise UnetsegError(f"{path}: a time series ({described}, T={shape[axes.index('T')]}); unetseg segments "
                               "one volume (T=1)")
        if "Z" not in axes:
            unnamed = [i for i, a in enumerate(axes) if a in "QI" and shape[i] > 1]
            if len(unnamed) == 1:  # a plain multi-page stack: its pages are the slices
                axes = axes[: unnamed[0]] + "Z" + axes[unnamed[0] + 1 :]
        if not all(a in axes for a in "ZYX"):
            raise UnetsegError(f"{path}: not a z-stack ({described}); a volume needs Z, Y and X axes")
        channels = [i for i, a in enumerate(axes) if a not in "ZYX" and shape[i] > 1]
        if len(channels) > 1:
            raise UnetsegError(f"{path}: a volume has Z, Y, X and at most one channel axis, not {described}")
        self._array = array
        self._spatial = tuple(axes.index(a) for a in "ZYX")
        self._c = channels[0] if channels else None
        self.axes = axes
        self.dtype = np.dtype(array.dtype)
        self.shape = tuple(shape[i] for i in self._spatial) + (() if self._c is None else (shape[self._c],))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        if len(key) > 3 and key[3] != slice(None):
            raise IndexError("a volume reads all channels of a window")
        if not all(isinstance(k, slice) and k.step in (None, 1) for k in key[:3]):
            raise IndexError(f"a volume takes unit-step slices, got {key}")
        index: list[Any] = [0] * len(self._array.shape)
        for axis, k in zip(self._spatial, key[:3], strict=True):
            index[axis] = k
        if self._c is not None:
            index[self._c] = slice(None)
        block = np.asarray(self._array[tuple(index)])
        kept = sorted(i for i in (*self._spatial, self._c) if i is not None)  # the axes left, in source order
        order = [kept.index(i) for i in self._spatial] + ([] if self._c is None else [kept.index(self._c)])
        return np.ascontiguousarray(block.transpose(order))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[:, :, :]
        return whole if dtype is None else whole.astype(dtype)


def open_volume(path: str | os.PathLike) -> Volume:
    """The volume at ``path`` as a lazy (Z, Y, X[, C]) :class:`Volume`, read by the reader its suffix or content
    asks for: ``.nii``/``.nii.gz`` NIfTI, ``.tif``/``.tiff``/``.ome.tif`` z-stacks, zarr folders (OME-Zarr).
    Anything else, or a file that is not a volume, is a one-line UnetsegError naming it."""
    from .nifti import is_nifti, open_nifti
    from .zarr_io import is_zarr

    path = Path(path)
    if is_nifti(path):
        return open_nifti(path)
    if not path.exists():
        raise UnetsegError(f"{path}: no such file")
    if is_zarr(path):
        from .volume_zarr import open_zarr_volume

        return open_zarr_volume(path)
    if path.suffix.lower() in (".tif", ".tiff") or _tiff_magic(path):
        from .volume_tiff import open_tiff_volume

        return open_tiff_volume(path)
    raise UnetsegError(f"{path}: not a volume file (volumes are .nii, .nii.gz, .tif/.tiff z-stacks or .zarr)")


def _tiff_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
    except OSError:
        return False


DOUBLE_SUFFIXES = (".nii.gz", ".ome.tif", ".ome.tiff", ".ome.zarr")


def file_stem(path: str | os.PathLike) -> str:
    """The name without its suffix, both parts of a double one (``scan.nii.gz``, ``stack.ome.tif`` -> the stem)."""
    name = Path(path).name
    double = next((d for d in DOUBLE_SUFFIXES if name.lower().endswith(d)), None)
    return name[: -len(double)] if double else Path(name).stem


def is_volume_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a volume rather than an image: a NIfTI file, a TIFF whose first series has a Z axis
    of more than one slice, an OME-Zarr image with a z axis of more than one slice. Unreadable files: False (the
    reader that reads them says why)."""
    from .nifti import is_nifti
    from .zarr_io import is_zarr

    path = Path(path)
    if is_nifti(path):
        return True
    try:
        if is_zarr(path):
            from .volume_zarr import zarr_axes

            axes, shape = zarr_axes(path)
        elif path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                axes, shape = tif.series[0].axes, tuple(tif.series[0].shape)
        else:
            return False
    except Exception:  # noqa: BLE001  not ours to report here
        return False
    return "Z" in axes.upper() and shape[axes.upper().index("Z")] > 1
