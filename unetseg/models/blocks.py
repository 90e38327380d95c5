"""Building blocks shared by the U-Net and the autoencoder baseline."""
from __future__ import annotations

import torch
from torch import nn

from .base import SegmentationModel
from .sizes import PADDINGS, SizeRule

NORMS = ("batch", "group", "none")
UP_MODES = ("transpose", "bilinear")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {choices}")


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm={kind!r} is not one of {NORMS}")


class DoubleConv(nn.Sequential):
    """(3x3 conv -> norm -> ReLU) x 2; unpadded for padding="valid" (each conv trims 1 px per side)."""

    def __init__(self, in_channels: int, out_channels: int, padding: str, norm: str) -> None:
        pad = 1 if padding == "same" else 0
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers += [
                nn.Conv2d(c_in, out_channels, 3, padding=pad, bias=norm == "none"),
                norm_layer(norm, out_channels),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)


def up_layer(mode: str, in_channels: int, out_channels: int) -> nn.Module:
    """2x upsampling: the paper's 2x2 up-convolution, or bilinear upsampling + 1x1 conv (no checkerboard)."""
    if mode == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
    if mode == "bilinear":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
        )
    raise ValueError(f"up_mode={mode!r} is not one of {UP_MODES}")


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the centre ``height`` x ``width`` window of an NCHW tensor (the paper's crop-and-copy)."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


class EncoderDecoder(SegmentationModel):
    """What the U-Net and the no-skip autoencoder share: argument checks, config, geometry, level widths.

    Subclasses build their layers from ``self.widths`` (``base_channels * 2**level`` for levels 0..depth).
    """

    def __init__(self, in_channels: int, num_classes: int, base_channels: int, depth: int, padding: str,
                 up_mode: str, norm: str, dropout: float) -> None:
        super().__init__()
        check_choice("padding", padding, PADDINGS)
        check_choice("up_mode", up_mode, UP_MODES)
        check_choice("norm", norm, NORMS)
        if depth < 1 or base_channels < 1 or in_channels < 1 or num_classes < 1:
            raise ValueError("depth, base_channels, in_channels and num_classes must all be >= 1")
        self._config_kwargs = dict(
            in_channels=in_channels, num_classes=num_classes, base_channels=base_channels, depth=depth,
            padding=padding, up_mode=up_mode, norm=norm, dropout=dropout,
        )
        self.in_channels, self.num_classes = in_channels, num_classes
        self.size_rule = SizeRule(depth=depth, padding=padding)
        self.widths = [base_channels * 2**level for level in range(depth + 1)]

    @property
    def field_radius(self) -> int:
        """The receptive-field radius: that of the same network with unpadded convolutions (its margin)."""
        rule = self.size_rule
        return SizeRule(rule.depth, "valid", rule.convs_per_level).margin
