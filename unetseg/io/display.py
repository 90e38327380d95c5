"""Turning images and label maps into RGB for people: previews, colourised labels, overlays."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IGNORE_COLOR = (128, 128, 128)  # unlabelled pixels in figures


def colorize(labels: np.ndarray, palette: np.ndarray, *, ignore_index: int | None = None,
             unknown_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """HxW class indices -> HxWx3 uint8 RGB via a (K, 3) uint8 palette.

    Labels outside 0..K-1, and ``ignore_index``, are drawn in ``unknown_color`` (default black).
    """
    labels = np.asarray(labels)
    palette = np.asarray(palette, np.uint8).reshape(-1, 3)
    known = (labels >= 0) & (labels < len(palette))
    if ignore_index is not None:
        known &= labels != ignore_index
    out = palette[np.where(known, labels, 0)]
    out[~known] = unknown_color
    return out


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
        finite = f[np.isfinite(f)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        out = np.clip(np.nan_to_num((f - lo) / max(hi - lo, 1e-12) * 255 + 0.5), 0, 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2) if out.ndim == 2 else out


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Alpha-blend class colours onto the image (HxWx3 uint8 RGB); class 0 (background) leaves the image as is."""
    base = display_rgb(image).astype(np.float32)
    colours = colorize(labels, palette).astype(np.float32)
    blend = np.where((np.asarray(labels) > 0)[..., None], (1 - alpha) * base + alpha * colours, base)
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)
