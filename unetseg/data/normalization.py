"""Input normalisation that travels with a checkpoint, so inference sees exactly what training saw."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    """``(image / scale - mean) / std`` per channel.

    Attributes:
        mean, std: per-channel statistics of the scaled image (length 1 broadcasts over channels).
        scale: divisor applied first; None means "by dtype" (uint8 255, uint16 65535, float 1).
    """

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float | None = None

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ValueError(f"normalisation mean {self.mean} and std {self.std} differ in length")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"normalisation std must be > 0, got {self.std}")

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
        """HxW or HxWxC array of any numeric dtype -> C-contiguous float32 HxWxC normalised array."""
        if image.ndim == 2:
            image = image[..., None]
        mean, inv = self.affine(image.dtype)
        out = image.astype(np.float32, order="C")  # C order whatever the input's: NHWC batches stay channels_last
        out -= mean
        out *= inv
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Normalization":
        if d is None:
            return cls()
        return cls(mean=tuple(float(v) for v in d["mean"]), std=tuple(float(v) for v in d["std"]),
                   scale=None if d.get("scale") is None else float(d["scale"]))

    @classmethod
    def from_images(cls, images: Sequence[np.ndarray], scale: float | None = None,
                    valid: Sequence[np.ndarray | None] | None = None, method: str = "meanstd",
                    max_samples: int = 2_000_000) -> "Normalization":
        """Per-channel statistics over the valid pixels of a list of HxW[xC] images (the training set).

        Args:
            images: the images (one channel count).
            scale: divisor applied first (None: by the first image's dtype).
            valid: optional HxW bool masks (True = valid pixel, see :func:`unetseg.data.nodata.valid_mask`);
                None (or a None entry) = every pixel. Invalid pixels enter no statistic.
            method: ``"meanstd"`` (default): mean and standard deviation; ``"percentile"``: the 1st/99th
                percentiles p1, p99 stored as mean = (p1 + p99) / 2, std = (p99 - p1) / 2, so that the
                p1..p99 range maps onto -1..1.
            max_samples: percentiles are taken over at most about this many valid pixels (a regular subsample).
        """
        if method not in ("meanstd", "percentile"):
            raise ValueError(f"normalize={method!r} is not 'meanstd' or 'percentile'")
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
        if method == "percentile":
            step = -(-count // max_samples)  # every step-th valid pixel: at most max_samples held at once
            pixels = np.concatenate([f[::step] for f in flats]).astype(np.float64) / scale_value
            low, high = np.percentile(pixels, [1, 99], axis=0)
            mean, std = (low + high) / 2, (high - low) / 2
        else:
            total = sum(f.astype(np.float64).sum(0) for f in flats) / scale_value
            total_sq = sum((f.astype(np.float64) ** 2).sum(0) for f in flats) / scale_value**2
            mean = total / count
            std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
        return cls(mean=tuple(mean.tolist()), std=tuple(np.maximum(std, 1e-6).tolist()), scale=scale)
