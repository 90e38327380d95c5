"""How the maps of one image are drawn: palette, nodata label, preview bands, stretch, transparent classes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.nodata import valid_mask
from ..engines.contract import InvalidRule
from ..io.display import overlay, preview_bands, stretch_limits
from ..io.source import ImageSource
from ..models.base import SegmentationModel
from ..tiling.plan import TilePlan, image_channels

STRETCH_WINDOW = 2048  # overlays take their stretch from the central window of this side


@dataclass(frozen=True)
class MapStyle:
    """The nodata label (None: no pixel can be invalid), the palette (padded to 256 with black so the nodata
    label shows black), preview bands and stretch limits (None: no overlay is drawn), transparent classes,
    and the invalid-pixel rule overlays draw black."""

    nodata: int | None
    palette: np.ndarray
    bands: list[int] | None
    limits: tuple[np.ndarray, np.ndarray] | None
    transparent: tuple[int, ...]
    rule: InvalidRule | None

    @classmethod
    def of(cls, model: SegmentationModel, source: ImageSource, plan: TilePlan, bands: list[int] | None = None,
           overlays: bool = False) -> MapStyle:
        """The style of ``source`` predicted by ``plan``; ``bands``: preview bands (default the checkpoint's
        ``display_bands``); the stretch (read from the central window) only when ``overlays`` are drawn."""
        rule = plan.invalid
        label = None if rule is None else plan.nodata_label
        k = model.num_classes
        palette = model.class_table.palette()
        if label is not None and k <= 256:
            palette = np.concatenate([palette, np.zeros((256 - k, 3), np.uint8)])
        if bands is None and model.meta.display_bands is not None:
            bands = list(model.meta.display_bands)
        limits = None
        if overlays:
            side = min(STRETCH_WINDOW, source.shape[0]), min(STRETCH_WINDOW, source.shape[1])
            top, left = (source.shape[0] - side[0]) // 2, (source.shape[1] - side[1]) // 2
            window = np.asarray(source.array[top : top + side[0], left : left + side[1]])
            valid = None if rule is None else valid_mask(window, rule.nodata, rule.rule)
            limits = stretch_limits(window, preview_bands(image_channels(window), bands), valid)
        return cls(label, palette, bands, limits, model.class_table.transparent, rule)

    def overlay(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        valid = None if self.rule is None else valid_mask(image, self.rule.nodata, self.rule.rule)
        return overlay(image, labels, self.palette, bands=self.bands, limits=self.limits,
                       transparent=self.transparent, valid=valid)
