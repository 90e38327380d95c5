"""The U-Net of Ronneberger, Fischer & Brox (2015), with valid (paper) or same padding; in 3D, Çiçek et al. (2016)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .blocks import DROPOUT, POOL, DoubleConv, EncoderDecoder, center_crop, conv_layer, up_layer
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
        dropout: Dropout2d (3D: Dropout3d) probability at the bottleneck (the paper used 0.5 there).
        spatial_dims: 2 (default; NCHW) or 3 (the 3D U-Net of Çiçek et al. 2016; NCDHW).
        pooling: per level, the pooling factor (1 or 2) of each spatial axis; default 2 everywhere. For
            anisotropic voxels take it from the spacing: :func:`unetseg.models.anisotropy.pooling_plan`.
        kernels: per level and the bottleneck (``depth + 1`` entries), the convolutions' kernel size (1 or 3) of
            each spatial axis; default 3 everywhere.
        context_slices: 2.5D (3D only, for a network with pooling and kernels 1 along z): the first convolution
            also sees this many slices above and below, unpadded along z (neighbouring slices as channels), so
            the output has ``2 * context_slices`` fewer slices than the input; default 0.

    Input N,C,*spatial float; output N,num_classes,*spatial logits, each spatial side ``output_size`` of its
    input side (per axis: :attr:`size_rules`).

    Examples:
        >>> import torch, unetseg
        >>> paper = unetseg.UNet(in_channels=1, num_classes=2, padding="valid")
        >>> paper.output_size(572), paper.valid_input_size(500), paper.margin
        (388, 508, 92)
        >>> small = unetseg.UNet(in_channels=3, num_classes=4, base_channels=4, depth=2, padding="same").eval()
        >>> small(torch.zeros(1, 3, 64, 48)).shape
        torch.Size([1, 4, 64, 48])
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
        spatial_dims: int = 2,
        pooling: Sequence[Sequence[int]] | None = None,
        kernels: Sequence[Sequence[int]] | None = None,
        context_slices: int = 0,
    ) -> None:
        super().__init__(in_channels, num_classes, base_channels, depth, padding, up_mode, norm, dropout,
                         spatial_dims, pooling, kernels, context_slices)
        widths, dims = self.widths, spatial_dims
        self.down = nn.ModuleList()
        self.pools = nn.ModuleList()
        c_in = in_channels
        for width, pool, kernel in zip(widths[:-1], self.level_pools, self.level_kernels[:-1], strict=True):
            slices = self.input_slices if not self.down else 1
            self.down.append(DoubleConv(c_in, width, padding, norm, dims, kernel, slices))
            self.pools.append(POOL[dims](pool))
            c_in = width
        self.bottleneck = DoubleConv(widths[-2], widths[-1], padding, norm, dims, self.level_kernels[-1])
        self.dropout = DROPOUT[dims](dropout) if dropout > 0 else nn.Identity()
        self.up = nn.ModuleList()
        self.up_convs = nn.ModuleList()
        for level in reversed(range(depth)):
            width = widths[level]
            self.up.append(up_layer(up_mode, 2 * width, width, self.level_pools[level]))
            self.up_convs.append(DoubleConv(2 * width, width, padding, norm, dims, self.level_kernels[level]))
        self.head = conv_layer(dims, widths[0], num_classes, (1,) * dims, (0,) * dims, bias=True)

    def encoder_modules(self) -> list[nn.Module]:
        return [*self.down, self.bottleneck]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        for block, pool in zip(self.down, self.pools, strict=True):
            x = block(x)
            skips.append(x)
            x = pool(x)
        x = self.dropout(self.bottleneck(x))
        for up, conv in zip(self.up, self.up_convs, strict=True):
            # the skip and the upsampled map are dropped once concatenated, before the convolutions run: at the
            # full-resolution level that is two of the five maps alive at once (a 1024^2 base-16 tile in bf16:
            # 64 MiB of ~300 in inference; training's graph keeps them either way)
            x = up(x)
            x = torch.cat([center_crop(skips.pop(), *x.shape[2:]), x], dim=1)
            x = conv(x)
        return self.head(x)
