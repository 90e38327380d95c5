"""The model as inference runs it: an eval copy with batch norm folded into the convolutions (and, on CPUs,
each ReLU fused into the convolution before it), weights in the inference dtype, channels_last, and optionally
compiled with ``torch.compile``.

The rewrites are in :mod:`.fusion`. Without normalisation layers left, the weights can be cast once to
bf16/fp16 instead of autocast casting them on every call. The caller's model is never changed (the graph
works on a copy), and a prepared graph is cached per model until its parameters change (training steps bump
their version counters).
"""
from __future__ import annotations

import copy
import warnings
import weakref
from collections.abc import Callable

import torch
from torch import nn

from ..models.base import SegmentationModel
from ..models.geometry import Geometry
from ..models.precision import Precision
from .fusion import fold_batchnorm, fuse_conv_relu

NORM_LAYERS = (nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm,
               nn.SyncBatchNorm)


def model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _probe_input(model: nn.Module, device: torch.device) -> torch.Tensor | None:
    """A small input the model accepts (1 x C x n x n; 1 x C x d x h x w for a 3D model), or None when the input
    channels are unknown or the model has no layer to rewrite (an exported graph behind the model contract)."""
    if not any(isinstance(m, (nn.Conv2d, nn.Conv3d, *NORM_LAYERS)) for m in model.modules()):
        return None
    if isinstance(model, SegmentationModel):
        channels = model.in_channels
    else:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            return None
        channels = first.in_channels
    sides = [g.smallest_valid_at_least(2 * g.margin + 2 * g.stride) for g in Geometry.axes(model)]
    return torch.randn(1, channels, *sides, generator=torch.Generator().manual_seed(0)).to(device)


def memory_format(model: nn.Module) -> torch.memory_format:
    """The channels-last memory format of ``model``'s inputs: NHWC for 2D models, NDHWC for 3D ones."""
    return torch.channels_last_3d if getattr(model, "spatial_dims", 2) == 3 else torch.channels_last


def has_normalization(model: nn.Module) -> bool:
    return any(isinstance(m, NORM_LAYERS) for m in model.modules())


class InferenceGraph:
    """``graph(x)``: NCHW float32 tiles on ``device`` -> NCHW float32 logits, as fast as the settings allow.

    Args:
        model: the trained model (left untouched).
        device: where to run.
        precision: dtype and memory format (:func:`unetseg.models.precision.resolve_precision`).
        compile: wrap the graph in ``torch.compile`` (inductor, weights frozen). It compiles on the first
            call per input shape; if that fails the graph runs eagerly with a one-line notice.
    """

    name = "torch"  # the engine it is (:mod:`.engines`)

    def __init__(self, model: nn.Module, device: torch.device, precision: Precision, *, compile: bool = False) -> None:
        self.device, self.precision = device, precision
        net = copy.deepcopy(model).to(device).eval()
        net.requires_grad_(False)
        probe = _probe_input(net, device)
        if probe is not None:
            net = fold_batchnorm(net, probe)
        self.format = memory_format(model) if precision.channels_last else torch.contiguous_format
        net = net.to(memory_format=self.format)
        self.fp32 = net
        # Pre-cast weights when no normalisation layer is left (their statistics want fp32, which autocast keeps).
        self.cast = precision.dtype is not None and not has_normalization(net)
        self.net = copy.deepcopy(net).to(precision.dtype) if self.cast else net
        if device.type == "cpu" and not compile and probe is not None:  # inductor fuses on its own
            dtype = precision.dtype if self.cast else torch.float32
            self.net = fuse_conv_relu(self.net, probe.to(dtype).contiguous(memory_format=self.format))
        self.compiled = False
        self._run: Callable[[torch.Tensor], torch.Tensor] = self.net
        if compile:
            self._run = torch.compile(self.net, dynamic=False, options={"freezing": True})
            self.compiled = True

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cast:
            return self._run(x.to(self.precision.dtype))
        with self.precision.autocast(self.device):
            return self._run(x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.format)
        try:
            logits = self._forward(x)
        except Exception as err:  # noqa: BLE001  any compiler failure (no C++ compiler, unsupported op, ...)
            if not self.compiled:
                raise
            warnings.warn(f"torch.compile failed ({type(err).__name__}); running the model eagerly", RuntimeWarning,
                          stacklevel=2)
            self._run, self.compiled = self.net, False
            logits = self._forward(x)
        if self.precision.dtype == torch.float16 and not bool(torch.isfinite(logits).all()):
            warnings.warn("fp16 overflowed in a tile batch; recomputing it in fp32 (amp=False or amp='bf16' "
                          "avoids the double work)", RuntimeWarning, stacklevel=2)
            logits = self.fp32(x.float())  # fp16 overflowed (|activation| > 65504): this batch again in fp32
        return logits.float()


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inference_graph(model: nn.Module, device: torch.device, precision: Precision, *,
                    compile: bool = False) -> InferenceGraph:
    """The :class:`InferenceGraph` of ``model`` for these settings, reused while the model's weights are unchanged."""
    state = tuple(t._version for t in (*model.parameters(), *model.buffers()))
    settings = (str(device), precision, compile, model.training)
    graphs = _CACHE.setdefault(model, {})
    for stale in [k for k, (seen, _) in graphs.items() if seen != state]:  # the weights changed since
        del graphs[stale]
    if settings not in graphs:
        # a graph per precision and device, so that a program alternating them (a benchmark; bf16 then int8)
        # does not rebuild, and reconvert or requantise, the model on every call
        graphs[settings] = (state, InferenceGraph(model, device, precision, compile=compile))
    return graphs[settings][1]
