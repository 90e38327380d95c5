"""The model stage of the pipeline: a batch of normalised tiles in, class probabilities out.

The model runs on an engine (:mod:`.engines`: the torch :class:`~unetseg.inference.graph.InferenceGraph`, OpenVINO,
ONNX Runtime); test-time augmentations are averaged in probability space. For the uncertainty output the views
(TTA's transforms, an ensemble's members) also hand on their mean entropy, from which the merger gets their
disagreement.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from .engines import Engine
from .tta import Transform

LOG_FLOOR = 1e-12


def logits_to_probs(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the class axis (sigmoid for a 1-class model), in float32."""
    logits = logits.float()
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Per-pixel entropy in nats of NKHW probabilities -> N1HW (K == 1: of the two outcomes p, 1 - p)."""
    if probs.shape[1] == 1:
        probs = torch.cat([1 - probs, probs], dim=1)
    return -(probs * torch.log(probs.clamp_min(LOG_FLOOR))).sum(1, keepdim=True)


class TileForward:
    """``forward(x)``: NCHW float32 tiles on any device -> NKHW float32 probabilities on the graph's device.

    Args:
        graph: the engine that runs the model.
        transforms: the TTA views (:func:`unetseg.inference.tta.tta_transforms`).
        spread: append one channel, the views' mean entropy (N(K+1)HW), for the uncertainty output's
            disagreement. Views are the transforms and, with ``entropy_channel``, an ensemble's members.
        entropy_channel: the model returns its members' mean entropy as an extra last channel
            (:meth:`unetseg.models.ensemble.Ensemble.with_expected_entropy`).
    """

    def __init__(self, graph: Engine, transforms: list[Transform], *, spread: bool = False,
                 entropy_channel: bool = False) -> None:
        self.graph, self.transforms = graph, transforms
        self.spread, self.entropy_channel = spread, entropy_channel

    def start(self, x: torch.Tensor) -> Callable[[], torch.Tensor]:
        """Start ``x`` on the engine and return the function that waits for its probabilities: engines that run
        asynchronously (OpenVINO) compute the next batch while the caller merges this one; others run now."""
        start = getattr(self.graph, "start", None)
        if start is None or len(self.transforms) > 1:
            probs = self(x)
            return lambda: probs
        fwd, inv = self.transforms[0]
        logits = start(fwd(x))
        return lambda: self._combine([inv(logits())])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.graph.device, non_blocking=True)
        return self._combine(inv(self.graph(fwd(x))) for fwd, inv in self.transforms)

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.entropy_channel:
            return logits_to_probs(out[:, :-1]), out[:, -1:].float()
        probs = logits_to_probs(out)
        return probs, entropy(probs) if self.spread else None

    def _combine(self, outputs: Iterable[torch.Tensor]) -> torch.Tensor:
        """The mean probabilities of the views (lazily, one view held at a time), and their mean entropy."""
        total: torch.Tensor | None = None
        spread: torch.Tensor | None = None
        n = 0
        for out in outputs:
            probs, h = self._split(out)
            total = probs if total is None else total.add_(probs)
            if h is not None:
                spread = h if spread is None else spread.add_(h)
            n += 1
        assert total is not None
        if n > 1:
            total /= n
            if spread is not None:
                spread /= n
        return total if spread is None else torch.cat([total, spread], dim=1)
