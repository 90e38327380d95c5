"""What a checkpoint records besides weights: one typed record, :class:`CheckpointMeta`, with a schema version.

Stored in a checkpoint as plain data (``weights_only`` loads accept nothing else) under ``"meta"``; schema 1
(unetseg 0.1 before this record: a free dict with ``class_names``, ``display``, ``epoch`` ... at the top) still
loads through :meth:`CheckpointMeta.from_dict`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..data.classes import ClassTable
from ..data.instances import InstanceLayout
from ..data.nodata import Nodata
from ..data.normalization import Normalization
from ..io.levels import to_micrometres

SCHEMA_VERSION = 2


def unetseg_version() -> str:
    from .._version import __version__

    return __version__


@dataclass(frozen=True)
class HaloRecord:
    """The context a same-padding model's tiles need, measured after training (``halo="auto"`` uses it):
    ``pixels`` per side, the label ``agreement`` with whole-image prediction it reached, the ``target``
    agreement, and how many probe pixels it was measured on."""

    pixels: int
    agreement: float = 1.0
    target: float = 0.9999
    probe_pixels: int = 0


@dataclass(frozen=True)
class InstanceRecord:
    """The model was trained on instance masks (:mod:`unetseg.data.instances`): ``object_classes`` are the class
    ids of object interiors, ``boundary_class`` that of their boundaries, ``boundary_width`` its width in px.
    ``target="distance"``: the classes 1..``levels`` are quantised distances to the object boundary, ``bin`` px
    each, or ``relative``: fractions of each object's depth (``object_classes`` is then ``(1,)`` and
    ``boundary_class`` 0, unused)."""

    object_classes: tuple[int, ...]
    boundary_class: int
    boundary_width: int
    target: str = "three_class"
    levels: int = 0
    bin: int = 0
    relative: bool = False

    def layout(self, object_names: tuple[str, ...]) -> InstanceLayout:
        """The target layout the model was trained on (``object_names``: its object classes' names)."""
        if self.target == "distance":
            return InstanceLayout(object_names[:1], self.boundary_width, "distance", self.levels, self.bin,
                                  self.relative)
        return InstanceLayout(object_names, self.boundary_width)


def instance_record(layout: InstanceLayout) -> InstanceRecord:
    """The record of a run trained on ``layout``'s targets."""
    if layout.target == "distance":
        return InstanceRecord((1,), 0, layout.boundary_width, "distance", layout.levels, layout.bin,
                              layout.relative)
    return InstanceRecord(layout.object_classes, layout.boundary_class, layout.boundary_width)


@dataclass(frozen=True)
class ObjectTuning:
    """Post-processing chosen on the run's validation images to maximise AP@0.5 (``unetseg predict`` and
    ``evaluate`` use it unless overridden): ``seed_level`` (distance targets: seeds are pixels of level >= it;
    None for three-class targets) or ``seed_height`` (distance targets: seeds are the tops of domes at least that
    many levels high, :mod:`unetseg.objects.domes`; None: seeds by level), ``min_size`` px, ``tta`` (the test-time augmentation the class maps are
    predicted with: None, "flips"; ``tta="auto"`` predictions take it), and the validation ``ap50``/``ap75`` it
    reached on ``images`` images (``default_ap50``: that of the untuned defaults without TTA, for comparison)."""

    min_size: int = 0
    seed_level: int | None = None
    seed_height: int | None = None
    tta: str | None = None
    ap50: float | None = None
    ap75: float | None = None
    default_ap50: float | None = None
    images: int = 0


def _tuned_tta(value: Any) -> str | None:
    if value is None or value in ("flips", "d4"):
        return value
    raise ValueError(f"object_tuning.tta must be null, 'flips' or 'd4', got {value!r}")


@dataclass(frozen=True)
class TrainingRecord:
    """Where the weights come from: the resolved run ``config`` (JSON-able), the ``epoch`` and ``global_step``
    they were saved at, the validation mIoU then, and the ``parent`` checkpoint a fine-tuning run started from."""

    config: dict[str, Any] | None = None
    epoch: int | None = None
    global_step: int | None = None
    val_miou: float | None = None
    parent: str | None = None


@dataclass(frozen=True)
class CheckpointMeta:
    """Everything a checkpoint knows about its model's data, typed. Every field is optional.

    Attributes:
        classes: class names and colours (index = class id).
        normalization: how input images are normalised (from the training images).
        nodata: the nodata setting, the value it resolved to and the band rule of the training images.
        ignore_index: the label the loss ignored (masks' "unlabelled"), if any.
        class_values: mask value of class 0, 1, ... (value-coded masks), if not the ids themselves.
        pixel_size: (y, x) physical size of a training-image pixel, in ``pixel_unit``; ``unetseg predict``
            segments the pyramid level nearest it by default.
        pixel_unit: "micrometer", "meter", ... (as the files name it).
        spacing: (z, y, x) voxel size of the training volumes (3D models; usually mm): tiles of volumes whose
            spacing is not given are shaped by it.
        orientation: the axis codes of the training volumes' voxel axes (z, y, x), e.g. ``("S", "P", "R")``
            (``nibabel.aff2axcodes`` of their affine, reversed to the volume's axis order).
        halo: the measured context of a same-padding model (:class:`HaloRecord`).
        instances: how the classes code objects when the model was trained on instance masks
            (:class:`InstanceRecord`), else None.
        object_tuning: object post-processing chosen on validation images after training (:class:`ObjectTuning`),
            else None.
        display_bands: image bands previews show ([r, g, b] or [b], from 0).
        input_size: the training patch side (model input).
        data: a JSON-able summary of the training data (normalisation statistics, warnings, file count).
        training: the run that made the weights (:class:`TrainingRecord`).
        unetseg_version: the unetseg that wrote the checkpoint.
        schema: the layout version of this record (``SCHEMA_VERSION``).
    """

    classes: ClassTable | None = None
    normalization: Normalization | None = None
    nodata: Nodata | None = None
    ignore_index: int | None = None
    class_values: tuple[float, ...] | None = None
    pixel_size: tuple[float, float] | None = None
    pixel_unit: str | None = None
    spacing: tuple[float, ...] | None = None
    orientation: tuple[str, ...] | None = None
    halo: HaloRecord | None = None
    instances: InstanceRecord | None = None
    object_tuning: ObjectTuning | None = None
    display_bands: tuple[int, ...] | None = None
    input_size: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    training: TrainingRecord | None = None
    unetseg_version: str = field(default_factory=unetseg_version)
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain data (None fields left out), as stored in a checkpoint."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name == "data" and not value):
                continue
            if isinstance(value, (ClassTable, Normalization, Nodata)):
                value = value.to_dict()
            elif isinstance(value, (HaloRecord, InstanceRecord, ObjectTuning, TrainingRecord)):
                value = {k: v for k, v in asdict(value).items() if v is not None}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return _plain(out)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, strict: bool = False) -> CheckpointMeta:
        """The record of a stored dict, this schema or schema 1. ``strict``: an unknown key is a ValueError
        naming it (what :func:`unetseg.save_checkpoint` is given); otherwise unknown keys are ignored (a
        newer unetseg's additions). Malformed values raise ValueError/TypeError/KeyError."""
        data = dict(data or {})
        legacy_training = {k: data.pop(k) for k in ("config", "epoch", "global_step", "val_miou", "parent")
                           if k in data}
        names, colors = data.pop("class_names", None), data.pop("class_colors", None)
        display = data.pop("display", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if strict and unknown:
            raise ValueError(f"unknown checkpoint meta key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        kw: dict[str, Any] = {}
        if data.get("classes") is not None:
            kw["classes"] = data["classes"] if isinstance(data["classes"], ClassTable) \
                else ClassTable.from_dict(data["classes"])
        elif names is not None or colors is not None:
            default = ClassTable.default(len(names if names is not None else colors))
            kw["classes"] = ClassTable(tuple(names if names is not None else default.names),
                                       tuple(tuple(c) for c in (colors if colors is not None else default.colors)))
        if data.get("normalization") is not None:
            norm = data["normalization"]
            kw["normalization"] = norm if isinstance(norm, Normalization) else Normalization.from_dict(norm)
        if data.get("nodata") is not None:
            kw["nodata"] = data["nodata"] if isinstance(data["nodata"], Nodata) else Nodata.from_dict(data["nodata"])
        if data.get("ignore_index") is not None:
            kw["ignore_index"] = int(data["ignore_index"])
        if data.get("class_values") is not None:
            kw["class_values"] = tuple(float(v) for v in data["class_values"])
        if data.get("pixel_size") is not None:
            kw["pixel_size"] = pixel_size_pair(data["pixel_size"])
        if data.get("pixel_unit") is not None:
            kw["pixel_unit"] = str(data["pixel_unit"])
        if data.get("spacing") is not None:
            kw["spacing"] = spacing_triple(data["spacing"])
        if data.get("orientation") is not None:
            kw["orientation"] = tuple(str(c) for c in data["orientation"])
            if len(kw["orientation"]) != 3:
                raise ValueError(f"orientation must be three axis codes, got {data['orientation']!r}")
        if data.get("halo") is not None:
            halo = data["halo"]
            kw["halo"] = halo if isinstance(halo, HaloRecord) else HaloRecord(
                int(halo["pixels"]), float(halo.get("agreement", 1.0)), float(halo.get("target", 0.9999)),
                int(halo.get("probe_pixels", 0)))
        if data.get("instances") is not None:
            inst = data["instances"]
            kw["instances"] = inst if isinstance(inst, InstanceRecord) else InstanceRecord(
                tuple(int(c) for c in inst["object_classes"]), int(inst["boundary_class"]),
                int(inst["boundary_width"]), str(inst.get("target", "three_class")), int(inst.get("levels", 0)),
                int(inst.get("bin", 0)), bool(inst.get("relative", False)))
        if data.get("object_tuning") is not None:
            tuned = data["object_tuning"]
            kw["object_tuning"] = tuned if isinstance(tuned, ObjectTuning) else ObjectTuning(
                min_size=int(tuned.get("min_size", 0)),
                seed_level=None if tuned.get("seed_level") is None else int(tuned["seed_level"]),
                seed_height=None if tuned.get("seed_height") is None else int(tuned["seed_height"]),
                tta=_tuned_tta(tuned.get("tta")), images=int(tuned.get("images", 0)),
                **{k: None if tuned.get(k) is None else float(tuned[k]) for k in ("ap50", "ap75", "default_ap50")})
        bands = data.get("display_bands", (display or {}).get("bands") if isinstance(display, dict) else None)
        if bands is not None:
            kw["display_bands"] = tuple(int(b) for b in bands)
        if data.get("input_size") is not None:
            kw["input_size"] = int(data["input_size"])
        if data.get("data"):
            kw["data"] = dict(data["data"])
        training = data.get("training")
        if isinstance(training, TrainingRecord):
            kw["training"] = training
        elif training is not None or legacy_training:
            record = {**legacy_training, **(training or {})}
            kw["training"] = TrainingRecord(**{k: record.get(k) for k in ("config", "epoch", "global_step",
                                                                           "val_miou", "parent")})
        if data.get("unetseg_version") is not None:
            kw["unetseg_version"] = str(data["unetseg_version"])
        kw["schema"] = int(data.get("schema", 1))
        return cls(**kw)

    def updated(self, **changes: Any) -> CheckpointMeta:
        """A copy with ``changes`` (given as stored values or typed ones, e.g. ``pixel_size=0.5`` or
        ``class_names=[...]``), parsed as :meth:`from_dict` does; the version fields are this unetseg's."""
        merged = {**_shallow(self), **changes, "unetseg_version": unetseg_version(), "schema": SCHEMA_VERSION}
        if "class_names" in changes or "class_colors" in changes:
            merged.pop("classes", None)
        return CheckpointMeta.from_dict(merged, strict=True)

    def with_halo(self, halo: HaloRecord) -> CheckpointMeta:
        return replace(self, halo=halo)

    def pixel_size_um(self) -> float | None:
        """The x pixel size in micrometres (a unit-less size is taken as micrometres), or None."""
        if self.pixel_size is None:
            return None
        return to_micrometres(self.pixel_size[1], self.pixel_unit)


def pixel_size_pair(value: Any) -> tuple[float, float]:
    """A pixel size as (y, x): one positive number for both axes, or two."""
    sizes = [value] if isinstance(value, (int, float)) else list(value)
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or not all(isinstance(s, (int, float)) and math.isfinite(s) and s > 0 for s in sizes):
        raise ValueError(f"pixel_size must be one or two positive numbers, got {value!r}")
    return float(sizes[0]), float(sizes[1])


def spacing_triple(value: Any) -> tuple[float, float, float]:
    """A voxel spacing as (z, y, x): three positive numbers."""
    sizes = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(sizes) != 3 or not all(isinstance(s, (int, float)) and math.isfinite(s) and s > 0 for s in sizes):
        raise ValueError(f"spacing must be three positive numbers (z, y, x), got {value!r}")
    return float(sizes[0]), float(sizes[1]), float(sizes[2])


def _shallow(meta: CheckpointMeta) -> dict[str, Any]:
    return {f.name: getattr(meta, f.name) for f in fields(meta) if getattr(meta, f.name) is not None}


def _plain(value: Any) -> Any:
    """Plain JSON-like data: tuples as lists, paths as strings, mapping keys as strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
