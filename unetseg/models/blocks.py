"""Building blocks shared by the U-Net and the autoencoder baseline, in 2D or 3D (``dims``)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from .base import SegmentationModel
from .sizes import PADDINGS, SizeRule

SPATIAL_DIMS = (2, 3)
CONV = {2: nn.Conv2d, 3: nn.Conv3d}
CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
DROPOUT = {2: nn.Dropout2d, 3: nn.Dropout3d}

NORMS = ("batch", "group", "none")
UP_MODES = ("transpose", "bilinear")


class PlanarConv3d(nn.Conv3d):
    """A Conv3d unpadded along the first axis (stride and dilation 1 there) computed as a Conv2d over the output
    slices stacked in the batch, each seeing its ``kernel[0]`` input slices as channels: the same parameters, state
    dict and results, while gradients are recorded (training); otherwise the Conv3d itself. For kernels of one slice
    (2D networks on volumes) and the 2.5D first layer: oneDNN's bf16 weight gradient of such Conv3d layers crashed
    the process (SIGSEGV/SIGFPE) on AMX Xeons from 96 px in-plane (torch 2.15), so those volume networks could not
    train there."""

    @staticmethod
    def applies(kernel: Sequence[int], padding: Sequence[int]) -> bool:
        return kernel[0] == 1 and padding[0] == 0

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not torch.is_grad_enabled():  # inference and ONNX export: the Conv3d itself (OpenVINO ran the 2D form's
            return super()._conv_forward(input, weight, bias)  # transposes and reshapes of a volume far slower)
        span = self.kernel_size[0]
        # output slice z sees input slices z .. z + span - 1, as channels (channel-major, as the weight's layout);
        # slices with constant bounds and no explicit sizes, so the ONNX graph keeps dynamic axes
        shifted = [input[:, :, k : (k - span + 1) or None] for k in range(span)]
        stacked = shifted[0] if span == 1 else torch.stack(shifted, 2).flatten(1, 2)  # N x C*span x D' x H x W
        slices = stacked.transpose(1, 2).flatten(0, 1)  # a view for channels_last_3d input when span == 1
        out = F.conv2d(slices, weight.flatten(1, 2), bias, self.stride[1:], self.padding[1:], self.dilation[1:],
                       self.groups)
        return out.unflatten(0, (input.shape[0], -1)).transpose(1, 2)


def conv_layer(dims: int, in_channels: int, out_channels: int, kernel: Sequence[int], padding: Sequence[int],
               bias: bool, planar: bool = False) -> nn.Module:
    """The convolution of ``dims`` with ``kernel`` and ``padding`` per axis: :class:`PlanarConv3d` for kernels of one
    slice, or when ``planar`` (a 2.5D first layer, unpadded along z)."""
    kind = PlanarConv3d if dims == 3 and (planar or PlanarConv3d.applies(kernel, padding)) else CONV[dims]
    return kind(in_channels, out_channels, tuple(kernel), padding=tuple(padding), bias=bias)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {choices}")


def norm_layer(kind: str, channels: int, dims: int = 2) -> nn.Module:
    if kind == "batch":
        return BATCH_NORM[dims](channels)
    if kind == "group":
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm={kind!r} is not one of {NORMS}")


class DoubleConv(nn.Sequential):
    """(3x3 conv -> norm -> ReLU) x 2 (3x3x3 in 3D; ``kernel`` per axis, 1 or 3); unpadded for padding="valid"
    (each conv trims 1 px per side along the axes of kernel 3). ``input_slices`` > 1 (3D): the first conv spans
    that many slices along the first axis, unpadded there (2.5D: neighbouring slices seen as channels)."""

    def __init__(self, in_channels: int, out_channels: int, padding: str, norm: str, dims: int = 2,
                 kernel: Sequence[int] | None = None, input_slices: int = 1) -> None:
        kernel = tuple(kernel) if kernel is not None else (3,) * dims
        pad = tuple(k // 2 for k in kernel) if padding == "same" else (0,) * dims
        layers: list[nn.Module] = []
        for n, c_in in enumerate((in_channels, out_channels)):
            size, margins = kernel, pad
            if n == 0 and input_slices > 1:
                size, margins = (input_slices, *kernel[1:]), (0, *pad[1:])
            layers += [
                conv_layer(dims, c_in, out_channels, size, margins, bias=norm == "none",
                           planar=n == 0 and input_slices > 1),
                norm_layer(norm, out_channels, dims),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)


def up_layer(mode: str, in_channels: int, out_channels: int, factor: Sequence[int] | None = None) -> nn.Module:
    """Upsampling by ``factor`` per axis (default 2x2): the paper's up-convolution, or (bi/tri)linear
    upsampling + 1x1 conv (no checkerboard)."""
    factor = tuple(factor) if factor is not None else (2, 2)
    dims = len(factor)
    if mode == "transpose":
        return CONV_T[dims](in_channels, out_channels, kernel_size=factor, stride=factor)
    if mode == "bilinear":
        return nn.Sequential(
            nn.Upsample(scale_factor=tuple(float(f) for f in factor), mode="bilinear" if dims == 2 else "trilinear",
                        align_corners=False),
            conv_layer(dims, in_channels, out_channels, (1,) * dims, (0,) * dims, bias=True),
        )
    raise ValueError(f"up_mode={mode!r} is not one of {UP_MODES}")


def center_crop(x: torch.Tensor, *size: int) -> torch.Tensor:
    """Crop the centre window of ``size`` (one per spatial axis: H, W or D, H, W) of an NC... tensor (the paper's
    crop-and-copy)."""
    starts = [(x.shape[-len(size) + i] - n) // 2 for i, n in enumerate(size)]
    return x[(..., *(slice(a, a + n) for a, n in zip(starts, size, strict=True)))]


class EncoderDecoder(SegmentationModel):
    """What the U-Net and the no-skip autoencoder share: argument checks, config, geometry, level widths.

    Subclasses build their layers from ``self.widths`` (``base_channels * 2**level`` for levels 0..depth),
    ``self.level_pools`` (per level, the pooling factor per axis) and ``self.level_kernels`` (per level and the
    bottleneck, the kernel size per axis).
    """

    def __init__(self, in_channels: int, num_classes: int, base_channels: int, depth: int, padding: str,
                 up_mode: str, norm: str, dropout: float, spatial_dims: int = 2,
                 pooling: Sequence[Sequence[int]] | None = None,
                 kernels: Sequence[Sequence[int]] | None = None, context_slices: int = 0) -> None:
        super().__init__()
        check_choice("padding", padding, PADDINGS)
        check_choice("up_mode", up_mode, UP_MODES)
        check_choice("norm", norm, NORMS)
        if spatial_dims not in SPATIAL_DIMS:
            raise ValueError(f"spatial_dims={spatial_dims!r} is not one of {SPATIAL_DIMS}")
        if depth < 1 or base_channels < 1 or in_channels < 1 or num_classes < 1:
            raise ValueError("depth, base_channels, in_channels and num_classes must all be >= 1")
        pools = _per_level("pooling", pooling, depth, spatial_dims, 2)
        sizes = _per_level("kernels", kernels, depth + 1, spatial_dims, 3)
        self._config_kwargs = dict(
            in_channels=in_channels, num_classes=num_classes, base_channels=base_channels, depth=depth,
            padding=padding, up_mode=up_mode, norm=norm, dropout=dropout,
        )
        if spatial_dims != 2 or pooling is not None or kernels is not None:  # 2D checkpoints keep their old config
            self._config_kwargs.update(spatial_dims=spatial_dims, pooling=[list(p) for p in pools],
                                       kernels=[list(k) for k in sizes])
        if context_slices:
            flat = spatial_dims == 3 and all(p[0] == 1 for p in pools) and all(k[0] == 1 for k in sizes)
            if not flat or context_slices < 0:
                raise ValueError(f"context_slices={context_slices}: neighbouring slices are seen by a 3D network with "
                                 "no pooling and 1-voxel kernels along z (pooling and kernels [1, ., .] everywhere)")
            self._config_kwargs.update(context_slices=context_slices)
        self.in_channels, self.num_classes, self.spatial_dims = in_channels, num_classes, spatial_dims
        self.level_pools, self.level_kernels = pools, sizes
        self.input_slices = 2 * context_slices + 1  # the first convolution's extent along z, unpadded (2.5D)
        try:
            self.size_rules = tuple(
                SizeRule(depth=depth, padding="valid" if axis == 0 and context_slices else padding,
                         pools=tuple(p[axis] for p in pools), kernels=tuple(k[axis] for k in sizes),
                         input_context=context_slices if axis == 0 else 0) for axis in range(spatial_dims))
        except ValueError as err:
            raise ValueError(f"pooling={pooling}, kernels={kernels}: {err}") from None
        self.size_rule = self.size_rules[-1]
        self.widths = [base_channels * 2**level for level in range(depth + 1)]

    @property
    def field_radius(self) -> int:
        """The receptive-field radius along the last axis: that of the same network with unpadded convolutions
        (its margin); :meth:`field_radii` gives every axis's."""
        return self.field_radii[-1]

    @property
    def field_radii(self) -> tuple[int, ...]:
        """The receptive-field radius per spatial axis."""
        return tuple(replace(r, padding="valid").margin for r in self.size_rules)


def _per_level(name: str, value: Sequence[Sequence[int]] | None, levels: int, dims: int,
               default: int) -> tuple[tuple[int, ...], ...]:
    """``value`` as ``levels`` tuples of ``dims`` ints (the default everywhere when None); a wrong shape is a
    ValueError naming ``name``."""
    if value is None:
        return ((default,) * dims,) * levels
    rows = tuple(tuple(int(v) for v in row) for row in value)
    if len(rows) != levels or any(len(row) != dims for row in rows):
        raise ValueError(f"{name}={value}: expected {levels} entries of {dims} per-axis values")
    return rows
