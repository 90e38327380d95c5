"""Large scenes with exact labels built from the built-in samples, for the demo and benchmarks."""
from __future__ import annotations

import numpy as np

from .samples import load_sample


def mirror_tile(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` (HxW[xC]) tiled with alternating flips, so neighbours meet without seams, cropped to size x size."""
    block = np.concatenate([np.concatenate([array, array[:, ::-1]], axis=1),
                            np.concatenate([array[::-1], array[::-1, ::-1]], axis=1)], axis=0)
    reps = (-(-size // block.shape[0]), -(-size // block.shape[1])) + (1,) * (array.ndim - 2)
    return np.ascontiguousarray(np.tile(block, reps)[:size, :size])


def held_out_scene(size: int) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """SIZE x SIZE uint8 image and uint8 truth from the nuclei validation strip; class names; palette (Kx3)."""
    val = load_sample("nuclei", "val")
    return (mirror_tile(val.images[0], size), mirror_tile(val.masks[0], size), list(val.classes.names),
            val.classes.palette())
