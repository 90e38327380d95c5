"""NIfTI volumes (``.nii``, ``.nii.gz``) in and out, with the geometry kept.

Axis order: NIfTI stores voxels with x fastest (Fortran order); nibabel shows them as an (X, Y, Z[, C]) array.
unetseg shows the same bytes as a C-order (Z, Y, X[, C]) volume, DxHxW as everywhere else in the package (nnU-Net
does the same): no voxel is moved or resampled, and slabs along D are contiguous in the file, so labels can be
streamed to a ``.nii.gz`` slab by slab (:class:`NiftiSlabWriter`). ``spacing`` is (dz, dy, dx) accordingly; the
``affine`` is the file's own (it maps nibabel's (i, j, k) voxel indices, i.e. (x, y, z), to world millimetres).

Labels are written with the input's header: affine, qform/sform and their codes, units, the same voxel grid;
datatype uint8/uint16, no scaling, intent "label".
"""
from __future__ import annotations

import gzip
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError, UnetsegError
from .atomic import atomic_path

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NIFTI_UNITS = {"mm": "millimeter", "micron": "micrometer", "meter": "meter"}  # nibabel's names -> NGFF's
CHUNK = 1 << 20  # bytes read at a time when checking a written file's data


def is_nifti(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike) -> str:
    """The file name without ``.nii``/``.nii.gz``."""
    name = Path(path).name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem


class NiftiVolume:
    """A NIfTI file as a lazy DxHxW[xC] volume: slicing reads only the voxels asked for (memory-mapped for ``.nii``).

    Attributes:
        path: the file.
        shape: (Z, Y, X) or (Z, Y, X, C) for a 4D file (its 4th axis taken as channels: modalities, echoes).
        dtype: the stored dtype, or float32 when the header scales values (scl_slope/scl_inter).
        spacing: voxel size along Z, Y, X (the header's zooms, in its spatial unit, usually mm).
        unit: that unit as NGFF names it: "millimeter" (also for headers that leave it unset, NIfTI's usual
            unit), "micrometer" or "meter".
        affine: the file's 4x4 voxel-to-world matrix (for nibabel's (x, y, z) voxel indices).
        header: the nibabel header (copied into written labels).
        nodata: None (NIfTI has no nodata value; NaN voxels are invalid anyway).
    """

    nodata = None

    def __init__(self, path: str | os.PathLike) -> None:
        import nibabel as nib  # ~0.2 s to import; only volumes need it

        self.path = Path(path)
        try:
            image = nib.load(str(self.path), mmap="r")
        except FileNotFoundError:
            raise UnetsegError(f"{self.path}: no such file") from None
        except Exception as err:  # noqa: BLE001  nibabel raises several types for damaged files
            raise UnetsegError(f"{self.path}: not a readable NIfTI file ({str(err).splitlines()[0]})") from None
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise UnetsegError(f"{self.path}: not a NIfTI-1/2 image ({type(image).__name__})")
        self._image = image
        self._proxy = image.dataobj
        raw = tuple(int(n) for n in image.shape)
        if len(raw) == 5 and raw[3] == 1:  # (X, Y, Z, 1, C): a vector-valued volume
            raw = (*raw[:3], raw[4])
        if len(raw) not in (3, 4) or min(raw) < 1:
            raise UnetsegError(f"{self.path}: a volume must be 3D (X, Y, Z) or 4D with channels, got shape {raw}")
        self._raw = raw
        self.shape = (raw[2], raw[1], raw[0], *raw[3:])
        self.header = image.header
        self.affine = np.asarray(image.affine, dtype=np.float64)
        self.spacing = tuple(float(z) for z in image.header.get_zooms()[:3][::-1])
        self.unit = NIFTI_UNITS.get(image.header.get_xyzt_units()[0], "millimeter")
        slope, inter = (getattr(self._proxy, "slope", 1.0), getattr(self._proxy, "inter", 0.0))
        scaled = not (slope in (1.0, None) or np.isnan(slope)) or not (inter in (0.0, None) or np.isnan(inter))
        self.dtype = np.dtype(np.float32) if scaled else np.dtype(image.get_data_dtype())

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        """``volume[z0:z1, y0:y1, x0:x1]`` (slices with step 1 or None, channels whole) as a C-order array."""
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        if len(key) > 3 and key[3] != slice(None):
            raise IndexError("NiftiVolume reads all channels of a window")
        spatial = tuple(key[:3])
        if not all(isinstance(k, slice) and k.step in (None, 1) for k in spatial):
            raise IndexError(f"NiftiVolume takes unit-step slices, got {key}")
        zs, ys, xs = spatial
        extra = (0, slice(None)) if len(self._raw) == 4 and len(self._image.shape) == 5 else ()
        block = self._proxy[(xs, ys, zs, *extra)] if extra else self._proxy[xs, ys, zs]
        block = np.asarray(block)
        order = (2, 1, 0, *range(3, block.ndim))
        return np.ascontiguousarray(block.transpose(order), dtype=self.dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self[:, :, :] if dtype is None else self[:, :, :].astype(dtype)

    def label_header(self, dtype: np.dtype) -> Any:
        """The header of a label volume on this volume's grid: the same affine, qform/sform codes and units."""
        header = self.header.copy()
        header.set_data_shape(self._raw[:3])
        header.set_data_dtype(dtype)
        header.set_slope_inter(1.0, 0.0)
        header["cal_min"], header["cal_max"] = 0, 0
        header.set_intent("label")
        header["descrip"] = b"unetseg labels"
        return header


def open_nifti(path: str | os.PathLike) -> NiftiVolume:
    """The NIfTI file at ``path`` as a lazy (Z, Y, X[, C]) :class:`NiftiVolume`; a bad file is a one-line
    UnetsegError naming it."""
    return NiftiVolume(path)


def new_header(shape: tuple[int, ...], dtype: Any, affine: np.ndarray, unit: str | None = "millimeter") -> Any:
    """A NIfTI-1 header for a (Z, Y, X) volume of ``dtype`` with ``affine`` (for nibabel's (x, y, z) voxel indices)
    as both qform (code 1, scanner) and sform (code 2, aligned); voxel sizes from the affine's columns, in ``unit``
    ("millimeter" by default, "micrometer", "meter"; None: unknown)."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(tuple(shape[:3])[::-1])
    header.set_data_dtype(np.dtype(dtype))
    affine = np.asarray(affine, dtype=np.float64)
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=2)
    header.set_zooms(tuple(float(z) for z in np.linalg.norm(affine[:3, :3], axis=0)))
    names = {v: k for k, v in NIFTI_UNITS.items()}
    header.set_xyzt_units(names.get(unit or "", "unknown"))
    return header


class NiftiSlabWriter:
    """A volume written slab by slab along D (``writer[z0:z1] = slab``, in increasing, contiguous order),
    gzip-compressed for ``.nii.gz``, into a temporary file that is checked (header read back, data size) and renamed
    onto ``path`` by :meth:`close`; nothing is left at ``path`` if writing fails or stops early.

    Args:
        path: the output ``.nii`` or ``.nii.gz``.
        header: the file's header, its shape and dtype set (:meth:`NiftiVolume.label_header`, :func:`new_header`).
        shape: the (Z, Y, X) volume, or (Z, Y, X, C) (channels on NIfTI's 4th axis, which varies slowest: such a
            volume is written in one slab, ``writer[0:Z] = volume``).
    """

    def __init__(self, path: str | os.PathLike, header: Any, shape: tuple[int, ...]) -> None:
        self.path, self.shape = Path(path), tuple(int(n) for n in shape[:3])
        self.channels = int(shape[3]) if len(shape) > 3 else 1
        self._header = header
        self.dtype = np.dtype(header.get_data_dtype())
        expected = (*self.shape[::-1], *((self.channels,) if len(shape) > 3 else ()))
        if tuple(header.get_data_shape()) != expected:
            raise ValueError(f"header shape {header.get_data_shape()} is not {expected} ((Z, Y, X) reversed, then C)")
        self._context = atomic_path(self.path, verify=self._verify)
        self._tmp = self._context.__enter__()
        self._next = 0
        try:
            raw = open(self._tmp, "wb")  # noqa: SIM115  closed in close()/abort()
            self._file: Any = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=4) if self._gz else raw
            self._raw = raw
            self._file.write(self._header_bytes())
        except BaseException:
            self.abort()
            raise

    @property
    def _gz(self) -> bool:
        return str(self.path).lower().endswith(".gz")

    def _header_bytes(self) -> bytes:
        buffer = io.BytesIO()
        self._header.write_to(buffer)
        offset = max(len(buffer.getvalue()), int(self._header.get_data_offset()))
        self._header.set_data_offset(offset)
        buffer = io.BytesIO()
        self._header.write_to(buffer)
        return buffer.getvalue().ljust(offset, b"\0")

    def __setitem__(self, key: slice, slab: np.ndarray) -> None:
        if not isinstance(key, slice) or key.start != self._next or key.stop is None:
            raise ValueError(f"slabs must come in order: expected one starting at {self._next}, got {key}")
        slab = np.asarray(slab)
        if self.channels > 1:
            if slab.shape != (*self.shape, self.channels):
                raise ValueError(f"a volume with channels is written whole: got {slab.shape}, not "
                                 f"{(*self.shape, self.channels)}")
            slab = np.moveaxis(slab, -1, 0)  # channel by channel: NIfTI's (x, y, z, c) order
        elif slab.shape != (key.stop - key.start, *self.shape[1:]):
            raise ValueError(f"slab of shape {slab.shape} does not fit {key} of a {self.shape} volume")
        # C-order (z, y, x) bytes are NIfTI's x-fastest order
        self._file.write(np.ascontiguousarray(slab, dtype=self._header.get_data_dtype()).tobytes())
        self._next = key.stop

    def close(self) -> Path:
        """Finish, check and rename the file; returns ``path``."""
        if self._next != self.shape[0]:
            self.abort()
            raise OutputError(self.path, f"only {self._next} of {self.shape[0]} slices were written")
        try:
            self._file.close()
            self._raw.close()
        except BaseException as err:
            self._context.__exit__(type(err), err, err.__traceback__)
            raise
        self._context.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (an interrupted prediction)."""
        for f in (getattr(self, "_file", None), getattr(self, "_raw", None)):
            if f is not None:
                f.close()
        error = OutputError(self.path, "writing stopped before the volume was complete")
        try:
            self._context.__exit__(OutputError, error, None)
        except OutputError:
            pass

    def _verify(self, tmp: Path) -> None:
        opener = gzip.open if self._gz else open
        with opener(tmp, "rb") as f:
            header = type(self._header).from_fileobj(f)
            f.seek(int(header.get_data_offset()))
            size = 0
            while chunk := f.read(CHUNK):
                size += len(chunk)
        expected = int(np.prod(self.shape)) * self.channels * self.dtype.itemsize
        if header.get_data_shape() != tuple(self._header.get_data_shape()) or size != expected:
            raise OutputError(self.path, f"written file holds {size} data bytes, expected {expected}")
        if not np.allclose(header.get_best_affine(), self._header.get_best_affine()):
            raise OutputError(self.path, "written affine differs from the input's")


def label_writer(path: str | os.PathLike, like: Any, dtype: Any) -> NiftiSlabWriter:
    """A :class:`NiftiSlabWriter` of labels of ``dtype`` on ``like``'s grid and geometry: a :class:`NiftiVolume`'s
    own header (affine, qform/sform codes, units), or for any other :class:`~unetseg.io.volume.Volume` a new header
    with its ``affine`` (``diag(dx, dy, dz, 1)`` for formats without an orientation) and spacing unit."""
    if isinstance(like, NiftiVolume):
        return NiftiSlabWriter(path, like.label_header(np.dtype(dtype)), like.shape[:3])
    header = new_header(like.shape[:3], dtype, like.affine, like.unit)
    header.set_intent("label")
    header["descrip"] = b"unetseg labels"
    return NiftiSlabWriter(path, header, like.shape[:3])


def write_nifti_labels(path: str | os.PathLike, labels: np.ndarray, like: NiftiVolume) -> Path:
    """Write a whole (Z, Y, X) label volume on ``like``'s grid (atomically, checked); returns ``path``."""
    labels = np.asarray(labels)
    if labels.shape != like.shape[:3]:
        raise UnetsegError(f"{path}: labels of shape {labels.shape} do not match {like.path}'s {like.shape[:3]}")
    return _write_whole(label_writer(path, like, labels.dtype), labels)


def write_nifti(path: str | os.PathLike, volume: np.ndarray, affine: np.ndarray) -> Path:
    """Write a whole (Z, Y, X) or (Z, Y, X, C) volume with ``affine`` (for nibabel's (x, y, z) voxel indices) as a
    NIfTI-1 file (atomically, checked); channels go on the 4th axis, as :class:`NiftiVolume` reads them. Returns
    ``path``."""
    volume = np.asarray(volume)
    if volume.ndim not in (3, 4):
        raise UnetsegError(f"{path}: write_nifti takes a (Z, Y, X[, C]) volume, got shape {volume.shape}")
    header = new_header(volume.shape, volume.dtype, affine)
    if volume.ndim == 4:
        header.set_data_shape((*volume.shape[:3][::-1], volume.shape[3]))
    return _write_whole(NiftiSlabWriter(path, header, volume.shape), volume)


def _write_whole(writer: NiftiSlabWriter, volume: np.ndarray) -> Path:
    try:
        writer[0 : volume.shape[0]] = volume
    except BaseException:
        writer.abort()
        raise
    return writer.close()
