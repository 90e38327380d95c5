"""Geometric augmentation of volumes: the grid-based elastic deformation in 3D, and which axes may be flipped or
turned for a voxel spacing.

The elastic deformation is the U-Net paper's (random displacements on a coarse grid, smoothly upsampled), in three
dimensions as in the 3D U-Net paper (Çiçek et al. 2016): a ``grid`` ^ 3 grid of N(0, sigma) displacements per axis,
upsampled cubically to every voxel (``scipy.ndimage.zoom``), then the volume resampled at the displaced positions by
``scipy.ndimage.map_coordinates`` (order 1 for images, 0 for labels and weights, mirrored borders). The strength is
in voxels of the finest axis; each axis's displacement is scaled by finest spacing / its spacing, so the
deformation is equally strong in physical units on every axis (a coarse z moves less, in voxels).

scipy (already a dependency) rather than a package: ``elasticdeform`` (the same grid method) adds a compiled
dependency with one sigma for all axes, torchio and volumentations are heavy or unmaintained.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["ANISOTROPY_LIMIT", "deform", "elastic_coordinates", "isotropic", "rotation_planes"]

ANISOTROPY_LIMIT = 3.0  # nnU-Net's rule: an axis more than ~3x coarser than the finest is anisotropic


def isotropic(spacing: Sequence[float]) -> bool:
    """Whether voxels of ``spacing`` (z, y, x) are isotropic enough for through-plane flips and turns:
    max / min spacing < :data:`ANISOTROPY_LIMIT`."""
    return max(spacing) < ANISOTROPY_LIMIT * min(spacing)


def rotation_planes(shape: Sequence[int], margins: Sequence[int], spacing: Sequence[float]) -> list[tuple[int, int]]:
    """The axis pairs a (d, h, w) crop with ``margins`` may be turned in by quarter turns: in-plane (1, 2) always,
    through-plane (0, 1) and (0, 2) only for :func:`isotropic` spacing; each only where the crop and its margins
    are the same on both axes (a turn keeps the crop's shape)."""
    planes = [(1, 2)] + ([(0, 1), (0, 2)] if isotropic(spacing) else [])
    return [(a, b) for a, b in planes if shape[a] == shape[b] and margins[a] == margins[b]]


def elastic_coordinates(shape: Sequence[int], rng: np.random.Generator, *, sigma: float, grid: int = 3,
                        spacing: Sequence[float] = (1.0, 1.0, 1.0),
                        axes: Sequence[int] | None = None) -> np.ndarray:
    """Sampling positions of a random elastic deformation of a ``shape`` (d, h, w) volume.

    Args:
        shape: the volume's spatial shape (3 axes).
        rng: the random generator (the deformation depends only on its state).
        sigma: standard deviation of the grid displacements in voxels of the finest axis (0: the identity).
        grid: grid points per axis (>= 2).
        spacing: voxel size (z, y, x); axis ``a``'s displacements are scaled by ``min(spacing) / spacing[a]``.
        axes: the axes displaced (default all); the others keep their positions (the same draws are made).

    Returns:
        float32 (3, d, h, w): for each output voxel, the input position it takes its value from.
    """
    shape = tuple(int(n) for n in shape)
    finest = min(spacing)
    # cubic spline upsampling is separable: one (n, grid) matrix per axis (ndimage.zoom of each unit vector)
    upsample = [np.stack([ndimage.zoom(unit, n / grid, order=3, mode="nearest", grid_mode=True)[:n]
                          for unit in np.eye(grid)], axis=1) for n in shape]
    positions = np.indices(shape, dtype=np.float32)
    for axis in range(len(shape)):
        coarse = rng.normal(0.0, sigma * finest / spacing[axis], size=(grid,) * len(shape))
        if axes is not None and axis not in axes:
            continue
        dense = np.einsum("ia,jb,kc,abc->ijk", *upsample, coarse, optimize=True)
        positions[axis] += dense.astype(np.float32)
    return positions


def deform(array: np.ndarray, coordinates: np.ndarray, order: int) -> np.ndarray:
    """``array`` (d, h, w) or (d, h, w, C) resampled at ``coordinates`` (:func:`elastic_coordinates`) with
    spline ``order`` (1 for images, 0 for labels and weights: values stay those of the input), mirrored borders;
    same dtype and shape as ``array``."""
    if array.ndim == 3:
        return ndimage.map_coordinates(array, coordinates, order=order, mode="mirror", output=array.dtype)
    return np.stack([deform(array[..., c], coordinates, order) for c in range(array.shape[-1])], axis=-1)
