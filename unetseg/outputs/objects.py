"""Which objects a prediction's object kinds write: the options users set and the rules they resolve to."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnetsegError
from ..models.base import SegmentationModel
from ..objects.separate import ObjectRule, class_region_rule, object_rule

POLYGONS = ("objects", "classes")


@dataclass(frozen=True)
class ObjectOptions:
    """``--min-object-size`` (px; None, the default: the size tuned on the run's validation images, else 0),
    ``--seed-level`` (distance-target models; None: the tuned level, else the middle one) or ``--seed-height``
    (distance-target models: seeds are the tops of domes at least that many levels high), ``--split-touching`` (erosion depth in px cutting touching blobs of
    plain class maps; 0: off), ``--background`` (the class that makes no objects; None: every class makes them)
    and ``--polygons`` ("objects": the objects' outlines; "classes": the class regions as they are)."""

    min_size: int | None = None
    split: int = 0
    background: int | None = 0
    polygons: str = "objects"
    seed_level: int | None = None
    seed_height: int | None = None

    def __post_init__(self) -> None:
        if (self.min_size is not None and self.min_size < 0) or self.split < 0:
            raise UnetsegError(f"--min-object-size and --split-touching must be >= 0, got {self.min_size} and "
                               f"{self.split}")
        if self.seed_level is not None and self.seed_height is not None:
            raise UnetsegError(f"--seed-level {self.seed_level} and --seed-height {self.seed_height}: give one")
        if self.polygons not in POLYGONS:
            raise UnetsegError(f"--polygons {self.polygons!r}: choose from {', '.join(POLYGONS)}")

    def rules(self, model: SegmentationModel) -> ObjectRules:
        """The rules for ``model``; splitting an instance-trained model's objects is refused in one line."""
        if self.background is not None and not 0 <= self.background < model.num_classes:
            raise UnetsegError(f"--background {self.background}: the model has classes 0..{model.num_classes - 1}")
        if self.seed_level is not None:
            check_seed_level(model, self.seed_level, "--seed-level")
        if self.seed_height is not None:
            check_seed_level(model, self.seed_height, "--seed-height")
        try:
            rule = object_rule(model, background=self.background, split=self.split, min_size=self.min_size,
                               seed_level=self.seed_level, seed_height=self.seed_height)
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


def check_seed_level(model: SegmentationModel, value: int, option: str = "--seed-level") -> None:
    """A ``--seed-level`` or ``--seed-height`` for ``model``: 1..its distance levels, else one line naming the
    value."""
    record = model.meta.instances
    if record is None or record.target != "distance":
        raise UnetsegError(f"{option} {value}: applies to models trained on distance targets "
                           "(data.instance_target: distance); this one is not")
    if not 1 <= value <= record.levels:
        raise UnetsegError(f"{option} {value}: the model has distance levels 1..{record.levels}")


def object_rules(model: SegmentationModel, min_size: int | None, seed_level: int | None,
                 seed_height: int | None = None) -> ObjectRule:
    """The object rule ``unetseg evaluate`` scores ``model`` by (``--min-object-size``, ``--seed-level``,
    ``--seed-height``)."""
    return ObjectOptions(min_size=min_size, seed_level=seed_level, seed_height=seed_height).rules(model).objects
