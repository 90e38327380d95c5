"""An exponential moving average of the weights (``train.ema``): what validation scores and best.pt holds.

Each optimizer step moves the average towards the weights by ``1 - d``, with ``d = min(ema, (1 + n) / (10 + n))``
after ``n`` steps: the average follows the weights closely at first (the first weights are poor) and settles to the
configured decay (0.999: about the last thousand steps). The weights the optimizer moves stay in last.pt (the
resume state, with the average); validation, best.pt and what is made from it (the measured halo, the tuned object
post-processing) use the average.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The moving average of ``source``'s parameters and buffers, in :attr:`model` (a frozen copy in eval mode).
    Integer buffers (BatchNorm's step count) are copied, not averaged."""

    def __init__(self, source: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay {decay}: must be in (0, 1)")
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(source).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        # the tensors of both state dicts, paired once: optimizer steps and load_state_dict change them in place
        averaged, current = self.model.state_dict(), source.state_dict()
        self._floats = [(averaged[k], current[k]) for k in averaged if averaged[k].is_floating_point()]
        self._others = [(averaged[k], current[k]) for k in averaged if not averaged[k].is_floating_point()]

    def current_decay(self) -> float:
        """The decay of the next update."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average one step towards the source's current weights."""
        averaged, current = zip(*self._floats, strict=True)
        torch._foreach_lerp_(list(averaged), list(current), 1.0 - self.current_decay())
        for mine, theirs in self._others:
            mine.copy_(theirs)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
