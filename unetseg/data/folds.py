"""k-fold cross-validation splits: which items (files, or region blocks of few images) validate each fold.

Folds partition the items: every item validates exactly one fold and trains the others. A seeded permutation is
dealt round-robin, so fold sizes differ by at most one.
"""
from __future__ import annotations

import numpy as np

from ..errors import UnetsegError


def fold_assignment(n: int, k: int, seed: int = 0) -> np.ndarray:
    """The fold (0..k-1) of each of ``n`` items, int64 (n,); a one-line error when ``n < k``."""
    if n < k:
        raise UnetsegError(f"{k} folds need at least {k} items to validate on, the data has {n}; use fewer folds "
                           "or a finer data.split_grid")
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, np.int64)
    out[order] = np.arange(n) % k
    return out


def fold_mode(images: int, k: int) -> str:
    """"files" when there are at least ``k`` images to validate on, else "regions" (blocks of each image)."""
    return "files" if images >= k else "regions"
