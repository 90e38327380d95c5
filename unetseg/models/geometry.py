"""What tiling needs to know of a model, as the model declares it: padding, stride, margin, receptive field and
the context measured after training. Inference reads it (:class:`Geometry.of`); export and training too."""
from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from ..errors import UnetsegError
from .base import SegmentationModel
from .sizes import SizeRule

# Bare nn.Modules (no size_rule) are assumed to be same-padding with this stride (safe for smp/timm encoders).
DEFAULT_STRIDE = 32
HALO_WORDS = ("auto", "exact")


def round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def setting(name: str, value: Any) -> str:
    """How an error names a setting: ``--flag 'text':`` for command-line flags, ``name=value`` for arguments."""
    return f"{name} {value!r}:" if name.startswith("--") else f"{name}={value!r}"


def parse_halo(value: Any, name: str = "halo") -> int | str:
    """A halo setting: "auto", "exact", or a number of pixels >= 0 (ints, or their decimal text from a command
    line). Anything else is a one-line UnetsegError naming ``name``."""
    if isinstance(value, str) and value in HALO_WORDS:
        return value
    try:
        pixels = int(value, 10) if isinstance(value, str) else operator.index(value)
    except (TypeError, ValueError):
        pixels = -1
    if pixels < 0 or isinstance(value, bool):
        raise UnetsegError(f"{setting(name, value)} must be 'auto', 'exact' or a number of pixels >= 0")
    return pixels


@dataclass(frozen=True)
class Geometry:
    """What tiling needs to know of a model: padding, stride, margin and the receptive-field radius."""

    padding: str          # "valid" | "same"
    stride: int
    margin: int           # context lost per side (valid); 0 for same
    field_radius: int | None  # receptive-field radius of a same model, None when unknown (smp, bare modules)
    size_rule: SizeRule | None
    measured_halo: int | None = None  # smallest context measured to reproduce whole-image labels (checkpoint)

    @classmethod
    def of(cls, model: nn.Module) -> Geometry:
        """The geometry a unetseg model declares; bare modules are taken as same-padding with stride 32."""
        if not isinstance(model, SegmentationModel):
            return cls("same", DEFAULT_STRIDE, 0, None, None)
        rule = model.size_rule
        radius = model.field_radius if rule.padding == "same" else None
        halo = model.meta.halo
        return cls(rule.padding, rule.stride, rule.margin, radius, rule, None if halo is None else halo.pixels)

    @classmethod
    def axes(cls, model: nn.Module) -> tuple[Geometry, ...]:
        """The geometry of each spatial axis (H, W; or D, H, W): a 3D model with per-axis pooling has its own
        stride, margin and receptive field per axis (:attr:`unetseg.models.base.SegmentationModel.axis_rules`); a
        2.5D network's z axis is valid-padded (its first convolution's slices) where the others are same-padded."""
        whole = cls.of(model)
        if not isinstance(model, SegmentationModel):
            return (whole, whole)
        radii = getattr(model, "field_radii", (model.field_radius,) * model.spatial_dims)
        return tuple(replace(whole, padding=rule.padding, stride=rule.stride, margin=rule.margin, size_rule=rule,
                             field_radius=radius if rule.padding == "same" else None)
                     for rule, radius in zip(model.axis_rules, radii, strict=True))

    def is_valid_size(self, n: int) -> bool:
        if self.size_rule is not None:
            return self.size_rule.is_valid(n)
        return n > 0 and n % self.stride == 0

    def nearest_valid(self, n: int) -> int:
        if self.size_rule is not None:
            return self.size_rule.valid_input_size(max(n, 1))
        return max(self.stride, int(round(n / self.stride)) * self.stride)

    def smallest_valid_at_least(self, n: int) -> int:
        if self.size_rule is not None:
            return self.size_rule.nearest_valid(max(n, 1))[1]
        return round_up(max(n, 1), self.stride)

    def example_size(self, tile_size: int | None = None) -> int:
        """A model input side for examples (export, probes): ``tile_size`` rounded to an accepted size, else the
        paper's 572 for valid-padding models and 512 for same-padding ones."""
        return self.nearest_valid(int(tile_size or (572 if self.padding == "valid" else 512)))

    def halo_for(self, halo: int | str = "auto") -> int:
        """Overlap (px per side) of same-padding tiles; 0 for valid models, whose context is their margin.

        "exact": the receptive-field radius rounded up to the stride, for unetseg's UNet/autoencoder: no kept
        pixel ever sees the convolutions' zero padding, so tiled == whole image. Models of unknown receptive
        field (smp encoders, whose theoretical fields exceed any practical tile) get two strides (64 px at
        stride 32) there: for a trained smp ResNet-18 U-Net (tile 512) labels agreed with the whole-image
        prediction on 99.70 % of pixels with no halo, 99.97 % with 32 px, 99.99 % with 64 px.
        "auto" (default): the halo measured for this model after training (stored in the checkpoint's
        :class:`~unetseg.models.meta.HaloRecord`: the smallest context whose tiled labels agreed >= 99.99 % with
        whole-image labels), else "exact". An int is rounded up to the stride. No halo exceeds the exact one (the
        measured in-plane halo of a 3D model applies to each axis up to that axis's receptive field).
        """
        halo = parse_halo(halo)
        if self.padding == "valid":
            return 0
        if halo == "auto" and self.measured_halo is not None:
            wanted = self.measured_halo
        elif isinstance(halo, str):
            wanted = self.field_radius if self.field_radius is not None else 2 * self.stride
        else:
            wanted = halo
        if self.field_radius is not None:  # context beyond the receptive field changes nothing: an axis of a 3D
            wanted = min(wanted, self.field_radius)  # model that looks 4 slices along z never takes a 32-slice halo
        return round_up(wanted, self.stride)
