"""The model stage of the pipeline: a batch of normalised tiles in, class probabilities out.

The model runs in eval mode on the chosen device and precision; test-time augmentations are averaged in
probability space; a batch whose fp16 logits overflow is recomputed in fp32.
"""
from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from .amp import Precision
from .tta import Transform


def model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextlib.contextmanager
def inference_model(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """The model in eval mode on ``device``; the caller's model keeps its device and train/eval state."""
    if model_device(model) != device:
        model = copy.deepcopy(model).to(device)
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def logits_to_probs(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the class axis (sigmoid for a 1-class model), in float32."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


class TileForward:
    """``forward(x)``: NCHW float32 tiles on any device -> NKHW float32 probabilities on ``device``."""

    def __init__(self, model: nn.Module, transforms: list[Transform], precision: Precision,
                 device: torch.device) -> None:
        self.model, self.transforms, self.precision, self.device = model, transforms, precision, device

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast(self.device):
            logits = self.model(x)
        if self.precision.dtype == torch.float16 and not bool(torch.isfinite(logits).all()):
            warnings.warn("fp16 overflowed in a tile batch; recomputing it in fp32 (amp=False or amp='bf16' "
                          "avoids the double work)", RuntimeWarning, stacklevel=3)
            logits = self.model(x)  # fp16 overflowed (|activation| > 65504): this batch again in fp32
        return logits

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        total = torch.zeros(())
        for fwd, inv in self.transforms:
            probs = logits_to_probs(inv(self._logits(fwd(x))))
            total = probs if total.ndim == 0 else total.add_(probs)
        if len(self.transforms) > 1:
            total /= len(self.transforms)
        return total
