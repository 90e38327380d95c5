"""The contract every unetseg model keeps, whatever its architecture.

A model maps an NCHW float tensor to NCHW logits with ``num_classes`` channels and knows its own
geometry: ``output_size(n)``, ``valid_input_size(n)``, ``margin`` (context lost per side) and
``stride`` (tile origins must be multiples of it). ``config`` holds the registry name and the
constructor arguments, so a checkpoint can rebuild the model from nothing else.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .sizes import SizeRule


class SegmentationModel(nn.Module):
    """Base class: geometry helpers, input checking and the constructor config."""

    registry_name: str = ""
    size_rule: SizeRule
    in_channels: int
    num_classes: int

    def __init__(self) -> None:
        super().__init__()
        self._config_kwargs: dict[str, Any] = {}

    @property
    def config(self) -> dict[str, Any]:
        """``{"name": registry name, "kwargs": constructor arguments}`` (JSON-able)."""
        return {"name": self.registry_name, "kwargs": dict(self._config_kwargs)}

    @property
    def padding(self) -> str:
        return self.size_rule.padding

    @property
    def margin(self) -> int:
        """Context pixels lost on each side of the input (92 for the paper's U-Net, 0 for "same")."""
        return self.size_rule.margin

    @property
    def stride(self) -> int:
        """Downsampling factor; shifting the input by a multiple of it shifts the output alike."""
        return self.size_rule.stride

    def output_size(self, n: int) -> int:
        """Output side length for an input side of ``n`` pixels; ValueError if ``n`` is not accepted."""
        return self.size_rule.output_size(n)

    def valid_input_size(self, n: int) -> int:
        """The accepted input side length nearest to ``n``."""
        return self.size_rule.valid_input_size(n)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the nearest valid sizes instead of a shape error deep in torch."""
        if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
            return
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        self.size_rule.check(int(x.shape[-2]), "input height")
        self.size_rule.check(int(x.shape[-1]), "input width")
