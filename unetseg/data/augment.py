"""Training augmentation: albumentations pipelines built from :class:`AugmentConfig`.

Photometric transforms run first (on the unwarped image), then the geometric ones: D4 flips /
rotations, ``A.Affine`` (scale, rotate, shift) and the paper's elastic deformation
(:class:`PaperElasticDeform`). Images may be uint8, uint16 or float32 with any number of
channels; masks (class ids, instance ids, weight maps) always use nearest interpolation, so they
stay integer-valued. Where a geometric transform pads, the image is mirrored; the masks are
filled with the ignore label when there is one (so the loss skips invented pixels), else mirrored.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import albumentations as A  # unetseg/__init__ sets NO_ALBUMENTATIONS_UPDATE first: no network call
import cv2
import numpy as np
from albumentations.core.transforms_interface import BaseTransformInitSchema
from pydantic import Field

from .normalization import dtype_scale

if TYPE_CHECKING:
    from ..config.data import AugmentConfig

__all__ = ["Augmenter", "PaperElasticDeform", "build_augmentation", "remap_channels"]

_REFLECT = cv2.BORDER_REFLECT_101
_CV_CHANNELS = 4  # cv2.remap / warpAffine take at most 4 channels at once


def remap_channels(
    array: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, interpolation: int, border_mode: int, fill: float = 0
) -> np.ndarray:
    """``cv2.remap`` for HxW or HxWxC arrays with any number of channels (groups of 4 for cv2)."""
    def one(a: np.ndarray) -> np.ndarray:
        return cv2.remap(a, map_x, map_y, interpolation, borderMode=border_mode, borderValue=fill)

    if array.ndim == 2 or array.shape[2] <= _CV_CHANNELS:
        out = one(np.ascontiguousarray(array))
        return out[..., None] if array.ndim == 3 and out.ndim == 2 else out
    parts = [one(np.ascontiguousarray(array[..., c : c + _CV_CHANNELS])) for c in range(0, array.shape[2], _CV_CHANNELS)]
    return np.concatenate([p[..., None] if p.ndim == 2 else p for p in parts], axis=2)


class PaperElasticDeform(A.DualTransform):
    """Elastic deformation of the U-Net paper: smooth displacements from a coarse random grid.

    Displacement vectors on a ``grid`` x ``grid`` grid are drawn from N(0, ``sigma`` px) and
    upsampled to per-pixel displacements by bicubic interpolation (``cv2.resize(INTER_CUBIC)``).
    (``A.ElasticTransform`` instead smooths a dense random field with a gaussian, a different
    distribution of deformations.) The image is resampled bicubically with mirrored borders;
    masks with nearest neighbours, their out-of-image pixels set to ``mask_fill`` (e.g. the ignore
    label) or mirrored when ``mask_fill`` is None.

    Args:
        sigma: standard deviation of the grid displacements in pixels (paper: 10).
        grid: grid points per side (paper: 3).
        mask_fill: value for mask pixels pulled from outside the image; None = mirror.
        p: probability of applying the transform.
    """

    class InitSchema(BaseTransformInitSchema):
        sigma: float = Field(ge=0)
        grid: int = Field(ge=2)
        mask_fill: float | None

    def __init__(self, sigma: float = 10.0, grid: int = 3, mask_fill: float | None = None, p: float = 0.5):
        super().__init__(p=p)
        self.sigma = sigma
        self.grid = grid
        self.mask_fill = mask_fill

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        coarse = self.random_generator.normal(0.0, self.sigma, size=(self.grid, self.grid, 2)).astype(np.float32)
        dense = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
        return {"map_x": xs + dense[..., 0], "map_y": ys + dense[..., 1]}

    def apply(self, img: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, **params: Any) -> np.ndarray:
        return remap_channels(img, map_x, map_y, cv2.INTER_CUBIC, _REFLECT)

    def apply_to_mask(self, mask: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, **params: Any) -> np.ndarray:
        if self.mask_fill is None:
            return remap_channels(mask, map_x, map_y, cv2.INTER_NEAREST, _REFLECT)
        return remap_channels(mask, map_x, map_y, cv2.INTER_NEAREST, cv2.BORDER_CONSTANT, self.mask_fill)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("sigma", "grid", "mask_fill")


class _Affine(A.Affine):
    """``A.Affine`` that mirrors the image but fills mask padding with a constant (the ignore label).

    A.Affine has one ``border_mode`` for image and mask; a mirrored image with an ignore-filled mask
    keeps realistic context for the network while the loss skips the invented labels.
    """

    def apply_to_mask(self, mask: np.ndarray, matrix: np.ndarray, output_shape: tuple[int, int],
                      **params: Any) -> np.ndarray:
        size = (int(output_shape[1]), int(output_shape[0]))
        return cv2.warpAffine(mask, np.asarray(matrix, np.float64)[:2], size, flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=self.fill_mask)


def build_augmentation(cfg: AugmentConfig, *, ignore_index: int | None = None) -> A.Compose:
    """The albumentations pipeline described by ``cfg``.

    Call it as ``pipeline(image=HxW[xC], mask=HxW, weight=HxW, instances=HxW)`` (``weight`` and
    ``instances`` optional; all masks use nearest interpolation). Photometric transforms assume
    images scaled to [0, 1] when float (:class:`Augmenter` does this). ``ignore_index`` fills
    mask padding of Affine/elastic; None mirrors masks like the image.
    """
    photometric: list[A.BasicTransform] = []
    geometric: list[A.BasicTransform] = []
    bc = cfg.brightness_contrast
    if bc.enabled:
        # brightness_by_max=False: shift relative to the image mean, not the dtype maximum (a 12-bit
        # image in uint16 would otherwise be shifted by up to 20% of 65535).
        photometric.append(A.RandomBrightnessContrast(brightness_limit=bc.brightness, contrast_limit=bc.contrast,
                                                      brightness_by_max=False, p=bc.p))
    if cfg.gamma.enabled:
        photometric.append(A.RandomGamma(gamma_limit=(100 * cfg.gamma.low, 100 * cfg.gamma.high), p=cfg.gamma.p))
    if cfg.flips.enabled and cfg.rot90.enabled:
        geometric.append(A.D4(p=1.0))  # uniform over the 8 flips/right-angle rotations
    elif cfg.flips.enabled:
        geometric += [A.HorizontalFlip(p=cfg.flips.p), A.VerticalFlip(p=cfg.flips.p)]
    elif cfg.rot90.enabled:
        geometric.append(A.RandomRotate90(p=cfg.rot90.p))
    af = cfg.affine
    if af.enabled:
        kwargs = dict(scale=(1 - af.scale, 1 + af.scale), rotate=(-af.rotate, af.rotate),
                      translate_percent=(-af.shift, af.shift), interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=cv2.INTER_NEAREST, p=af.p)
        if ignore_index is None:
            geometric.append(A.Affine(border_mode=_REFLECT, **kwargs))
        else:
            geometric.append(_Affine(border_mode=_REFLECT, fill_mask=float(ignore_index), **kwargs))
    el = cfg.elastic
    if el.enabled:
        geometric.append(PaperElasticDeform(sigma=el.sigma, grid=el.grid,
                                            mask_fill=None if ignore_index is None else float(ignore_index), p=el.p))
    return A.Compose(photometric + geometric, additional_targets={"weight": "mask", "instances": "mask"})


def seed_pipeline(pipeline: A.Compose, seed: int | Sequence[int]) -> None:
    """Give the pipeline and each of its transforms its own seed derived from ``seed``.

    ``A.Compose.set_random_seed`` hands every transform the same seed, which makes transforms with
    equal ``p`` fire together (both flips at once, or neither); distinct child seeds avoid that.
    """
    seq = np.random.SeedSequence(seed)
    states = seq.generate_state(len(pipeline.transforms) + 1)
    pipeline.set_random_seed(int(states[0]))
    for transform, state in zip(pipeline.transforms, states[1:], strict=True):
        transform.set_random_seed(int(state))


class Augmenter:
    """Applies a :func:`build_augmentation` pipeline to images of any dtype and channel count.

    Integer images are scaled to float32 [0, 1] by their dtype maximum (or by ``value_range``,
    per channel ``(low, high)``), augmented, and returned in the input dtype (rounded, clipped).
    Float images are scaled by ``value_range`` when given, else taken to be in [0, 1] already.

    ``augmenter(image, mask, seed=..., weight=..., instances=...)`` -> dict with the same keys.
    """

    def __init__(self, cfg: AugmentConfig, *, ignore_index: int | None = None,
                 value_range: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.pipeline = build_augmentation(cfg, ignore_index=ignore_index)
        self.value_range = value_range

    def __call__(self, image: np.ndarray, mask: np.ndarray, *, seed: int | Sequence[int] | None = None,
                 **extra_masks: np.ndarray) -> dict[str, np.ndarray]:
        if seed is not None:
            seed_pipeline(self.pipeline, seed)
        dtype = image.dtype
        if self.value_range is not None:
            low = np.asarray(self.value_range[0], np.float32)
            span = np.maximum(np.asarray(self.value_range[1], np.float32) - low, 1e-12)
        else:
            low, span = np.float32(0.0), np.float32(dtype_scale(dtype))
        unit = (image.astype(np.float32) - low) / span
        out = self.pipeline(image=unit, mask=mask, **extra_masks)
        result = out["image"] * span + low
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            result = np.clip(np.rint(result), info.min, info.max)
        out["image"] = result.astype(dtype, copy=False)
        return out
