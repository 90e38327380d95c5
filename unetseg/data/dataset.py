"""Training patches and validation images.

Training (the paper's scheme): random ``input_size`` crops of the training images, which are
mirror-padded by the model's ``margin`` so that targets reach the image borders; augmentation on
the input-sized crop; for valid-padding models the target (mask, weight) is the centre
``input_size - 2 * margin`` of the crop. Validation: whole images, evaluated later by tiled
inference.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from ..errors import UnetsegError
from .augment import Augmenter
from .normalization import Normalization

if TYPE_CHECKING:
    from ..config.data import AugmentConfig

__all__ = ["TrainPatches", "ValImages", "component_instances"]


@dataclass
class ValImages:
    """Whole validation images as stored (un-normalised): ``images[i]`` HxW[xC], ``masks[i]`` HxW ints; with
    instance masks, ``instances[i]`` HxW object ids (0 = none), else None; ``unscored[i]``: the HxW bool truth
    pixels their object scores leave out (a region split's cut-off slivers,
    :func:`unetseg.data.regions.minor_pieces`), or None."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    names: list[str] = field(default_factory=list)
    instances: list[np.ndarray] | None = None
    unscored: list[np.ndarray | None] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[i], self.masks[i]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return iter(zip(self.images, self.masks, strict=True))


def _pad(array: np.ndarray, before: tuple[int, int], after: tuple[int, int], fill: int | None) -> np.ndarray:
    """Pad the first two axes: mirrored (``fill`` None) or with the constant ``fill``."""
    widths = [(before[0], after[0]), (before[1], after[1])] + [(0, 0)] * (array.ndim - 2)
    if fill is None:
        return np.pad(array, widths, mode="reflect" if min(array.shape[:2]) > 1 else "edge")
    return np.pad(array, widths, mode="constant", constant_values=fill)


class TrainPatches(Dataset):
    """``patches_per_epoch`` random, augmented training crops per epoch.

    Args:
        images: HxW or HxWxC training images (uint8/uint16/float32, one channel count).
        masks: HxW integer class maps.
        weights: HxW float32 loss weights per image, or None for ones.
        input_size: crop side fed to the network (a size the model accepts).
        margin: context lost per side by the network (0 for "same" padding); targets are the
            centre ``input_size - 2 * margin`` pixels.
        normalization: applied to the augmented crop.
        augment: augmentation config (None: no augmentation).
        patches_per_epoch: dataset length.
        ignore_index: label of unlabelled pixels, used to fill mask padding (None: mirror).
        seed: base seed; item ``i`` of epoch ``e`` depends only on ``(seed, e, i)``.

    Item: ``{"image": float32 (C, input_size, input_size), "mask": int64 (t, t),
    "weight": float32 (t, t)}`` with ``t = input_size - 2 * margin``.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        weights: Sequence[np.ndarray] | None,
        *,
        input_size: int,
        margin: int,
        normalization: Normalization,
        augment: AugmentConfig | None = None,
        patches_per_epoch: int = 256,
        ignore_index: int | None = None,
        seed: int = 0,
    ) -> None:
        if not images:
            raise UnetsegError("no training images")
        if input_size - 2 * margin < 1:
            raise UnetsegError(f"input_size {input_size} leaves no output with margin {margin}")
        self.input_size, self.margin = int(input_size), int(margin)
        self.normalization = normalization
        self.patches_per_epoch = int(patches_per_epoch)
        self.ignore_index = ignore_index
        self.report: Any = None  # what data preparation found (training.datasets.DataReport), if any
        self.seed = int(seed)
        self.epoch = 0
        self.images: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        areas = []
        for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
            h, w = mask.shape
            if ignore_index is not None and ignore_index > np.iinfo(mask.dtype).max:
                mask = mask.astype(np.int32)
            weight = np.ones((h, w), np.float32) if weights is None else weights[i].astype(np.float32, copy=False)
            # Margin on every side, mirrored (real-looking context); then, for images smaller than
            # the crop, grow to the crop size with labels of the invented part set to the ignore label.
            extra_y, extra_x = max(input_size - (h + 2 * margin), 0), max(input_size - (w + 2 * margin), 0)
            lead, trail = (extra_y // 2, extra_x // 2), (extra_y - extra_y // 2, extra_x - extra_x // 2)
            pad_m = ((margin, margin), (margin, margin))
            image = _pad(_pad(image, *pad_m, None), lead, trail, None)
            m = _pad(_pad(mask, *pad_m, None), lead, trail, ignore_index)
            wt = _pad(_pad(weight, *pad_m, None), lead, trail, None if ignore_index is None else 0)
            self.images.append(image)
            self.masks.append(m)
            self.weights.append(wt)
            areas.append(h * w)
        self.probabilities = np.asarray(areas, np.float64) / float(sum(areas))
        low, high = _channel_range(images)
        self.augmenter = None if augment is None else Augmenter(augment, ignore_index=ignore_index,
                                                                value_range=(low, high))

    def __len__(self) -> int:
        return self.patches_per_epoch

    @property
    def output_size(self) -> int:
        """Side of the target crops: ``input_size - 2 * margin``."""
        return self.input_size - 2 * self.margin

    def set_epoch(self, epoch: int) -> None:
        """Select the crops and augmentations of ``epoch`` (call before each epoch, in every worker's copy)."""
        self.epoch = int(epoch)

    def sample(self, index: int, epoch: int | None = None) -> dict[str, np.ndarray]:
        """The numpy crop of item ``index``: image (S, S[, C]) input dtype, mask (t, t), weight (t, t) float32."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch, int(index)])
        k = int(rng.choice(len(self.images), p=self.probabilities))
        image, mask, weight = self.images[k], self.masks[k], self.weights[k]
        s = self.input_size
        y = int(rng.integers(0, image.shape[0] - s + 1))
        x = int(rng.integers(0, image.shape[1] - s + 1))
        crop = {"image": image[y : y + s, x : x + s], "mask": mask[y : y + s, x : x + s],
                "weight": weight[y : y + s, x : x + s]}
        if self.augmenter is not None:
            crop = self.augmenter(crop["image"], crop["mask"], weight=crop["weight"],
                                  seed=int(rng.integers(0, 2**63 - 1)))
        m, t = self.margin, self.output_size
        target_mask = crop["mask"][m : m + t, m : m + t]
        target_weight = crop["weight"][m : m + t, m : m + t]
        if self.ignore_index is not None:
            target_weight = np.where(target_mask == self.ignore_index, np.float32(0), target_weight)
        return {"image": crop["image"], "mask": target_mask, "weight": target_weight.astype(np.float32, copy=False),
                "source": k}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        crop = self.sample(index)
        image = self.normalization.apply(crop["image"])  # float32 HxWxC
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "mask": torch.from_numpy(np.ascontiguousarray(crop["mask"]).astype(np.int64)),
            "weight": torch.from_numpy(np.ascontiguousarray(crop["weight"])),
            "source": torch.tensor(crop["source"]),  # index of the training image the crop came from
        }


def _channel_range(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (min, max) over the images, so photometric augmentation sees the data's range."""
    lows = [img.reshape(img.shape[0], img.shape[1], -1).min(axis=(0, 1)) for img in images]
    highs = [img.reshape(img.shape[0], img.shape[1], -1).max(axis=(0, 1)) for img in images]
    low = np.min(lows, axis=0).astype(np.float32)
    high = np.max(highs, axis=0).astype(np.float32)
    return low, np.where(high > low, high, low + 1)


def component_instances(mask: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """HxW int32 instance ids: the 4-connected components of every class except 0 (background)
    and ``ignore_index``, numbered consecutively from 1."""
    instances = np.zeros(mask.shape, np.int32)
    count = 0
    for c in np.unique(mask).tolist():
        if c == 0 or c == ignore_index:
            continue
        labels, n = ndimage.label(mask == c)
        instances[labels > 0] = labels[labels > 0] + count
        count += n
    return instances
