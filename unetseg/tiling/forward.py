"""The forward stage of the pipeline: a batch of raw tiles in, labels or class probabilities out, on the device.

N x H x W x C raw tiles (the image's dtype) -> invalid pixels (the nodata rule, :func:`unetseg.data.nodata.
invalid_pixels`) -> normalised NCHW float32 (:meth:`unetseg.data.normalization.Normalization.affine`), invalid
pixels at 0 (the normalised mean) -> the engine (:mod:`.engines`), once per TTA view -> labels straight from the
logits when labels are all the plan keeps from one view, else softmax probabilities averaged over the views (plus
their mean entropy, for the uncertainty output's disagreement). Nothing leaves the device here: the merger crops
what it keeps and copies that back.

An engine that can run the prologue and the epilogue inside its own graph does (OpenVINO:
:meth:`~unetseg.engines.registry.OpenVINOEngine.fused`): the host then hands it uint8 tiles and gets uint8 labels.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..data.nodata import invalid_pixels
from ..engines.contract import ForwardSpec, Started, TileOutput
from ..engines.tta import Transform, tta_transforms
from ..models.ensemble import Ensemble

if TYPE_CHECKING:
    from ..engines.registry import Engine

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


def to_labels(scores: torch.Tensor, *, logits: bool = False) -> torch.Tensor:
    """NKHW probabilities (or, with ``logits``, logits) -> NHW class indices on the tensor's device: uint8 for
    K <= 256, else int32 (a map takes :func:`unetseg.data.labels.map_dtype`). K == 1 means p > 0.5 (logit > 0).

    Ties go to the lower class index, as with argmax.
    """
    k = scores.shape[1]
    if k == 1:
        return (scores[:, 0] > (0.0 if logits else 0.5)).to(torch.uint8)
    if k > 32:
        return scores.argmax(1).to(torch.uint8 if k <= 256 else torch.int32)
    # A running maximum over the classes: argmax over a short channel axis of a (channels_last) tile is several
    # times slower on CPU (18 ms vs ~2 ms for 2 x 324^2).
    best, labels = scores[:, 0], torch.zeros(scores[:, 0].shape, dtype=torch.uint8, device=scores.device)
    for c in range(1, k):
        better = scores[:, c] > best
        labels.masked_fill_(better, c)
        best = torch.where(better, scores[:, c], best)
    return labels


@dataclass(frozen=True)
class Views:
    """What runs for an output: the model (an ensemble's variant that also returns its members' mean entropy, for the
    uncertainty output), whether the forward hands on the views' mean entropy (``spread``: several members or TTA
    transforms) and whether the model supplies it (``entropy_channel``)."""

    model: nn.Module
    spread: bool = False
    entropy_channel: bool = False
    dims: int = 2

    @classmethod
    def of(cls, model: nn.Module, output: str, transforms: int) -> Views:
        if "uncertainty" not in output:
            return cls(model)
        if isinstance(model, Ensemble):
            return cls(model.with_expected_entropy(), True, True)
        return cls(model, transforms > 1)


def normalise(tiles: torch.Tensor, spec: ForwardSpec, invalid: torch.Tensor | None) -> torch.Tensor:
    """N x H x W x C raw tiles -> N x C x H x W float32 (channels_last memory; N x D x H x W x C -> N x C x D x H x W
    alike), invalid pixels 0: the host's :meth:`~unetseg.data.normalization.Normalization.apply` arithmetic, bit
    for bit."""
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=tiles.device)
    inv = torch.tensor(spec.inv, dtype=torch.float32, device=tiles.device)
    # one float32 buffer, worked on in place: each out-of-place step was another tile-sized block from the heap
    x = tiles.to(torch.float32, copy=True)
    if spec.low is not None and spec.high is not None:  # CT: clipped raw values, as Normalization.apply
        low = torch.tensor(spec.low, dtype=torch.float32, device=tiles.device)
        high = torch.tensor(spec.high, dtype=torch.float32, device=tiles.device)
        torch.minimum(torch.maximum(x, low, out=x), high, out=x)
    x.sub_(mean).mul_(inv)  # two roundings, as numpy's in-place subtract and multiply (no fused multiply-add)
    if invalid is not None:
        x.masked_fill_(invalid[..., None], 0.0)
    return x.movedim(-1, 1)


class TileForward:
    """``start(tiles)``: a batch of raw tiles on the engine's device -> a function that gives its
    :class:`TileOutput`. Engines that run asynchronously (OpenVINO) compute the batch while the caller merges
    the one before; on CUDA the work is queued on the stream. Builds the engine's fused program when it has one
    and the spec allows (:attr:`ForwardSpec.plain`).

    Args:
        engine: what runs the model (:mod:`.engines`).
        spec: what to compute (:class:`ForwardSpec`).
    """

    def __init__(self, engine: Engine, spec: ForwardSpec) -> None:
        self.engine, self.spec = engine, spec
        self.transforms: list[Transform] = tta_transforms(spec.tta, spec.dims)
        fused = getattr(engine, "fused", None)
        self._fused: Callable[[torch.Tensor, torch.Tensor | None], Started] | None = (
            fused(spec) if fused is not None and spec.plain else None)

    @property
    def fused(self) -> bool:
        """Whether the engine runs the whole stage in its own graph."""
        return self._fused is not None

    def start(self, tiles: torch.Tensor) -> Started:
        spec = self.spec
        invalid = None if spec.invalid is None else invalid_pixels(tiles, spec.invalid.nodata, spec.invalid.rule)
        if self._fused is not None:
            return self._fused(tiles, invalid)
        x = normalise(tiles, spec, invalid)
        start = getattr(self.engine, "start", None)
        if spec.plain and start is not None:  # an asynchronous engine: the caller merges while it runs
            logits = start(x)
            return lambda: self._single(logits(), invalid)
        if spec.plain:
            out = self._single(self.engine(x), invalid)
        else:
            probs = self._combine(inv(self.engine(fwd(x))) for fwd, inv in self.transforms)
            classes = probs.shape[1] - spec.spread
            out = TileOutput(to_labels(probs) if spec.labels else None, None if spec.labels else probs, invalid,
                             classes)
        return lambda: out

    def __call__(self, tiles: torch.Tensor) -> TileOutput:
        return self.start(tiles)()

    def _single(self, logits: torch.Tensor, invalid: torch.Tensor | None) -> TileOutput:
        if self.spec.labels:
            return TileOutput(to_labels(logits, logits=True), None, invalid, logits.shape[1])
        return TileOutput(None, logits_to_probs(logits), invalid, logits.shape[1])

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.spec.entropy_channel:
            return logits_to_probs(out[:, :-1]), out[:, -1:].float()
        probs = logits_to_probs(out)
        return probs, entropy(probs) if self.spec.spread else None

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
