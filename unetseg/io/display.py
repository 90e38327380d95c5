"""Turning images and label maps into RGB for people: previews, colourised labels, overlays.

A preview shows three bands as RGB (or one band as grey): ``bands`` [r, g, b] or [b], 0-based; default the
first three of a 3+-band image, else band 0. Each shown band is stretched linearly over its 2nd..98th
percentile of the valid pixels, which are drawn black: pass ``valid`` (HxW bool, from
:func:`unetseg.data.nodata.valid_mask`); NaN and Inf are never drawn whatever ``valid`` says.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import UnetsegError

IGNORE_COLOR = (128, 128, 128)  # unlabelled pixels in figures
STRETCH_PERCENTILES = (2.0, 98.0)
STRETCH_SAMPLES = 1_000_000  # pixels the percentiles are taken over (a regular subsample beyond)


def colorize(labels: np.ndarray, palette: np.ndarray, *, ignore_index: int | None = None,
             unknown_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """HxW class indices -> HxWx3 uint8 RGB via a (K, 3) uint8 palette.

    Labels outside 0..K-1 (e.g. the nodata label), and ``ignore_index``, are drawn in ``unknown_color``
    (default black).
    """
    labels = np.asarray(labels)
    palette = np.asarray(palette, np.uint8).reshape(-1, 3)
    known = (labels >= 0) & (labels < len(palette))
    if ignore_index is not None:
        known &= labels != ignore_index
    out = palette[np.where(known, labels, 0)]
    out[~known] = unknown_color
    return out


def preview_bands(channels: int, bands: Sequence[int] | None = None) -> list[int]:
    """The bands a preview shows: ``bands`` if given (checked against ``channels``), else the first three
    for 3+ bands, else band 0."""
    if bands is None:
        return [0, 1, 2] if channels >= 3 else [0]
    bands = [int(b) for b in bands]
    if len(bands) not in (1, 3) or any(not 0 <= b < channels for b in bands):
        raise UnetsegError(f"display bands {bands} must be 1 or 3 band numbers in 0..{channels - 1}")
    return bands


def _shown(image: np.ndarray, bands: Sequence[int] | None) -> np.ndarray:
    img = np.asarray(image)
    img = img[..., None] if img.ndim == 2 else img
    return img[..., preview_bands(img.shape[2], bands)]


def stretch_limits(image: np.ndarray, bands: Sequence[int] | None = None,
                   valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per shown band, the 2nd and 98th percentiles of the valid pixels (float64 arrays of 1 or 3)."""
    shown = _shown(image, bands)
    step = max(1, int(np.sqrt(shown.shape[0] * shown.shape[1] / STRETCH_SAMPLES)))
    sample = shown[::step, ::step].astype(np.float64)
    pixels = sample.reshape(-1, sample.shape[2]) if valid is None else sample[np.asarray(valid)[::step, ::step]]
    pixels = pixels[np.isfinite(pixels).all(axis=1)]
    if pixels.size == 0:
        zeros = np.zeros(shown.shape[2])
        return zeros, zeros + 1
    low, high = np.percentile(pixels, STRETCH_PERCENTILES, axis=0)
    return low, np.where(high > low, high, low + 1)


def display_rgb(image: np.ndarray, bands: Sequence[int] | None = None, *,
                limits: tuple[np.ndarray, np.ndarray] | None = None, valid: np.ndarray | None = None) -> np.ndarray:
    """Any HxW[xC] image -> HxWx3 uint8 for display.

    ``bands``: see :func:`preview_bands`. ``limits``: per-band (low, high) of the stretch (default
    :func:`stretch_limits` of this image; pass them to draw row bands of one image alike). Pixels not
    ``valid`` (HxW bool), and NaN/Inf, are black.
    """
    shown = _shown(image, bands)
    low, high = limits if limits is not None else stretch_limits(image, bands, valid)
    scaled = (shown.astype(np.float32) - np.asarray(low, np.float32)) / np.asarray(high - low, np.float32)
    out = np.clip(np.nan_to_num(scaled * 255 + 0.5, nan=0, posinf=0, neginf=0), 0, 255).astype(np.uint8)
    if valid is not None:
        out[~np.asarray(valid)] = 0
    return np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5, *,
            bands: Sequence[int] | None = None, limits: tuple[np.ndarray, np.ndarray] | None = None,
            transparent: Sequence[int] = (), valid: np.ndarray | None = None) -> np.ndarray:
    """Alpha-blend class colours onto the preview of the image (HxWx3 uint8 RGB).

    Every class is tinted except those in ``transparent``; labels outside the palette (the nodata label) are
    black, as are invalid image pixels. ``bands``, ``limits``, ``valid``: see :func:`display_rgb`.
    """
    labels = np.asarray(labels)
    base = display_rgb(image, bands, limits=limits, valid=valid).astype(np.float32)
    colours = colorize(labels, palette).astype(np.float32)
    tinted = (labels >= 0) & (labels < len(palette)) & ~np.isin(labels, list(transparent))
    blend = np.where(tinted[..., None], (1 - alpha) * base + alpha * colours, base)
    blend[labels >= len(palette)] = 0
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)
