"""Training patches of volumes for 3D models: random (d, h, w) crops of (Z, Y, X[, C]) volumes, mirror-padded by
the model's margin per axis (the 2D scheme of :class:`unetseg.data.dataset.TrainPatches`, on three axes), with
augmentation that keeps the voxel grid's meaning: flips of the in-plane axes (and of z where the spacing is nearly
isotropic, :func:`unetseg.data.augment3d.isotropic`), quarter turns in-plane where the crop is square there (and
through-plane for isotropic spacing), the 3D elastic deformation (:mod:`unetseg.data.augment3d`), and intensity
scale, shift and gamma.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UnetsegError
from .augment3d import deform, elastic_coordinates, isotropic, rotation_planes
from .normalization import Normalization

if TYPE_CHECKING:
    from ..config.data import AugmentConfig


def volume_bands(volume: np.ndarray) -> np.ndarray:
    """A (Z, Y, X[, C]) volume as an (N, X[, C]) image for per-band statistics: one band, or C."""
    return volume.reshape(volume.shape[0] * volume.shape[1], *volume.shape[2:])


class VolumePatches(Dataset):
    """``patches_per_epoch`` random, augmented 3D training crops per epoch.

    Args:
        volumes: (Z, Y, X) or (Z, Y, X, C) training volumes (one channel count).
        masks: (Z, Y, X) integer class maps.
        weights: per-voxel float32 loss weights per volume, or None for ones.
        input_shape: crop (d, h, w) fed to the network (sizes the model accepts per axis).
        margins: context the network loses per side, per axis (0 for "same" padding); targets are the centre
            ``input_shape - 2 * margins``.
        normalization: applied to each crop before augmentation (a ``per_image`` one resolved on each volume).
        spacing: voxel size (z, y, x): z is flipped and turned too when it is nearly isotropic; the elastic
            deformation's strength per axis follows it.
        augment: which augmentations run (flips, rot90, elastic, brightness_contrast and gamma with their ``p``;
            affine acts on 2D images only), or None: none.
        patches_per_epoch: dataset length.
        ignore_index: label of unlabelled voxels, used for the padding that grows a volume smaller than a crop.
        seed: base seed; item ``i`` of epoch ``e`` depends only on ``(seed, e, i)``.

    Item: ``{"image": float32 (C, d, h, w), "mask": int64 target shape, "weight": float32 target shape,
    "source": the volume's index}``.
    """

    def __init__(self, volumes: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                 weights: Sequence[np.ndarray] | None, *, input_shape: tuple[int, int, int],
                 margins: tuple[int, int, int], normalization: Normalization,
                 spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), augment: AugmentConfig | None = None,
                 patches_per_epoch: int = 64, ignore_index: int | None = None, seed: int = 0) -> None:
        if not volumes:
            raise UnetsegError("no training volumes")
        self.input_shape = tuple(int(n) for n in input_shape)
        self.margins = tuple(int(m) for m in margins)
        self.output_shape = tuple(n - 2 * m for n, m in zip(self.input_shape, self.margins, strict=True))
        if min(self.output_shape) < 1:
            raise UnetsegError(f"input shape {self.input_shape} leaves no output with margins {self.margins}")
        self.input_size = self.input_shape[-1]  # the in-plane side, as 2D runs record it
        self.normalization, self.augment = normalization, augment
        self.spacing = tuple(float(v) for v in spacing)
        self.flip_axes = tuple(a for a in ((0, 1, 2) if isotropic(self.spacing) else (1, 2))
                               if self.input_shape[a] > 1)  # a single slice flipped is itself (with negative strides)
        self.rotation_planes = rotation_planes(self.input_shape, self.margins, self.spacing)
        # no elastic displacement along an axis with one target voxel: a 2.5D stack's slices are the centre slice's
        # context (displacing them by sigma voxels shuffles them), and a single slice has nothing to displace
        self.elastic_axes = tuple(a for a in range(3) if self.output_shape[a] > 1)
        self.normalizations = [normalization.resolve(v, 3) for v in volumes]
        self.patches_per_epoch, self.ignore_index, self.seed = int(patches_per_epoch), ignore_index, int(seed)
        self.report: Any = None
        self.epoch = 0
        self.volumes, self.masks, self.weights = [], [], []
        sizes = []
        for i, (volume, mask) in enumerate(zip(volumes, masks, strict=True)):
            if volume.shape[:3] != mask.shape:
                raise UnetsegError(f"training volume {i}: image {volume.shape[:3]} and mask {mask.shape} differ")
            weight = np.ones(mask.shape, np.float32) if weights is None else weights[i].astype(np.float32)
            mirror, grow = [], []
            for n, size, margin in zip(mask.shape, self.input_shape, self.margins, strict=True):
                mirror.append((margin, margin))
                extra = max(size - (n + 2 * margin), 0)
                grow.append((extra // 2, extra - extra // 2))
            self.volumes.append(_pad(_pad(volume, mirror, None), grow, None))
            self.masks.append(_pad(_pad(mask, mirror, None), grow, ignore_index))
            self.weights.append(_pad(_pad(weight, mirror, None), grow, None if ignore_index is None else 0))
            sizes.append(mask.size)
        self.probabilities = np.asarray(sizes, np.float64) / float(sum(sizes))

    def __len__(self) -> int:
        return self.patches_per_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def sample(self, index: int, epoch: int | None = None) -> dict[str, Any]:
        """The numpy crop of item ``index``: image (d, h, w[, C]) float32 normalised and augmented, mask and
        weight of the target shape."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch), int(index)])
        k = int(rng.choice(len(self.volumes), p=self.probabilities))
        volume, mask, weight = self.volumes[k], self.masks[k], self.weights[k]
        starts = [int(rng.integers(0, n - s + 1)) for n, s in zip(mask.shape, self.input_shape, strict=True)]
        box = tuple(slice(a, a + s) for a, s in zip(starts, self.input_shape, strict=True))
        block = np.asarray(volume[box])
        image = self.normalizations[k].apply(block[..., None] if block.ndim == 3 else block)  # float32 (d, h, w, C)
        mask, weight = mask[box], weight[box]
        if self.augment is not None:
            image, mask, weight = self._augmented(rng, image, mask, weight)
        target = tuple(slice(m, m + t) for m, t in zip(self.margins, self.output_shape, strict=True))
        mask, weight = mask[target], weight[target]
        if self.ignore_index is not None:
            weight = np.where(mask == self.ignore_index, np.float32(0), weight)
        return {"image": image, "mask": mask, "weight": weight.astype(np.float32, copy=False), "source": k}

    def _augmented(self, rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, weight: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.augment
        assert cfg is not None
        if cfg.flips.enabled:
            for axis in self.flip_axes:
                if rng.random() < cfg.flips.p:
                    image, mask, weight = (np.flip(a, axis) for a in (image, mask, weight))
        if cfg.rot90.enabled and self.rotation_planes and rng.random() < cfg.rot90.p:
            plane = self.rotation_planes[int(rng.integers(len(self.rotation_planes)))]
            turns = int(rng.integers(1, 4))
            image, mask, weight = (np.rot90(a, turns, axes=plane) for a in (image, mask, weight))
        el = cfg.elastic
        if el.enabled and el.sigma > 0 and rng.random() < el.p:
            where = elastic_coordinates(mask.shape, rng, sigma=el.sigma, grid=el.grid, spacing=self.spacing,
                                        axes=self.elastic_axes)
            image = deform(np.ascontiguousarray(image), where, 1)
            mask, weight = deform(np.ascontiguousarray(mask), where, 0), deform(np.ascontiguousarray(weight), where, 0)
        bc = cfg.brightness_contrast
        if bc.enabled and rng.random() < bc.p:  # in normalised units: one standard deviation is 1
            image = (image * np.float32(1 + rng.uniform(-bc.contrast, bc.contrast))
                     + np.float32(rng.uniform(-bc.brightness, bc.brightness) * 4))
        gamma = cfg.gamma
        if gamma.enabled and rng.random() < gamma.p:  # on the crop's own range
            low, high = float(image.min()), float(image.max())
            if high > low:
                unit = (image - low) / (high - low)
                image = (unit ** np.float32(rng.uniform(gamma.low, gamma.high))) * (high - low) + low
        return image.astype(np.float32, copy=False), mask, weight

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        crop = self.sample(index)
        image = np.moveaxis(crop["image"], -1, 0)
        return {"image": torch.from_numpy(np.ascontiguousarray(image)),
                "mask": torch.from_numpy(np.ascontiguousarray(crop["mask"]).astype(np.int64)),
                "weight": torch.from_numpy(np.ascontiguousarray(crop["weight"])),
                "source": torch.tensor(crop["source"])}


def _pad(array: np.ndarray, widths: list[tuple[int, int]], fill: int | None) -> np.ndarray:
    """Pad the three spatial axes: mirrored (``fill`` None) or with the constant ``fill``."""
    if not any(a or b for a, b in widths):
        return array
    pads = widths + [(0, 0)] * (array.ndim - 3)
    if fill is None:
        return np.pad(array, pads, mode="reflect" if min(array.shape[:3]) > 1 else "edge")
    return np.pad(array, pads, mode="constant", constant_values=fill)
