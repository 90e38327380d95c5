"""The plain convolutional encoder-decoder without skip connections: the baseline for the U-Net."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import DoubleConv, EncoderDecoder, up_layer
from .registry import register_model


@register_model("autoencoder")
class ConvAutoencoder(EncoderDecoder):
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
        super().__init__(in_channels, num_classes, base_channels, depth, padding, up_mode, norm, dropout)
        widths = self.widths
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

    def encoder_modules(self) -> list[nn.Module]:
        return [self.encoder]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.head(self.decoder(self.encoder(x)))
