"""The plain convolutional encoder-decoder without skip connections: the baseline for the U-Net."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import DROPOUT, POOL, DoubleConv, EncoderDecoder, conv_layer, up_layer
from .registry import register_model


@register_model("autoencoder")
class ConvAutoencoder(EncoderDecoder):
    """U-Net's encoder and decoder with the skip connections removed (same arguments and geometry).

    Each decoder level sees only the upsampled coarse map, so fine detail lost by pooling cannot come
    back: that is what the U-Net's skips buy. Output N,num_classes,*spatial logits; ``spatial_dims=3`` (and
    ``pooling``/``kernels``/``context_slices``) as for :class:`~unetseg.models.unet.UNet`.

    Examples:
        >>> import torch, unetseg
        >>> model = unetseg.ConvAutoencoder(in_channels=1, num_classes=2, base_channels=4, depth=2).eval()
        >>> model(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 2, 32, 32])
        >>> model.margin  # same padding by default: no context lost
        0
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
        spatial_dims: int = 2,
        pooling: Sequence[Sequence[int]] | None = None,
        kernels: Sequence[Sequence[int]] | None = None,
        context_slices: int = 0,
    ) -> None:
        super().__init__(in_channels, num_classes, base_channels, depth, padding, up_mode, norm, dropout,
                         spatial_dims, pooling, kernels, context_slices)
        widths, dims, pools, sizes = self.widths, spatial_dims, self.level_pools, self.level_kernels
        encoder: list[nn.Module] = []
        c_in = in_channels
        for width, pool, kernel in zip(widths[:-1], pools, sizes[:-1], strict=True):
            slices = self.input_slices if not encoder else 1
            encoder += [DoubleConv(c_in, width, padding, norm, dims, kernel, slices), POOL[dims](pool)]
            c_in = width
        encoder += [DoubleConv(widths[-2], widths[-1], padding, norm, dims, sizes[-1])]
        if dropout > 0:
            encoder.append(DROPOUT[dims](dropout))
        self.encoder = nn.Sequential(*encoder)
        decoder: list[nn.Module] = []
        for level in reversed(range(depth)):
            width = widths[level]
            decoder += [up_layer(up_mode, 2 * width, width, pools[level]),
                        DoubleConv(width, width, padding, norm, dims, sizes[level])]
        self.decoder = nn.Sequential(*decoder)
        self.head = conv_layer(dims, widths[0], num_classes, (1,) * dims, (0,) * dims, bias=True)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.encoder]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.head(self.decoder(self.encoder(x)))
