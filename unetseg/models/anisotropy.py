"""Per-axis pooling and kernel sizes of a 3D network from the voxel spacing (nnU-Net's rule).

A CT or confocal stack is often 3-5x coarser along z than in-plane. Pooling z as often as y and x would make
the bottleneck's voxels very flat, and a 3-voxel kernel along z would reach far further (in mm) than in-plane.
So, level by level: an axis whose current spacing is at most :data:`COARSE_RATIO` times the finest current
spacing is *fine*: it gets 3-voxel kernels and is pooled by 2 (its spacing doubles); a coarser axis gets
1-voxel kernels and is not pooled, until the others have caught up. Isotropic data pool every axis at every level.
"""
from __future__ import annotations

from collections.abc import Sequence

COARSE_RATIO = 2.0


def pooling_plan(spacing: Sequence[float], depth: int) -> tuple[list[list[int]], list[list[int]]]:
    """``(pooling, kernels)`` for a network of ``depth`` poolings over voxels of ``spacing`` (one per axis, any
    unit, axis order of the array).

    Returns:
        pooling: ``depth`` lists of per-axis factors (1 or 2).
        kernels: ``depth + 1`` lists of per-axis kernel sizes (1 or 3): each level's, then the bottleneck's.
    """
    current = [float(s) for s in spacing]
    if not current or min(current) <= 0:
        raise ValueError(f"spacing={tuple(spacing)} must be positive numbers, one per axis")
    pooling, kernels = [], []
    for _ in range(depth):
        fine = [s <= COARSE_RATIO * min(current) for s in current]
        kernels.append([3 if f else 1 for f in fine])
        pooling.append([2 if f else 1 for f in fine])
        current = [s * 2 if f else s for s, f in zip(current, fine, strict=True)]
    kernels.append([3 if s <= COARSE_RATIO * min(current) else 1 for s in current])
    return pooling, kernels
