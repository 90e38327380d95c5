"""Instance masks as training data: label images (0 = background, one id per object) become class targets of
one of two kinds (``data.instance_target``):

* ``three_class`` (the default): background, object interior (one class per object class) and object boundary.
  A model trained on these separates touching objects: its interior class seeds one object each, and
  :mod:`unetseg.objects.separate` grows the boundary back onto them. The boundary is the object's own pixels
  within ``boundary_width`` px (chessboard distance) of another object or of the background.
* ``distance``: the distance of each object pixel to its object's boundary, quantised into ``distance_levels``
  ordinal classes of ``distance_bin`` px (class 0 background; class l for distances in
  ``[1 + (l-1) * bin, 1 + l * bin)`` px, the last class open-ended), learned with cross-entropy as Bai & Urtasun's
  "Deep Watershed Transform" (2017) learns its quantised energy levels. Objects come back from a bounded seeded
  watershed on the levels (:class:`unetseg.objects.separate.ObjectRule` with ``flood_levels``).
  ``distance_relative``: the levels are equal fractions of each object's own depth instead (level l for distances
  in ``[1 + (l-1) * D / K, 1 + l * D / K)`` px, D the object's deepest distance): every object, small or large,
  has all K levels and a core of the top ones, and the neck between touching objects stays shallow relative to
  both; ``distance_bin`` is then only how far each level floods (px, minus one), at least the deepest object's
  D / K.
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import UnetsegError
from .classes import ClassTable

# Boundary width of the targets, px. Chosen by measurement on the nuclei sample (AP@0.5 on the held-out
# nuclei, same 3-minute budget, 2-core AMD EPYC): see README "Objects".
BOUNDARY_WIDTH = 2
BOUNDARY_NAME = "boundary"
BOUNDARY_COLOR = (255, 64, 64)
INSTANCE_TARGETS = ("three_class", "distance")
# Distance targets: levels and bin width, px. The nuclei sample's nuclei reach 5-13 px from their boundary, so
# 6 levels of 2 px resolve their cores; deeper pixels share the last level.
DISTANCE_LEVELS = 6
DISTANCE_BIN = 2
RELATIVE_PAD = 64  # px an object cut by the image edge may reach past it, for its relative distance levels


@dataclass(frozen=True)
class InstanceLayout:
    """The classes of instance targets.

    ``target="three_class"``: 0 background, 1..C the interiors of the C object classes, C+1 the boundary;
    ``boundary_width`` px. ``target="distance"`` (one object class only): 0 background, 1..``levels`` the
    quantised distance to the object's boundary, ``bin`` px per level, or ``relative``: equal fractions of each
    object's depth (see the module docstring).
    """

    object_names: tuple[str, ...] = ("object",)
    boundary_width: int = BOUNDARY_WIDTH
    target: str = "three_class"
    levels: int = DISTANCE_LEVELS
    bin: int = DISTANCE_BIN
    relative: bool = False

    def __post_init__(self) -> None:
        if self.target not in INSTANCE_TARGETS:
            raise ValueError(f"instance target {self.target!r}: choose from {', '.join(INSTANCE_TARGETS)}")
        if self.target == "distance":
            if len(self.object_names) != 1:
                raise ValueError(f"the distance target codes one object class, got {len(self.object_names)}: "
                                 f"{', '.join(self.object_names)}")
            if self.levels < 2 or self.bin < 1:
                raise ValueError(f"distance targets need levels >= 2 and bin >= 1 px, got {self.levels} and {self.bin}")

    @property
    def num_classes(self) -> int:
        return self.levels + 1 if self.target == "distance" else len(self.object_names) + 2

    @property
    def object_classes(self) -> tuple[int, ...]:
        return tuple(range(1, len(self.object_names) + 1))

    @property
    def boundary_class(self) -> int:
        return len(self.object_names) + 1

    def classes(self, colors: Sequence[Sequence[int]] | None = None) -> ClassTable:
        """Background, the object classes (``colors``, or the default ones), the boundary; for distance targets
        background and the levels ``<object>`` (level 1: objects are reported as of this class), ``<object> d2``
        .. ``<object> dK`` (colours darker to brighter)."""
        if self.target == "distance":
            base = np.array(colors[0] if colors else ClassTable.default(2).colors[1], float)
            shades = [tuple(int(round(v)) for v in base * (0.35 + 0.65 * lv / self.levels))
                      for lv in range(1, self.levels + 1)]
            name = self.object_names[0]
            return ClassTable(("background", name, *(f"{name} d{lv}" for lv in range(2, self.levels + 1))),
                              ((0, 0, 0), *shades))
        default = ClassTable.default(len(self.object_names) + 1)
        object_colors = [tuple(c) for c in (colors or default.colors[1:])]
        return ClassTable(("background", *self.object_names, BOUNDARY_NAME),
                          ((0, 0, 0), *object_colors, BOUNDARY_COLOR))

    def targets(self, instances: np.ndarray, object_class: Mapping[int, int] | None = None) -> np.ndarray:
        """HxW uint8 targets of an instance map: 0 background, the object's class id in its interior (1 unless
        ``object_class`` maps its id to another 1..C), :attr:`boundary_class` on its boundary."""
        inst = np.asarray(instances)
        if self.target == "distance":
            return distance_levels(inst, self.levels, self.bin, relative=self.relative)
        size = 2 * self.boundary_width + 1
        # neighbours outside the image repeat the edge: the image edge is no boundary
        hi = ndimage.maximum_filter(inst, size=size, mode="nearest")
        lo = ndimage.minimum_filter(inst, size=size, mode="nearest")
        inside = inst > 0
        out = inside.astype(np.uint8)
        if object_class:
            ids = np.fromiter(object_class.keys(), np.int64, len(object_class))
            lut = np.ones(int(max(inst.max(initial=0), ids.max(initial=0))) + 1, np.uint8)
            lut[ids] = np.fromiter(object_class.values(), np.int64, len(object_class))
            out[inside] = lut[inst[inside]]
        out[inside & ((hi != inst) | (lo != inst))] = self.boundary_class
        return out


def distance_levels(instances: np.ndarray, levels: int, bin_px: int, *, relative: bool = False) -> np.ndarray:
    """HxW uint8 distance targets of an instance map: 0 background; on an object pixel
    ``min(levels, 1 + floor((d - 1) / bin_px))`` with ``d`` its Euclidean distance (px) to the nearest pixel of
    another object or of the background (>= 1); ``relative``: ``1 + floor(levels * (d - 1) / D)`` with ``D`` the
    object's largest ``d`` (a UnetsegError when an object is deeper than ``levels * (bin_px + 1)``: the levels'
    flood would not cross it). The image edge is no boundary (the map's edge rows repeat outwards), so objects cut
    by the image edge keep their depth there."""
    inst = np.asarray(instances)
    # deeper than the last level's start (distances past it need not be exact); relative levels need each
    # object's whole depth, so an object cut by the edge may reach RELATIVE_PAD px past it
    pad = RELATIVE_PAD if relative else levels * bin_px + 1
    padded = np.pad(inst, pad, mode="edge")
    depth = np.zeros(padded.shape, np.float64)
    deepest = np.ones(padded.shape, np.float64) if relative else None  # each object pixel's D
    for k, box in enumerate(ndimage.find_objects(padded), start=1):
        if box is None:
            continue
        # the box grown by one px: its outer ring is not object k, so the nearest other pixel lies within it
        grown = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        own = padded[grown] == k
        d = ndimage.distance_transform_edt(own)[own]
        depth[grown][own] = d
        if deepest is not None:
            deepest[grown][own] = d.max()
    dist = np.maximum(depth[pad:-pad, pad:-pad] - 1, 0)  # d - 1 on objects
    if deepest is None:
        level = np.minimum(levels, 1 + np.floor(dist / bin_px))
    else:
        top = float(deepest.max())
        if top > levels * (bin_px + 1):
            raise UnetsegError(f"data.distance_bin {bin_px}: relative distance levels flood {bin_px + 1} px each, "
                               f"but an object is {top:.0f} px deep ({levels} levels of {top / levels:.1f} px); set "
                               f"data.distance_bin >= {int(np.ceil(top / levels)) - 1}")
        level = np.minimum(levels, 1 + np.floor(levels * dist / deepest[pad:-pad, pad:-pad]))
    level = level.astype(np.uint8)
    level[inst == 0] = 0
    return level


def check_instances(array: np.ndarray, name: str | os.PathLike) -> np.ndarray:
    """An instance mask as read from a file, checked: one band of non-negative integer ids (int64). Floats,
    colours, negative ids and ids that reach the dtype's largest value (more objects than the dtype can
    number: they wrap around) are one-line UnetsegErrors naming ``name``."""
    array = np.asarray(array)
    if array.ndim == 3:
        if not all(np.array_equal(array[..., 0], array[..., c]) for c in range(1, array.shape[2])):
            raise UnetsegError(f"{name}: an instance mask is a one-band label image, this one has {array.shape[2]} "
                               "bands with different values")
        array = array[..., 0]
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise UnetsegError(f"{name}: an instance mask holds integer object ids (0 = background), not {array.dtype} "
                           "values; save it as a uint8/uint16/uint32 label image")
    low, high = int(array.min(initial=0)), int(array.max(initial=0))
    if low < 0:
        raise UnetsegError(f"{name}: instance mask has negative id {low}; ids are 0 (background) and 1, 2, ...")
    top = np.iinfo(array.dtype).max
    if high == top and array.dtype.itemsize < 4:
        raise UnetsegError(f"{name}: instance id {high} is the largest value a {array.dtype} holds, so ids have "
                           f"probably wrapped around (more objects than it can number); save the mask as uint32")
    return array.astype(np.int64, copy=False)


def read_instance_classes(path: str | os.PathLike, names: Sequence[str]) -> dict[str | None, dict[int, int]]:
    """Object classes per instance id, from ``data.instance_classes``: ``{image stem or None (every image):
    {id: class id 1..C}}``, class names looked up in ``names``.

    CSV: a header with ``id`` and ``class`` columns, and optionally ``image`` (the image's stem). JSON:
    ``{"<id>": "<class>"}`` for every image, or ``{"<stem>": {"<id>": "<class>"}}``. An unknown class name,
    a bad id or a missing column is a one-line UnetsegError naming the file.
    """
    path = Path(path)
    index = {n: i + 1 for i, n in enumerate(names)}
    rows: list[tuple[str | None, str, str]] = []
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("expected an object mapping ids (or image stems) to classes")
            for key, value in data.items():
                if isinstance(value, dict):
                    rows += [(str(key), str(i), str(c)) for i, c in value.items()]
                else:
                    rows.append((None, str(key), str(value)))
        else:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                missing = {"id", "class"} - set(reader.fieldnames or [])
                if missing:
                    raise ValueError(f"missing column(s) {', '.join(sorted(missing))}")
                rows = [(r.get("image") or None, r["id"], r["class"]) for r in reader]
    except (OSError, ValueError) as err:
        raise UnetsegError(f"data.instance_classes {path}: cannot read ({err})") from None
    out: dict[str | None, dict[int, int]] = {}
    for stem, ident, name in rows:
        if name not in index:
            raise UnetsegError(f"data.instance_classes {path}: class {name!r} of id {ident} is not one of "
                               f"{', '.join(names)}")
        try:
            number = int(ident)
        except ValueError:
            raise UnetsegError(f"data.instance_classes {path}: id {ident!r} is not an integer") from None
        out.setdefault(stem, {})[number] = index[name]
    return out
