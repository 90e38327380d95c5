"""The model stage of the pipeline: a batch of normalised tiles in, class probabilities out.

The model runs on an engine (:mod:`.engines`: the torch :class:`~unetseg.inference.graph.InferenceGraph`, OpenVINO,
ONNX Runtime); test-time augmentations are averaged in probability space.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .engines import Engine
from .tta import Transform


def logits_to_probs(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the class axis (sigmoid for a 1-class model), in float32."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


class TileForward:
    """``forward(x)``: NCHW float32 tiles on any device -> NKHW float32 probabilities on the graph's device."""

    def __init__(self, graph: Engine, transforms: list[Transform]) -> None:
        self.graph, self.transforms = graph, transforms

    def start(self, x: torch.Tensor) -> Callable[[], torch.Tensor]:
        """Start ``x`` on the engine and return the function that waits for its probabilities: engines that run
        asynchronously (OpenVINO) compute the next batch while the caller merges this one; others run now."""
        start = getattr(self.graph, "start", None)
        if start is None or len(self.transforms) > 1:
            probs = self(x)
            return lambda: probs
        fwd, inv = self.transforms[0]
        logits = start(fwd(x))
        return lambda: logits_to_probs(inv(logits()))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.graph.device, non_blocking=True)
        total = torch.zeros(())
        for fwd, inv in self.transforms:
            probs = logits_to_probs(inv(self.graph(fwd(x))))
            total = probs if total.ndim == 0 else total.add_(probs)
        if len(self.transforms) > 1:
            total /= len(self.transforms)
        return total
