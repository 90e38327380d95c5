"""The U-Net of Ronneberger, Fischer & Brox (2015), with valid (paper) or same padding."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import DoubleConv, EncoderDecoder, center_crop, up_layer
from .registry import register_model


@register_model("unet")
class UNet(EncoderDecoder):
    """Encoder-decoder with skip connections (crop-and-concat of the encoder maps).

    Args:
        in_channels: image channels (1 gray, 3 RGB, N multi-band).
        num_classes: output logit channels.
        base_channels: channels of the first level, doubled per level (64 in the paper).
        depth: number of 2x2 poolings (4 in the paper).
        padding: "valid" (unpadded 3x3 convs; 572 -> 388 for the paper's network) or "same"
            (input side must be divisible by 2**depth; output size == input size).
        up_mode: "transpose" (2x2 up-convolution halving the channels) or "bilinear" (upsample + 1x1 conv).
        norm: "batch" (default), "group" or "none" (the paper).
        dropout: Dropout2d probability at the bottleneck (the paper used 0.5 there).

    Input NCHW float; output NCHW logits with ``num_classes`` channels and ``output_size`` sides.
    """

    registry_name = "unet"

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base_channels: int = 64,
        depth: int = 4,
        padding: str = "valid",
        up_mode: str = "transpose",
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_channels, num_classes, base_channels, depth, padding, up_mode, norm, dropout)
        widths = self.widths
        self.down = nn.ModuleList()
        c_in = in_channels
        for width in widths[:-1]:
            self.down.append(DoubleConv(c_in, width, padding, norm))
            c_in = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(widths[-2], widths[-1], padding, norm)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.ModuleList()
        self.up_convs = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.up.append(up_layer(up_mode, 2 * width, width))
            self.up_convs.append(DoubleConv(2 * width, width, padding, norm))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def encoder_modules(self) -> list[nn.Module]:
        return [*self.down, self.bottleneck]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottleneck(x))
        for up, conv, skip in zip(self.up, self.up_convs, reversed(skips), strict=True):
            x = up(x)
            x = conv(torch.cat([center_crop(skip, x.shape[-2], x.shape[-1]), x], dim=1))
        return self.head(x)
