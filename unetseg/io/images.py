"""Image files: which suffixes are images, and reading one whole into memory.

PNG, JPEG, BMP, WebP, PNM and JPEG 2000 go through OpenCV (BGR(A) turned into RGB(A)); TIFFs through
:func:`unetseg.io.tiff.open_tiff` (any band count and layout), read whole.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import UnetsegError

TIFF_SUFFIXES = (".tif", ".tiff")
# Every suffix unetseg reads, for prediction inputs and training folders alike.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".jp2", ".pgm", ".ppm", *TIFF_SUFFIXES)


def is_tiff(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in TIFF_SUFFIXES


def is_image_file(path: Path) -> bool:
    """An image file by suffix (hidden files, e.g. unetseg's own temporaries, excluded)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def file_nodata(path: str | os.PathLike) -> float | None:
    """The nodata value a file declares: a TIFF's GDAL_NODATA tag; None for other formats or without one."""
    from .tiff import tiff_nodata

    return tiff_nodata(path) if is_tiff(path) else None


def supported_dtype(array: np.ndarray) -> np.ndarray:
    """uint8, uint16 and float32 as they are; bool -> uint8; any other dtype -> float32 (values kept)."""
    if array.dtype in (np.uint8, np.uint16, np.float32):
        return array
    if array.dtype == bool:
        return array.astype(np.uint8)
    # int8/int16/int32/uint32/float16/float64: float32 keeps their values (up to 2**24 exactly).
    return array.astype(np.float32)


def _read_opencv(path: Path) -> np.ndarray:
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise UnetsegError(f"{path}: cannot read the file (missing, corrupt or not an image)")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
    return array


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image whole: HxW or HxWxC, RGB channel order, dtype uint8, uint16 or float32.

    TIFF bands in any layout (samples, pages, planar) come last. Other dtypes become float32, booleans
    uint8; a single channel is squeezed to HxW. Raises UnetsegError naming the file when it cannot be read
    or holds no 2-D image.
    """
    return supported_dtype(_read_whole(path))


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a mask or label image whole, as :func:`read_image` does, but with its integer dtype kept (int8 to
    uint64; booleans become uint8, other floats float32): the int32/uint32 label images of cellpose, StarDist or
    scikit-image hold object ids, and ids above 2**24 would not survive float32."""
    array = _read_whole(path)
    if array.dtype == bool:
        return array.astype(np.uint8)
    return array if np.issubdtype(array.dtype, np.integer) else supported_dtype(array)


def _read_whole(path: str | os.PathLike) -> np.ndarray:
    """The file's pixels, HxW or HxWxC (one channel squeezed), in the file's dtype."""
    from .tiff import open_tiff  # tiff imports this module's suffix lists

    path = Path(path)
    if not path.is_file():
        raise UnetsegError(f"{path}: no such file")
    try:
        array = np.asarray(open_tiff(path)[0][:, :]) if is_tiff(path) else _read_opencv(path)
    except UnetsegError:
        raise
    except Exception as exc:  # noqa: BLE001  tifffile/cv2/codecs raise many types for corrupt files
        raise UnetsegError(f"{path}: cannot read the file ({type(exc).__name__}: {exc})") from None
    if array.size == 0 or array.ndim not in (2, 3):
        raise UnetsegError(f"{path}: expected a non-empty HxW or HxWxC image, got shape {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return array
