"""k-fold cross-validation splits: which items (files, or region blocks of few images) validate each fold.

Folds partition the items: every item validates exactly one fold and trains the others, and fold sizes differ by
at most one. Files are dealt round-robin from a seeded permutation. Region blocks (one or a few images, cut into
the plan's ``REGION_GRID x REGION_GRID`` grid, ``data.split_grid``) are grouped along a Hilbert curve through each
image's grid, so that a fold validates a compact area (4 folds of a 4 x 4 grid: its quadrants) rather than
scattered blocks: the training labels within the model's context of a validation block are ignored
(:mod:`unetseg.data.regions`), and scattered blocks would ignore most of them.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import UnetsegError

FEW_IMAGES = 5  # with fewer images, folds are region folds (the plan's rule: unetseg.training.plan.FILE_SPLIT_IMAGES)


def fold_assignment(n: int, k: int, seed: int = 0) -> np.ndarray:
    """The fold (0..k-1) of each of ``n`` items, int64 (n,); a one-line error when ``n < k``."""
    _enough(n, k)
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, np.int64)
    out[order] = np.arange(n) % k
    return out


def _enough(n: int, k: int) -> None:
    if n < k:
        raise UnetsegError(f"{k} folds need at least {k} items to validate on, the data has {n}; use fewer folds "
                           "or a finer data.split_grid")


def fold_mode(images: int, k: int) -> str:
    """"files" when there are at least ``k`` images to validate on and at least :data:`FEW_IMAGES` (the number the
    plan splits by files from), else "regions" (blocks of each image)."""
    return "files" if images >= max(k, FEW_IMAGES) else "regions"


def hilbert_order(rows: int, cols: int) -> list[tuple[int, int]]:
    """The cells ``(row, col)`` of a ``rows x cols`` grid in the order of a Hilbert curve through the smallest
    power-of-two square that holds it (cells outside the grid skipped): consecutive cells are mostly neighbours."""
    side = 1
    while side < max(rows, cols):
        side *= 2
    cells = []
    for d in range(side * side):
        x = y = 0
        s, t = 1, d
        while s < side:
            rx = 1 & (t // 2)
            ry = 1 & (t ^ rx)
            if ry == 0:
                if rx == 1:
                    x, y = s - 1 - x, s - 1 - y
                x, y = y, x
            x, y, t, s = x + s * rx, y + s * ry, t // 4, s * 2
        if y < rows and x < cols:
            cells.append((y, x))
    return cells


def block_fold_assignment(blocks: Sequence[tuple[int, int, int]], k: int) -> np.ndarray:
    """The fold (0..k-1) of each region block ``(image, row, col)``, int64 (n,): the blocks in the order of
    :func:`hilbert_order` through each image's grid, image after image, cut into ``k`` runs whose sizes differ by
    at most one (no seed: the grid decides). A one-line error when there are fewer blocks than folds."""
    n = len(blocks)
    _enough(n, k)
    grids: dict[int, tuple[int, int]] = {}
    for image, row, col in blocks:
        r, c = grids.get(image, (0, 0))
        grids[image] = (max(r, row + 1), max(c, col + 1))
    rank: dict[tuple[int, int, int], int] = {}
    for image in sorted(grids):
        for row, col in hilbert_order(*grids[image]):
            rank[(image, row, col)] = len(rank)
    position = np.empty(n, np.int64)
    position[np.argsort([rank[(b[0], b[1], b[2])] for b in blocks], kind="stable")] = np.arange(n)
    return position * k // n
