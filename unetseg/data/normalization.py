"""Input normalisation that travels with a checkpoint, so inference sees exactly what training saw.

Methods (``data.normalize``), nnU-Net's per modality among them:

- ``meanstd``: per-band mean and standard deviation of the training set's valid pixels;
- ``percentile``: the 1st/99th percentiles of the same pixels mapped onto -1..1;
- ``ct``: nnU-Net's CT normalisation: clip to the 0.5/99.5 percentiles of the training set's FOREGROUND voxels
  (mask > 0, the ignore label excluded), then z-score with the foreground mean and standard deviation;
- ``zscore``: each image (volume) by its own mean and standard deviation, at training and at prediction time
  (:meth:`Normalization.resolve`), nnU-Net's rule for MRI and other modalities without absolute units.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("meanstd", "percentile", "ct", "zscore")
CT_PERCENTILES = (0.5, 99.5)  # nnU-Net's clip range of CT intensities, over the training set's foreground
RESOLVE_SLAB = 1 << 22  # pixels read at a time when per-image statistics are taken of a lazy image

# Divisor that maps each integer dtype onto [0, 1]; floats are taken as given.
DTYPE_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def dtype_scale(dtype: np.dtype) -> float:
    """255 for uint8, 65535 for uint16, 1 for float; other integer types by their maximum."""
    dtype = np.dtype(dtype)
    if dtype in DTYPE_SCALE:
        return DTYPE_SCALE[dtype]
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


@dataclass(frozen=True)
class Normalization:
    """``(clip(image, low, high) / scale - mean) / std`` per channel.

    Attributes:
        mean, std: per-channel statistics of the scaled image (length 1 broadcasts over channels).
        scale: divisor applied first; None means "by dtype" (uint8 255, uint16 65535, float 1).
        clip: None (default), or per-channel ``(low, high)`` bounds in the units of ``mean`` (the scaled image)
            that raw values are clipped to first (``data.normalize: ct``).
        per_image: the statistics are each image's own (``data.normalize: zscore``): :meth:`resolve` replaces
            ``mean``/``std`` (placeholders 0/1 here) by the image's before any use.
    """

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float | None = None
    clip: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    per_image: bool = False

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ValueError(f"normalisation mean {self.mean} and std {self.std} differ in length")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"normalisation std must be > 0, got {self.std}")
        if self.clip is not None:
            low, high = self.clip
            if len(low) != len(high) or len(low) not in (1, len(self.mean)) or any(
                    a > b for a, b in zip(low, high, strict=True)):
                raise ValueError(f"normalisation clip {self.clip} must be per-channel (low, high) with low <= high")

    def bounds(self, dtype: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """``(low, high)``: float32 per-channel clip bounds in raw units of ``dtype``, or None without a clip."""
        if self.clip is None:
            return None
        scale = np.float32(self.scale if self.scale is not None else dtype_scale(dtype))
        return np.asarray(self.clip[0], np.float32) * scale, np.asarray(self.clip[1], np.float32) * scale

    def resolve(self, image: Any, spatial_dims: int = 2, valid: np.ndarray | None = None) -> Normalization:
        """This normalisation for ``image`` (HxW[xC], or DxHxW[xC] with ``spatial_dims=3``; numpy or lazy, read
        slab by slab): itself, or under ``per_image`` the image's own per-channel mean and standard deviation
        (``valid``: optional bool mask of the spatial shape, True = counted)."""
        if not self.per_image:
            return self
        mean, std = image_statistics(image, spatial_dims, valid, self.scale)
        return Normalization(mean=mean, std=std, scale=self.scale)

    def affine(self, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, inv)``: float32 per-channel arrays (length of ``mean``) with normalised =
        ``(float32(raw) - mean) * inv`` for raw pixels of ``dtype``. The one definition of the arithmetic: the
        host (:meth:`apply`) and the tile pipeline on any device (and inside OpenVINO's graph) compute exactly this,
        so they agree bit for bit in fp32."""
        scale = self.scale if self.scale is not None else dtype_scale(dtype)
        mean = np.asarray(self.mean, np.float32) * np.float32(scale)
        inv = np.float32(1.0) / (np.asarray(self.std, np.float32) * np.float32(scale))
        return mean, inv

    def apply(self, image: np.ndarray) -> np.ndarray:
        """HxW or HxWxC array of any numeric dtype -> C-contiguous float32 HxWxC normalised array (DxHxW[xC] alike:
        the last axis is channels when the array has one). Clipping (``clip``) happens on the float32 raw values
        first, as the tile pipeline does. A ``per_image`` normalisation must be resolved (:meth:`resolve`) first."""
        if image.ndim == 2:
            image = image[..., None]
        mean, inv = self.affine(image.dtype)
        out = image.astype(np.float32, order="C")  # C order whatever the input's: NHWC batches stay channels_last
        bounds = self.bounds(image.dtype)
        if bounds is not None:
            np.clip(out, bounds[0], bounds[1], out=out)
        out -= mean
        out *= inv
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": list(self.mean), "std": list(self.std), "scale": self.scale}
        if self.clip is not None:
            out["clip"] = [list(self.clip[0]), list(self.clip[1])]
        if self.per_image:
            out["per_image"] = True
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Normalization":
        if d is None:
            return cls()
        clip = d.get("clip")
        return cls(mean=tuple(float(v) for v in d["mean"]), std=tuple(float(v) for v in d["std"]),
                   scale=None if d.get("scale") is None else float(d["scale"]),
                   clip=None if clip is None else (tuple(float(v) for v in clip[0]), tuple(float(v) for v in clip[1])),
                   per_image=bool(d.get("per_image", False)))

    @classmethod
    def from_images(cls, images: Sequence[np.ndarray], scale: float | None = None,
                    valid: Sequence[np.ndarray | None] | None = None, method: str = "meanstd",
                    max_samples: int = 2_000_000, foreground: Sequence[np.ndarray] | None = None,
                    ignore_index: int | None = None) -> "Normalization":
        """Per-channel statistics over the valid pixels of a list of HxW[xC] images (the training set).

        Args:
            images: the images (one channel count).
            scale: divisor applied first (None: by the first image's dtype).
            valid: optional HxW bool masks (True = valid pixel, see :func:`unetseg.data.nodata.valid_mask`);
                None (or a None entry) = every pixel. Invalid pixels enter no statistic.
            method: ``"meanstd"`` (default): mean and standard deviation; ``"percentile"``: the 1st/99th
                percentiles p1, p99 stored as mean = (p1 + p99) / 2, std = (p99 - p1) / 2, so that the
                p1..p99 range maps onto -1..1.
                ``"ct"``: clip bounds the 0.5/99.5 percentiles, mean and std those of the FOREGROUND pixels
                (``foreground`` masks > 0, ``ignore_index`` excluded; statistics of the unclipped values, as
                nnU-Net's); ``"zscore"``: each image's own statistics (a ``per_image`` normalisation, resolved
                per image by :meth:`resolve`; nothing is computed here).
            max_samples: percentiles are taken over at most about this many valid pixels (a regular subsample).
            foreground: with ``"ct"``, the label maps of the images (same spatial shape).
            ignore_index: with ``"ct"``, the label of unlabelled pixels (not foreground).
        """
        if method not in METHODS:
            raise ValueError(f"normalize={method!r} is not one of {', '.join(METHODS)}")
        if method == "zscore":
            channels = 1 if images[0].ndim == 2 else images[0].shape[-1]
            return cls(mean=(0.0,) * channels, std=(1.0,) * channels, scale=scale, per_image=True)
        if method == "ct":
            if foreground is None:
                raise ValueError("normalize='ct' needs the training masks (foreground = mask > 0)")
            valid = [_foreground(m, None if valid is None else valid[i], ignore_index)
                     for i, m in enumerate(foreground)]
        first = images[0]
        scale_value = scale if scale is not None else dtype_scale(first.dtype)
        channels = 1 if first.ndim == 2 else first.shape[-1]
        flats = []
        for i, image in enumerate(images):
            flat = image.reshape(-1, channels)
            mask = None if valid is None or valid[i] is None else np.asarray(valid[i]).reshape(-1)
            flats.append(flat if mask is None or mask.all() else flat[mask])
        count = sum(len(f) for f in flats)
        if count == 0:
            raise ValueError("the training images hold no valid pixel to compute the normalisation from")
        clip = None
        if method in ("percentile", "ct"):
            step = -(-count // max_samples)  # every step-th valid pixel: at most max_samples held at once
            pixels = np.concatenate([f[::step] for f in flats]).astype(np.float64) / scale_value
            low, high = np.percentile(pixels, [1, 99] if method == "percentile" else list(CT_PERCENTILES), axis=0)
            if method == "ct":
                clip = (tuple(low.tolist()), tuple(high.tolist()))
                mean, std = pixels.mean(0), pixels.std(0)
            else:
                mean, std = (low + high) / 2, (high - low) / 2
        else:
            total = sum(f.astype(np.float64).sum(0) for f in flats) / scale_value
            total_sq = sum((f.astype(np.float64) ** 2).sum(0) for f in flats) / scale_value**2
            mean = total / count
            std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
        return cls(mean=tuple(mean.tolist()), std=tuple(np.maximum(std, 1e-6).tolist()), scale=scale, clip=clip)


def _foreground(mask: np.ndarray, valid: np.ndarray | None, ignore_index: int | None) -> np.ndarray:
    """Pixels of a label map that are foreground (> 0, not the ignore label) and valid."""
    keep = np.asarray(mask) > 0
    if ignore_index is not None:
        keep &= np.asarray(mask) != ignore_index
    return keep if valid is None else keep & np.asarray(valid)


def image_statistics(image: Any, spatial_dims: int = 2, valid: np.ndarray | None = None, scale: float | None = None
                     ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` of one image (HxW[xC] or, ``spatial_dims=3``, DxHxW[xC]; numpy or lazy: read
    about ``RESOLVE_SLAB`` pixels at a time along the first axis) after division by ``scale`` (None: by dtype);
    ``valid`` pixels only."""
    shape = tuple(int(n) for n in image.shape)
    spatial = spatial_dims
    channels = 1 if len(shape) == spatial else shape[-1]
    divisor = scale if scale is not None else dtype_scale(np.dtype(image.dtype))
    per_row = max(int(np.prod(shape[1:spatial])), 1)
    rows = max(RESOLVE_SLAB // per_row, 1)
    total, total_sq, count = np.zeros(channels), np.zeros(channels), 0
    for start in range(0, shape[0], rows):
        block = np.asarray(image[start : start + rows]).reshape(-1, channels).astype(np.float64) / divisor
        if valid is not None:
            block = block[np.asarray(valid[start : start + rows]).reshape(-1)]
        total += block.sum(0)
        total_sq += (block**2).sum(0)
        count += len(block)
    if count == 0:
        raise ValueError("the image holds no valid pixel to compute its normalisation from")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return tuple(mean.tolist()), tuple(np.maximum(std, 1e-6).tolist())

