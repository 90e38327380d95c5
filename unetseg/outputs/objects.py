"""Which objects a prediction's object kinds write: the options users set and the rules they resolve to."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnetsegError
from ..models.base import SegmentationModel
from ..objects.separate import ObjectRule, class_region_rule, object_rule

POLYGONS = ("objects", "classes")


@dataclass(frozen=True)
class ObjectOptions:
    """``--min-object-size`` (px, default 0), ``--split-touching`` (erosion depth in px cutting touching blobs of
    plain class maps; 0: off), ``--background`` (the class that makes no objects; None: every class makes them)
    and ``--polygons`` ("objects": the objects' outlines; "classes": the class regions as they are)."""

    min_size: int = 0
    split: int = 0
    background: int | None = 0
    polygons: str = "objects"

    def __post_init__(self) -> None:
        if self.min_size < 0 or self.split < 0:
            raise UnetsegError(f"--min-object-size and --split-touching must be >= 0, got {self.min_size} and "
                               f"{self.split}")
        if self.polygons not in POLYGONS:
            raise UnetsegError(f"--polygons {self.polygons!r}: choose from {', '.join(POLYGONS)}")

    def rules(self, model: SegmentationModel) -> ObjectRules:
        """The rules for ``model``; splitting an instance-trained model's objects is refused in one line."""
        if self.background is not None and not 0 <= self.background < model.num_classes:
            raise UnetsegError(f"--background {self.background}: the model has classes 0..{model.num_classes - 1}")
        try:
            rule = object_rule(model, background=self.background, split=self.split, min_size=self.min_size)
        except ValueError as err:
            raise UnetsegError(f"--split-touching: {err}") from None
        polygons = class_region_rule(model.num_classes) if self.polygons == "classes" else rule
        return ObjectRules(rule, polygons)


@dataclass(frozen=True)
class ObjectRules:
    """The rule of the ``instances`` and ``objects`` kinds, and that of the polygon kinds."""

    objects: ObjectRule
    polygons: ObjectRule


OBJECT_DEFAULTS = ObjectOptions()
