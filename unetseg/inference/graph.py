"""The model as inference runs it: an eval copy with batch norm folded into the convolutions, weights in the
inference dtype, channels_last, and optionally compiled with ``torch.compile``.

Inference needs no batch-norm pass: in eval mode it is an affine map per channel, which folds exactly into
the preceding convolution's weights and bias, so one memory-bound pass over every activation disappears.
Without normalisation layers left, the weights can be cast once to bf16/fp16 instead of autocast casting
them on every call. The caller's model is never changed (the graph works on a copy), and a prepared graph
is cached per model until its parameters change (training steps bump their version counters).
"""
from __future__ import annotations

import copy
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..models.base import SegmentationModel
from .amp import Precision
from .grid import Geometry

NORM_LAYERS = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm, nn.SyncBatchNorm)


def model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _probe_input(model: nn.Module, device: torch.device) -> torch.Tensor | None:
    """A small input the model accepts (1 x C x n x n), or None when the input channels are unknown."""
    if isinstance(model, SegmentationModel):
        channels = model.in_channels
    else:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            return None
        channels = first.in_channels
    geometry = Geometry.of(model)
    side = geometry.smallest_valid_at_least(2 * geometry.margin + 2 * geometry.stride)
    return torch.randn(1, channels, side, side, generator=torch.Generator().manual_seed(0)).to(device)


def _conv_bn_pairs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, batch-norm name) pairs where, in one probe forward, the BN's input *is* the conv's output.

    Found by running the model, not by reading its code, so it holds for any architecture (torchvision
    ResNet blocks inside smp encoders included). A module called more than once is left alone.
    """
    names = {m: n for n, m in model.named_modules()}
    calls: dict[nn.Module, int] = {}
    outputs: dict[int, tuple[torch.Tensor, nn.Module]] = {}  # id(conv output) -> (output kept alive, conv)
    pairs: list[tuple[nn.Module, nn.Module]] = []

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        calls[module] = calls.get(module, 0) + 1
        if isinstance(module, nn.Conv2d) and isinstance(output, torch.Tensor):
            outputs[id(output)] = (output, module)
        elif isinstance(module, nn.BatchNorm2d) and inputs and id(inputs[0]) in outputs:
            kept, conv = outputs[id(inputs[0])]
            if kept is inputs[0]:
                pairs.append((conv, module))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return [(names[c], names[b]) for c, b in pairs if calls[c] == 1 and calls[b] == 1]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def fold_batchnorm(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into it, in place; returns ``model``.

    The folded model is checked against the original on ``x``; if they differ beyond float rounding (a conv
    output also used elsewhere, say) the original is returned unchanged.
    """
    pairs = _conv_bn_pairs(model, x)
    if not pairs:
        return model
    folded = copy.deepcopy(model)
    for conv_name, bn_name in pairs:
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        if conv.weight.dtype != torch.float32 or not bn.track_running_stats or bn.running_mean is None:
            continue
        _replace(folded, conv_name, fuse_conv_bn_eval(conv, bn))
        _replace(folded, bn_name, nn.Identity())
    with torch.no_grad():
        ref, got = model(x).float(), folded(x).float()
    if not torch.allclose(ref, got, rtol=1e-3, atol=1e-3 * max(1.0, float(ref.abs().max()))):
        return model
    return folded


def has_normalization(model: nn.Module) -> bool:
    return any(isinstance(m, NORM_LAYERS) for m in model.modules())


class InferenceGraph:
    """``graph(x)``: NCHW float32 tiles on ``device`` -> NCHW float32 logits, as fast as the settings allow.

    Args:
        model: the trained model (left untouched).
        device: where to run.
        precision: dtype and memory format (:func:`unetseg.inference.amp.resolve_precision`).
        compile: wrap the graph in ``torch.compile`` (inductor, weights frozen). It compiles on the first
            call per input shape; if that fails the graph runs eagerly with a one-line notice.
    """

    def __init__(self, model: nn.Module, device: torch.device, precision: Precision, *, compile: bool = False) -> None:
        self.device, self.precision = device, precision
        net = copy.deepcopy(model).to(device).eval()
        net.requires_grad_(False)
        probe = _probe_input(net, device)
        if probe is not None:
            net = fold_batchnorm(net, probe)
        if precision.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.fp32 = net
        # Pre-cast weights when no normalisation layer is left (their statistics want fp32, which autocast keeps).
        self.cast = precision.dtype is not None and not has_normalization(net)
        self.net = copy.deepcopy(net).to(precision.dtype) if self.cast else net
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
        if self.precision.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
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
    key = (str(device), precision, compile, state, model.training)
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    graph = InferenceGraph(model, device, precision, compile=compile)
    _CACHE[model] = (key, graph)
    return graph
