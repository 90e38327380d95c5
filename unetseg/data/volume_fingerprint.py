"""The fingerprint a volume plan is made from (nnU-Net's idea, for 3D data): the volumes' shapes, voxel spacing,
bands, dtype, intensity range (is it CT?), classes and their shares.

:func:`fingerprint_volume_folder` reads an ``images/`` + ``masks/`` pair of folders of volume files as training
would (:func:`unetseg.data.volume_folder.load_volume_folder`: every problem is one line naming the file);
:func:`fingerprint_volume_sample` a built-in sample that is a volume (``brain``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UnetsegError
from .samples import load_sample
from .volume_folder import load_volume_folder

SAMPLED_VOXELS = 1_000_000  # intensity percentiles over about this many voxels
HOUNSFIELD_AIR = -500.0  # CT stores air near -1000 HU: voxels this low in a signed image mean CT
ANISOTROPY = 3.0  # nnU-Net's rule: an axis this much coarser than the finest is anisotropic
SPREAD_SCALES = 0.25  # per-volume mean intensities varying more than this (coefficient of variation): z-score each


@dataclass
class VolumeFingerprint:
    """What a volume plan needs to know of a training set.

    Attributes:
        source: "folder" (``images_dir``/``masks_dir``) or "sample" (``sample``: its name).
        shapes: (Z, Y, X) of each volume. bands, dtype: of the volumes.
        spacing: the median (z, y, x) voxel size (the files' unit, usually mm).
        class_fractions: voxel share of each class; class_names: their names.
        low, high: per band, the 0.5th and 99.5th percentiles of the voxels; lowest: their minimum.
        volume_means: per volume, the mean of its first band (how much intensity scales differ between volumes).
    """

    source: str
    shapes: list[tuple[int, int, int]]
    spacing: tuple[float, float, float]
    bands: int
    dtype: str
    class_fractions: list[float]
    class_names: list[str]
    low: list[float]
    high: list[float]
    lowest: list[float]
    volume_means: list[float]
    sample: str | None = None
    images_dir: str | None = None
    masks_dir: str | None = None

    @property
    def volumes(self) -> int:
        return len(self.shapes)

    @property
    def num_classes(self) -> int:
        return len(self.class_fractions)

    @property
    def median_shape(self) -> tuple[int, int, int]:
        z, y, x = (int(np.median([s[a] for s in self.shapes])) for a in range(3))
        return z, y, x

    @property
    def anisotropy(self) -> float:
        """Coarsest over finest spacing (1.0: isotropic)."""
        return max(self.spacing) / min(self.spacing)

    @property
    def ct_like(self) -> bool:
        """Signed integer voxels reaching into air's Hounsfield units: a CT scan (nnU-Net normalises CT apart)."""
        return self.dtype.startswith("int") and min(self.lowest) <= HOUNSFIELD_AIR

    @property
    def scales_differ(self) -> bool:
        """The volumes' mean intensities differ by more than :data:`SPREAD_SCALES` of their mean (MRI without a
        fixed scale): each volume is best z-scored on its own."""
        means = np.asarray(self.volume_means, np.float64)
        return len(means) > 1 and float(means.std()) > SPREAD_SCALES * max(abs(float(means.mean())), 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _bands(volume: np.ndarray) -> np.ndarray:
    return volume.reshape(-1, 1) if volume.ndim == 3 else volume.reshape(-1, volume.shape[-1])


def _fingerprint(volumes: list[np.ndarray], masks: list[np.ndarray], spacings: list[tuple[float, float, float]],
                 names: list[str], ignore_index: int | None, **where: Any) -> VolumeFingerprint:
    total = sum(int(np.prod(v.shape[:3])) for v in volumes)
    step = max(1, total // SAMPLED_VOXELS)
    picked = np.concatenate([_bands(v)[::step].astype(np.float64) for v in volumes])
    low, high = np.percentile(picked, [0.5, 99.5], axis=0)
    counts = np.zeros(len(names), np.int64)
    for mask in masks:
        values = mask[mask != ignore_index] if ignore_index is not None else mask
        counts += np.bincount(values.ravel().astype(np.int64), minlength=len(names))[: len(names)]
    fractions = (counts / max(int(counts.sum()), 1)).tolist()
    z, y, x = (float(np.median([s[a] for s in spacings])) for a in range(3))
    first = volumes[0]
    return VolumeFingerprint(
        shapes=[tuple(int(n) for n in v.shape[:3]) for v in volumes], spacing=(z, y, x),  # type: ignore[misc]
        bands=1 if first.ndim == 3 else int(first.shape[3]), dtype=str(first.dtype), class_fractions=fractions,
        class_names=list(names), low=np.atleast_1d(low).tolist(), high=np.atleast_1d(high).tolist(),
        lowest=picked.min(0).tolist(), volume_means=[float(_bands(v)[::step, 0].mean()) for v in volumes], **where)


def fingerprint_volume_folder(images_dir: str | os.PathLike, masks_dir: str | os.PathLike, *,
                              ignore_index: int | None = None) -> VolumeFingerprint:
    """The fingerprint of two folders of volume files paired by stem (any format :func:`unetseg.io.open_volume`
    reads); a one-line UnetsegError naming the file at fault."""
    items, classes = load_volume_folder(images_dir, masks_dir, ignore_index=ignore_index)
    return _fingerprint([it.image for it in items], [it.mask for it in items], [it.spacing for it in items],
                        list(classes.names), ignore_index, source="folder", images_dir=str(images_dir),
                        masks_dir=str(masks_dir))


def fingerprint_volume_sample(name: str) -> VolumeFingerprint:
    """The fingerprint of a built-in sample's training volumes (its ``volume`` form, e.g. the brain's slabs)."""
    try:
        train = load_sample(name, "train", volume=True)
    except ValueError:
        raise UnetsegError(f"sample {name!r} is not a volume (the brain sample is)") from None
    spacing = tuple(float(s) for s in train.info["spacing"])
    return _fingerprint(list(train.images), list(train.masks), [spacing] * len(train.images),  # type: ignore[list-item]
                        list(train.classes.names), None, source="sample", sample=name)
