"""The engines' contract with the tiler: what the forward stage computes for one plan (:class:`ForwardSpec`), which
input pixels are invalid (:class:`InvalidRule`) and what a batch gives back (:class:`TileOutput`, through a
:data:`Started` handle). Plain data: the tiler (:mod:`unetseg.tiling.forward`) fills it, an engine that folds the
forward stage into its own graph (:meth:`~unetseg.engines.registry.OpenVINOEngine.fused`) reads it."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.normalization import Normalization
from .tta import tta_transforms


@dataclass(frozen=True)
class InvalidRule:
    """Which input pixels are invalid: equal to ``nodata`` (None: only NaN/Inf) in ``rule`` ("any"|"all") bands."""

    nodata: float | None
    rule: str = "any"


@dataclass(frozen=True)
class ForwardSpec:
    """What the forward stage computes for one plan; fixed before any tile is read, so engines can build (and
    autotile time) exactly what will run.

    Attributes:
        dtype: the raw tiles' numpy dtype (:func:`unetseg.tiling.splitter.travel_dtype`).
        channels: image bands.
        mean, inv: float32 per-channel normalisation in raw units (normalised = (raw - mean) * inv), length 1 or C.
        low, high: float32 per-channel clip bounds in raw units applied to the raw values first (CT), or None.
        invalid: the invalid-pixel rule, None when no pixel of the image can be invalid.
        labels: only labels leave the stage (crop blending to a label map), else probabilities.
        tta: the TTA setting (:func:`unetseg.engines.tta.tta_transforms`).
        spread: append the views' mean entropy as one more channel of the probabilities (the uncertainty output).
        entropy_channel: the model returns its members' mean entropy as an extra last channel (an ensemble's
            :meth:`~unetseg.models.ensemble.Ensemble.with_expected_entropy`).
        dims: spatial axes of a tile: 2 (N x H x W x C raw tiles) or 3 (N x D x H x W x C).
    """

    dtype: np.dtype
    channels: int
    mean: tuple[float, ...]
    inv: tuple[float, ...]
    invalid: InvalidRule | None = None
    labels: bool = False
    tta: str | None = None
    spread: bool = False
    entropy_channel: bool = False
    dims: int = 2
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    @classmethod
    def of(cls, normalization: Normalization, image_dtype: Any, travel: np.dtype, channels: int, **rest: Any
           ) -> ForwardSpec:
        """The spec of tiles of an ``image_dtype`` image travelling as ``travel``, normalised by ``normalization``
        (its scale by the image's dtype, not the travel dtype)."""
        mean, inv = normalization.affine(image_dtype)
        bounds = normalization.bounds(image_dtype)
        if bounds is not None:
            rest = {**rest, "low": tuple(bounds[0].tolist()), "high": tuple(bounds[1].tolist())}
        return cls(np.dtype(travel), channels, tuple(mean.tolist()), tuple(inv.tolist()), **rest)

    @property
    def views(self) -> int:
        return len(tta_transforms(self.tta, self.dims))

    @property
    def plain(self) -> bool:
        """One view, no entropy: what an engine can fold into its own graph."""
        return self.views == 1 and not self.spread and not self.entropy_channel


@dataclass(frozen=True)
class TileOutput:
    """A batch's result on the device: ``labels`` N x H x W (when the spec wants labels) or ``probs`` N x K x H x W
    float32 (+ one channel of the views' mean entropy with ``spread``), ``invalid`` N x H x W bool (None when no
    pixel can be invalid), and the model's output channels ``classes`` (K)."""

    labels: torch.Tensor | None
    probs: torch.Tensor | None
    invalid: torch.Tensor | None
    classes: int


Started = Callable[[], TileOutput]
