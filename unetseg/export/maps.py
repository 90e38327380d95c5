"""Segmentation-map writers: class-index maps, palette PNGs, colour overlays, probability maps, JSON summaries.

Every writer goes through :func:`unetseg.fileio.atomic_path`: a final name only ever holds a complete file.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import PIL.Image
import tifffile
from torch import nn

from ..data.classes import ClassTable
from ..errors import UnetsegError
from ..fileio import atomic_path

MAP_FORMATS = ("index", "palette", "overlay", "probs", "summary")


def class_table(model: nn.Module | None, num_classes: int) -> ClassTable:
    """The model's class names/colours (from its checkpoint) or defaults (background black, distinct colours)."""
    names = getattr(model, "class_names", None)
    colors = getattr(model, "class_colors", None)
    if names is not None and len(names) != num_classes:
        names = None
    if colors is not None and len(colors) == num_classes:
        return ClassTable(tuple(names or ClassTable.default(num_classes).names), tuple(tuple(c) for c in colors))
    return ClassTable.default(num_classes, names)


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """HxW class indices -> HxWx3 uint8 RGB via an (K, 3) uint8 palette (indices past K are drawn black)."""
    table = np.zeros((max(int(labels.max(initial=0)) + 1, len(palette)), 3), np.uint8)
    table[: len(palette)] = palette
    return table[labels]


def display_rgb(image: np.ndarray) -> np.ndarray:
    """Any HxW[xC] image -> HxWx3 uint8 for display (uint16 / 257, floats min-max scaled, first 3 bands)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3:
        img = img[..., :3] if img.shape[2] >= 3 else np.repeat(img[..., :1], 3, axis=2)
    if img.dtype == np.uint8:
        out = img
    elif img.dtype == np.uint16:
        out = (img // 257).astype(np.uint8)
    else:
        f = img.astype(np.float32)
        lo, hi = float(np.nanmin(f)), float(np.nanmax(f))
        out = np.clip((f - lo) / max(hi - lo, 1e-12) * 255 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Alpha-blend class colours onto the image (HxWx3 uint8 RGB); class 0 (background) leaves the image as is."""
    base = display_rgb(image).astype(np.float32)
    colours = colorize(labels, palette).astype(np.float32)
    blend = np.where((labels > 0)[..., None], (1 - alpha) * base + alpha * colours, base)
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)


def _write_cv2(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise UnetsegError(f"{path}: OpenCV could not write this file")


def write_index(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Class-index map: PNG (uint8, uint16 when there are > 256 classes) or TIFF (zlib), by suffix."""
    path = Path(path)
    labels = np.asarray(labels)
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    if labels.max(initial=0) >= 65536:
        raise UnetsegError(f"{path}: {int(labels.max()) + 1} classes do not fit a 16-bit index map")
    if path.suffix.lower() in (".tif", ".tiff"):
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, labels.astype(dtype), compression="zlib", photometric="minisblack")
    else:
        _write_cv2(path, labels.astype(dtype))
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
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def write_rgb(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """HxWx3 uint8 RGB image (PNG/JPEG/TIFF by suffix)."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, rgb, compression="zlib", photometric="rgb")
    else:
        _write_cv2(path, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return path


def write_probs(path: str | os.PathLike, probs: np.ndarray) -> Path:
    """HxWxK probabilities as float16: ``.npy`` (np.load-able) or ``.tif`` (HxWxK, zlib)."""
    path = Path(path)
    data = np.asarray(probs).astype(np.float16)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in (".tif", ".tiff"):
            tifffile.imwrite(tmp, data, compression="zlib", photometric="minisblack", planarconfig="contig")
        else:
            with open(tmp, "wb") as f:
                np.save(f, data)
    return path


def class_counts(bands: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """Per-class pixel counts (int64, length >= num_classes) over label bands (or one whole label map)."""
    counts = np.zeros(num_classes, np.int64)
    for band in bands:
        c = np.bincount(np.asarray(band).ravel(), minlength=num_classes)
        if len(c) > len(counts):
            counts = np.concatenate([counts, np.zeros(len(c) - len(counts), np.int64)])
        counts[: len(c)] += c
    return counts


def summary(shape: Sequence[int], counts: np.ndarray, names: Sequence[str], **settings: Any) -> dict[str, Any]:
    """JSON-able summary: image size, the given settings (tile size, ...), per-class pixel counts and fractions."""
    total = int(counts.sum())
    classes = [
        {"id": i, "name": names[i] if i < len(names) else f"class{i}", "pixels": int(n),
         "fraction": float(n) / total if total else 0.0}
        for i, n in enumerate(counts)
    ]
    return {"height": int(shape[0]), "width": int(shape[1]), "pixels": total, **settings, "classes": classes}


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return path
