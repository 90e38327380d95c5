"""The plain convolutional encoder-decoder without skip connections: the baseline for the U-Net."""
from __future__ import annotations

import torch
from torch import nn

from .base import SegmentationModel
from .blocks import NORMS, UP_MODES, DoubleConv, up_layer
from .sizes import PADDINGS, SizeRule
from .unet import check_choice


class ConvAutoencoder(SegmentationModel):
    """U-Net's encoder and decoder with the skip connections removed (same arguments and geometry).

    Each decoder level sees only the upsampled coarse map, so fine detail lost by pooling cannot come
    back: that is what the U-Net's skips buy. Output NCHW logits with ``num_classes`` channels.
    """

    registry_name = "autoencoder"

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base_channels: int = 64,
        depth: int = 4,
        padding: str = "same",
        up_mode: str = "transpose",
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
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
        widths = [base_channels * 2**level for level in range(depth + 1)]

        encoder: list[nn.Module] = []
        c_in = in_channels
        for width in widths[:-1]:
            encoder += [DoubleConv(c_in, width, padding, norm), nn.MaxPool2d(2)]
            c_in = width
        encoder += [DoubleConv(widths[-2], widths[-1], padding, norm)]
        if dropout > 0:
            encoder.append(nn.Dropout2d(dropout))
        self.encoder = nn.Sequential(*encoder)
        decoder: list[nn.Module] = []
        for width in reversed(widths[:-1]):
            decoder += [up_layer(up_mode, 2 * width, width), DoubleConv(width, width, padding, norm)]
        self.decoder = nn.Sequential(*decoder)
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.head(self.decoder(self.encoder(x)))
