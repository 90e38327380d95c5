"""Segmentation-map writers: class-index maps, palette PNGs, RGB images, probability maps, JSON files.

Every writer goes through :func:`unetseg.io.atomic.atomic_path` with a check that reads the written file
back (PNG/TIFF header, or the whole small file): a final name only ever holds a complete, verified file.
"""
from __future__ import annotations

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
from .labels import label_dtype

MAP_FORMATS = ("index", "palette", "overlay", "probs", "summary", "ome-zarr")  # ome-zarr: index map, unetseg[scale]


def _verify_image(shape: tuple[int, ...]):
    """Check for atomic_path: the file opens (header only) and declares ``shape`` (H, W)."""
    def check(path: Path) -> None:
        if is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                got = tuple(tif.series[0].shape[:2])
        else:
            with PIL.Image.open(path) as img:
                got = (img.height, img.width)
        if got != tuple(shape[:2]):
            raise ValueError(f"file reads back as {got[1]}x{got[0]}, expected {shape[1]}x{shape[0]}")
    return check


def _write_cv2(path: Path, image: np.ndarray) -> None:
    with atomic_path(path, verify=_verify_image(image.shape)) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OutputError(path, "OpenCV could not encode this file")


def write_index(path: str | os.PathLike, labels: np.ndarray, *, nodata: int | None = None,
                extratags: list[tuple] | None = None) -> Path:
    """Class-index map: PNG (uint8, uint16 beyond 256 labels) or TIFF (zlib, GeoTIFF ``extratags``), by suffix."""
    from .tiff_writer import nodata_tag

    path = Path(path)
    labels = np.asarray(labels)
    top = int(labels.max(initial=0))
    if top >= 65536:
        raise UnetsegError(f"{path}: {top + 1} classes do not fit a 16-bit index map")
    data = labels.astype(label_dtype(top + 1))
    if is_tiff(path):
        with atomic_path(path, verify=_verify_image(data.shape)) as tmp:
            tifffile.imwrite(tmp, data, compression="zlib", photometric="minisblack",
                             extratags=[*(extratags or []), *nodata_tag(nodata)])
    else:
        _write_cv2(path, data)
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
    with atomic_path(path, verify=_verify_image(labels.shape)) as tmp:
        image.save(tmp, format="PNG")
    return path


def write_rgb(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """HxWx3 uint8 RGB image (PNG/JPEG/TIFF by suffix)."""
    path = Path(path)
    if is_tiff(path):
        with atomic_path(path, verify=_verify_image(rgb.shape)) as tmp:
            tifffile.imwrite(tmp, rgb, compression="zlib", photometric="rgb")
    else:
        _write_cv2(path, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return path


def write_probs(path: str | os.PathLike, probs: np.ndarray) -> Path:
    """HxWxK probabilities as float16: ``.npy`` (np.load-able) or ``.tif`` (HxWxK, zlib)."""
    path = Path(path)
    data = np.asarray(probs).astype(np.float16)
    if is_tiff(path):
        with atomic_path(path, verify=_verify_image(data.shape)) as tmp:
            tifffile.imwrite(tmp, data, compression="zlib", photometric="minisblack", planarconfig="contig")
        return path

    def check(tmp: Path) -> None:
        if np.load(tmp, mmap_mode="r").shape != data.shape:
            raise ValueError("the .npy header does not read back")
    with atomic_path(path, verify=check) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, data)
    return path


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    """``data`` as indented JSON (verified by parsing it back)."""
    path = Path(path)
    with atomic_path(path, verify=lambda tmp: json.loads(tmp.read_text())) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """A small text file (config.yaml, CSV), read back and compared before it becomes final."""
    path = Path(path)

    data = text.encode()

    def check(tmp: Path) -> None:
        if tmp.read_bytes() != data:
            raise ValueError("the text does not read back")
    with atomic_path(path, verify=check) as tmp:
        tmp.write_bytes(data)
    return path
