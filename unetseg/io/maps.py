"""Segmentation-map writers: class-index maps, palette PNGs, RGB images, probability maps, JSON files.

Every writer goes through :func:`unetseg.io.atomic.atomic_path` with a check that reads the written file
back (the whole small file, or the TIFF/.npy header): a final name only ever holds a complete, verified file.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import PIL.Image
import tifffile

from ..errors import OutputError, UnetsegError
from .atomic import atomic_path
from .images import is_tiff
from .sinks import NpyWriter
from .tiff_writer import nodata_tag, verify_tiff


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` as the file ``path``, read back and compared before it becomes final.

    Encoded images go through here too: a library that writes the file itself may report success on a
    failed write (OpenCV does), while a plain write raises ``No space left on device``.
    """
    path = Path(path)

    def check(tmp: Path) -> None:
        if tmp.read_bytes() != data:
            raise ValueError("the file does not read back as written")
    with atomic_path(path, verify=check) as tmp:
        tmp.write_bytes(data)
    return path


def _write_cv2(path: Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise OutputError(path, "OpenCV could not encode this file")
    write_bytes(path, encoded.tobytes())


def write_index(path: str | os.PathLike, labels: np.ndarray, *, nodata: int | None = None,
                extratags: list[tuple] | None = None) -> Path:
    """Class-index map in the labels' own dtype (:func:`unetseg.data.labels.map_dtype`): PNG (uint8 or uint16)
    or TIFF (zlib, GeoTIFF ``extratags`` and the ``nodata`` label's GDAL_NODATA tag), by suffix."""
    path = Path(path)
    data = np.asarray(labels)
    if data.dtype not in (np.uint8, np.uint16) and not is_tiff(path):
        raise UnetsegError(f"{path}: a PNG index map holds uint8 or uint16 labels, not {data.dtype}")
    if is_tiff(path):
        with atomic_path(path, verify=verify_tiff(data.shape, data.dtype)) as tmp:
            tifffile.imwrite(tmp, data, compression="zlib", photometric="minisblack",
                             extratags=[*(extratags or []), *nodata_tag(nodata)])
    else:
        _write_cv2(path, data)
    return path


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """An HxW or HxWxC image in its own dtype as a zlib TIFF (bands interleaved; 3-band uint8 tagged RGB): a
    training image exactly as it was in memory."""
    path = Path(path)
    data = np.asarray(image)
    rgb = data.ndim == 3 and data.shape[2] == 3 and data.dtype == np.uint8
    with atomic_path(path, verify=verify_tiff(data.shape, data.dtype)) as tmp:
        tifffile.imwrite(tmp, data, compression="zlib", photometric="rgb" if rgb else "minisblack",
                         planarconfig="contig" if data.ndim == 3 else None)
    return path


def write_palette_png(path: str | os.PathLike, labels: np.ndarray, palette: np.ndarray) -> Path:
    """A paletted PNG (Pillow mode "P"): pixel values are the class indices, the palette holds the colours.

    One file that any viewer shows in colour and that still reads back as the index map. Needs <= 256 classes.
    """
    path = Path(path)
    labels = np.asarray(labels)
    palette = np.asarray(palette, np.uint8).reshape(-1, 3)
    if len(palette) > 256 or labels.max(initial=0) > 255:
        raise UnetsegError(f"{path}: a palette PNG holds at most 256 classes")
    image = PIL.Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))
    image.putpalette(palette.tobytes(), rawmode="RGB")  # mode L -> P, indices unchanged
    encoded = io.BytesIO()
    image.save(encoded, format="PNG")
    return write_bytes(path, encoded.getvalue())


def write_rgb(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """HxWx3 uint8 RGB image (PNG/JPEG/TIFF by suffix)."""
    path = Path(path)
    if is_tiff(path):
        with atomic_path(path, verify=verify_tiff(rgb.shape, rgb.dtype)) as tmp:
            tifffile.imwrite(tmp, rgb, compression="zlib", photometric="rgb")
    else:
        _write_cv2(path, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return path


def write_probs(path: str | os.PathLike, probs: np.ndarray) -> Path:
    """HxWxK probabilities as float16: ``.npy`` (np.load-able) or ``.tif`` (HxWxK, zlib)."""
    path = Path(path)
    data = np.asarray(probs).astype(np.float16)
    if is_tiff(path):
        with atomic_path(path, verify=verify_tiff(data.shape, data.dtype)) as tmp:
            tifffile.imwrite(tmp, data, compression="zlib", photometric="minisblack", planarconfig="contig")
        return path
    with NpyWriter(path, data.shape, data.dtype) as writer:
        writer[0 : len(data)] = data
    return path


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    """``data`` as indented JSON (verified by reading the bytes back)."""
    return write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def write_text(path: str | os.PathLike, text: str) -> Path:
    """A small text file (config.yaml, CSV), read back and compared before it becomes final."""
    return write_bytes(path, text.encode())
