"""The contract every unetseg model keeps, whatever its architecture.

A model maps an NCHW float tensor to NCHW logits with ``num_classes`` channels and declares its own facts:
geometry (``output_size(n)``, ``valid_input_size(n)``, ``margin``, ``stride``, ``field_radius``), and what a
checkpoint carries for it (``normalization``, ``classes``, ``meta``). ``config`` holds the registry name and
the constructor arguments, so a checkpoint can rebuild the model from nothing else.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..data.classes import ClassTable
from ..data.normalization import Normalization
from .meta import CheckpointMeta
from .sizes import SizeRule


class SegmentationModel(nn.Module):
    """Base class: geometry helpers, input checking, the constructor config and the checkpoint facts.

    Attributes:
        meta: what the checkpoint recorded (:class:`~unetseg.models.meta.CheckpointMeta`; empty for a new model).
        normalization: ``meta.normalization``: how inputs are normalised (from training), or None: scale by dtype.
        classes: ``meta.classes``: class names and colours, or None: :meth:`ClassTable.default`.
    """

    registry_name: str = ""
    size_rule: SizeRule
    spatial_dims: int = 2  # 2: NCHW images; 3: NCDHW volumes
    in_channels: int
    num_classes: int

    def __init__(self) -> None:
        super().__init__()
        self._config_kwargs: dict[str, Any] = {}
        self._meta = CheckpointMeta()

    @property
    def config(self) -> dict[str, Any]:
        """``{"name": registry name, "kwargs": constructor arguments}`` (JSON-able)."""
        return {"name": self.registry_name, "kwargs": dict(self._config_kwargs)}

    # -- geometry ---------------------------------------------------------------------------------

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

    @property
    def field_radius(self) -> int | None:
        """Receptive-field radius in input pixels, or None when unknown (e.g. deep pretrained encoders)."""
        return None

    def output_size(self, n: int) -> int:
        """Output side length for an input side of ``n`` pixels; ValueError if ``n`` is not accepted."""
        return self.size_rule.output_size(n)

    def valid_input_size(self, n: int) -> int:
        """The accepted input side length nearest to ``n``."""
        return self.size_rule.valid_input_size(n)

    @property
    def axis_rules(self) -> tuple[SizeRule, ...]:
        """The size rule of each spatial axis (H, W; or D, H, W); one shared rule unless the model has
        per-axis pooling (``size_rules``)."""
        return getattr(self, "size_rules", (self.size_rule,) * self.spatial_dims)

    def encoder_modules(self) -> list[nn.Module]:
        """The modules of the contracting path (what ``train.freeze_encoder_epochs`` holds still)."""
        return []

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the nearest valid sizes instead of a shape error deep in torch."""
        if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
            return
        axes = ("depth", "height", "width")[-self.spatial_dims:]
        if x.ndim != 2 + self.spatial_dims or x.shape[1] != self.in_channels:
            names = ", ".join(a[0].upper() for a in axes)
            raise ValueError(f"expected input of shape (N, {self.in_channels}, {names}), got {tuple(x.shape)}")
        for axis, (rule, name) in enumerate(zip(self.axis_rules, axes, strict=True)):
            rule.check(int(x.shape[2 + axis]), f"input {name}")

    # -- what the checkpoint records ------------------------------------------------------------------

    @property
    def meta(self) -> CheckpointMeta:
        return self._meta

    @meta.setter
    def meta(self, value: CheckpointMeta | dict[str, Any]) -> None:
        """A :class:`CheckpointMeta`, or its stored dict form (an unknown key is a ValueError naming it)."""
        if isinstance(value, dict):
            value = CheckpointMeta.from_dict(value, strict=True)
        if not isinstance(value, CheckpointMeta):
            raise TypeError(f"model.meta must be a CheckpointMeta or a dict, got {type(value).__name__}")
        self._meta = value

    @property
    def normalization(self) -> Normalization | None:
        return self.meta.normalization

    @normalization.setter
    def normalization(self, value: Normalization | None) -> None:
        self._meta = replace(self._meta, normalization=value)

    @property
    def classes(self) -> ClassTable | None:
        return self.meta.classes

    @classes.setter
    def classes(self, value: ClassTable | None) -> None:
        self._meta = replace(self._meta, classes=value)


    @property
    def class_table(self) -> ClassTable:
        """``classes`` when they fit ``num_classes``, else the defaults (background black, distinct colours)."""
        if self.classes is not None and self.classes.num_classes == self.num_classes:
            return self.classes
        return ClassTable.default(self.num_classes)

    @property
    def class_names(self) -> list[str] | None:
        return None if self.classes is None else list(self.classes.names)

    @class_names.setter
    def class_names(self, names: list[str] | None) -> None:
        if names is None:
            self.classes = None
            return
        keep = self.classes is not None and self.classes.num_classes == len(names)
        colors = self.classes.colors if keep else ClassTable.default(len(names)).colors  # type: ignore[union-attr]
        self.classes = ClassTable(tuple(names), colors)

    @property
    def class_colors(self) -> list[list[int]] | None:
        return None if self.classes is None else [list(c) for c in self.classes.colors]

    @class_colors.setter
    def class_colors(self, colors: list[list[int]]) -> None:
        names = self.classes.names if self.classes is not None and len(self.classes.names) == len(colors) \
            else ClassTable.default(len(colors)).names
        self.classes = ClassTable(tuple(names), tuple(tuple(c) for c in colors))
