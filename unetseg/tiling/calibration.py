"""Calibration tiles for amp="int8" (:func:`unetseg.engines.quantize.quantize`): windows of the image itself, read
and normalised as the splitter reads tiles, so the quantised ranges are the ones inference will see."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..data.nodata import valid_mask
from ..data.normalization import Normalization
from ..engines.contract import InvalidRule
from ..engines.quantize import CALIBRATION_TILES
from .padding import gather_window


def calibration_tiles(image: Any, tile_shape: tuple[int, int], norm: Normalization, pad_mode: str,
                      invalid: InvalidRule | None, count: int = CALIBRATION_TILES) -> np.ndarray:
    """Up to ``count`` normalised windows of ``tile_shape`` spread evenly over ``image`` (mirrored past its
    edges, invalid pixels set to 0 as the splitter does): N x C x H x W float32."""
    height, width = int(image.shape[0]), int(image.shape[1])
    th, tw = tile_shape
    per_axis = max(1, int(np.ceil(np.sqrt(count))))
    rows = np.unique(np.linspace(0, max(0, height - th), per_axis).round().astype(int))
    cols = np.unique(np.linspace(0, max(0, width - tw), per_axis).round().astype(int))
    tiles = []
    for r in rows:
        for c in cols:
            raw = gather_window(image, (int(r), int(r) + th), (int(c), int(c) + tw), pad_mode)
            x = norm.apply(raw)
            if invalid is not None:
                x[~valid_mask(raw, invalid.nodata, invalid.rule)] = 0.0
            tiles.append(x.transpose(2, 0, 1))
    picked = np.linspace(0, len(tiles) - 1, min(count, len(tiles))).round().astype(int)
    return np.stack([tiles[i] for i in picked]).astype(np.float32)
