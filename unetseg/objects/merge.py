"""Joining the blocks of a map into one set of objects (:class:`ObjectMerger`), with one union-find.

Blocks (:class:`Block`, made by :func:`unetseg.objects.separate.label_block`) label their own pixels with
block-local ids. Pieces of one object in different blocks are joined where two blocks saw the same seed pixel,
where rim pieces touch across a block face (8-adjacent) and, for background, where it touches across a face
(4-adjacent); holes are background components off the image edge next to one object only. The objects are
then numbered 1..N in raster order of their first pixel, whatever the blocks were.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

if TYPE_CHECKING:
    from .separate import ObjectRule

STATS = ("area", "sum_r", "sum_c", "min_r", "min_c", "max_r", "max_c", "first", "prob_sum", "prob_n")


@dataclass
class Block:
    """One block's objects: its core's provisional labels and what merging needs.

    ``labels`` (core, int32): > 0 the block-local object id, < 0 minus the block-local background component
    id, 0 for invalid pixels. ``seeds``: (pixel index, local object id) of seed pixels within the block's
    halo of its core edge, inside and outside the core; ``ring``: (pixel index, object id, background id,
    class, is-rim) of the core's outermost pixels; ``pairs``: (background id, object id) 4-adjacent inside
    the core; ``objects``/``background``: per local id (index 0 unused) statistics of :data:`STATS`, plus
    object classes and edge contact.
    """

    origin: tuple[int, int]
    shape: tuple[int, int]  # of the core
    labels: np.ndarray
    n_objects: int
    n_background: int
    objects: dict[str, np.ndarray]
    background: dict[str, np.ndarray]
    seeds: np.ndarray
    ring: np.ndarray
    pairs: np.ndarray


@dataclass
class ObjectTable:
    """The objects of one map, numbered 1..N in raster order, with their statistics (arrays of length N).

    ``area`` px; ``centroid_row``/``centroid_col`` px (pixel centres); ``min_row``, ``min_col``,
    ``max_row``, ``max_col`` (inclusive); ``class_id``; ``mean_prob`` (NaN without probabilities);
    ``touches_edge``."""

    area: np.ndarray
    centroid_row: np.ndarray
    centroid_col: np.ndarray
    min_row: np.ndarray
    min_col: np.ndarray
    max_row: np.ndarray
    max_col: np.ndarray
    class_id: np.ndarray
    mean_prob: np.ndarray
    touches_edge: np.ndarray

    def __len__(self) -> int:
        return len(self.area)

    def counts_per_class(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.class_id, minlength=num_classes)[:num_classes]


@dataclass(frozen=True)
class Relabeling:
    """Provisional block labels -> final object ids: each block's id offsets and the lookup tables (small and
    picklable: what Dask tasks relabelling chunks receive)."""

    object_base: tuple[int, ...]
    background_base: tuple[int, ...]
    objects: np.ndarray
    background: np.ndarray

    def __call__(self, index: int, labels: np.ndarray) -> np.ndarray:
        """Block ``index``'s provisional labels (:attr:`Block.labels`) as final object ids (uint32; 0 = none)."""
        out = np.zeros(labels.shape, np.uint32)
        pos = labels > 0
        out[pos] = self.objects[labels[pos].astype(np.int64) + self.object_base[index]]
        neg = labels < 0
        out[neg] = self.background[self.background_base[index] - labels[neg].astype(np.int64)]
        return out


@dataclass
class _Open:
    """A block whose neighbours may still come: its core's bounds, seed records and ring (global ids)."""

    bounds: tuple[int, int, int, int]
    seeds: np.ndarray
    ring: np.ndarray

    def touches(self, other: tuple[int, int, int, int]) -> bool:
        return touching(self.bounds, other)


def touching(one: tuple[int, int, int, int], other: tuple[int, int, int, int]) -> bool:
    """Whether two cores (r0, r1, c0, c1) meet: their closures share a face or a corner."""
    a, b, c, d = one
    e, f, g, h = other
    return e <= b and a <= f and g <= d and c <= h


def neighbours(index: np.ndarray, shape: tuple[int, int]) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Pixel pairs among sorted keys ``index`` (raster indices of a map of ``shape``, possibly offset by whole
    multiples of its pixel count, which keeps layers apart): per forward 8-neighbour offset (dy, dx), the positions
    (i, j) in ``index`` of the pairs that are neighbours by it."""
    pixels, width = shape[0] * shape[1], shape[1]
    row, col = (index % pixels) // width, index % width
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each neighbour pair once
        ok = (col + dx >= 0) & (col + dx < width) & (row + dy < shape[0])
        target = index + dy * width + dx
        pos = np.minimum(np.searchsorted(index, target), len(index) - 1)
        hit = ok & (index[pos] == target)
        yield dy, dx, np.flatnonzero(hit), pos[hit]


@dataclass
class ObjectMerger:
    """Joins blocks (:func:`~unetseg.objects.separate.label_block`) into one numbering: :meth:`~ObjectMerger.add` each block (in
    raster order of their origins), :meth:`~ObjectMerger.finish`, then :meth:`~ObjectMerger.relabel` each block's provisional labels (in any order) to the final
    ids. A block's edges are matched against its neighbours' as it comes and then dropped once no neighbour can
    come any more, so the merger holds about two rows of blocks' edges, whatever the image size."""

    image_shape: tuple[int, int]
    rule: ObjectRule
    object_base: list[int] = field(default_factory=list)
    background_base: list[int] = field(default_factory=list)
    n_objects: int = 0
    n_background: int = 0
    _obj: list[dict[str, np.ndarray]] = field(default_factory=list)
    _bg: list[dict[str, np.ndarray]] = field(default_factory=list)
    _open: list[_Open] = field(default_factory=list)
    _links: dict[str, list[np.ndarray]] = field(default_factory=lambda: {"objects": [], "background": [], "pairs": []})
    table: ObjectTable | None = None
    relabeling: Relabeling | None = None

    def add(self, block: Block) -> int:
        """Take one block's statistics and edges; returns its index (for :meth:`relabel`)."""
        if self._open and tuple(block.origin) < max(tuple(o.bounds[::2]) for o in self._open):
            raise ValueError("ObjectMerger.add takes blocks in raster order of their origins")
        ob, bb = self.n_objects, self.n_background
        self.object_base.append(ob)
        self.background_base.append(bb)
        self.n_objects += block.n_objects
        self.n_background += block.n_background
        self._obj.append({k: v[1:] for k, v in block.objects.items()})
        self._bg.append({k: v[1:] for k, v in block.background.items()})
        seeds = block.seeds.copy()
        seeds[:, 1] += ob
        ring = block.ring.copy()
        ring[:, 1] = np.where(ring[:, 1] > 0, ring[:, 1] + ob, 0)
        ring[:, 2] = np.where(ring[:, 2] > 0, ring[:, 2] + bb, 0)
        self._links["pairs"].append(block.pairs + np.array([bb, ob]))
        (r0, c0), (h, w) = block.origin, block.shape
        new = _Open((r0, r0 + h, c0, c0 + w), seeds, ring)
        for old in self._open:
            if old.touches(new.bounds):
                self._links["objects"].append(_unique(_same_pixel(np.concatenate([old.seeds, new.seeds]))))
                found = _ring_links(np.concatenate([old.ring, new.ring]), self.image_shape)
                for key, pairs in found.items():
                    self._links[key].append(_unique(pairs))
        # a block whose next row of blocks has been passed can meet no block still to come
        self._open = [o for o in self._open if o.bounds[1] >= r0] + [new]
        return len(self.object_base) - 1

    def finish(self) -> ObjectTable:
        """Union the blocks' pieces, fill holes, drop small objects, number the rest in raster order."""
        n_o, n_b = self.n_objects, self.n_background
        self._open = []
        links = {k: _stack(v, 2) for k, v in self._links.items()}
        obj_root = _components(n_o, links["objects"])
        bg_root = _components(n_b, links["background"])
        objects = _reduce(_gather(self._obj, (*STATS, "cls", "edge")), obj_root, n_o, maxima=("cls", "edge"))
        background = _reduce(_gather(self._bg, (*STATS, "border")), bg_root, n_b, maxima=("border",))
        hole_of = np.full(n_b, -1, np.int64)
        if self.rule.fill_holes:
            hole_of = _holes(links["pairs"], bg_root, obj_root, background["border"] > 0)
            _absorb(objects, background, hole_of)
        roots = np.unique(obj_root)
        keep = roots[objects["area"][roots] >= max(self.rule.min_size, 1)]
        keep = keep[np.argsort(objects["first"][keep], kind="stable")]
        final = np.zeros(max(n_o, 1), np.int64)
        final[keep] = np.arange(1, len(keep) + 1)
        filled = np.where(hole_of[bg_root] >= 0, final[np.maximum(hole_of[bg_root], 0)], 0)
        self.relabeling = Relabeling(tuple(self.object_base), tuple(self.background_base),
                                     np.concatenate([[0], final[obj_root]]).astype(np.uint32),
                                     np.concatenate([[0], filled]).astype(np.uint32))
        area, prob_n = objects["area"][keep], objects["prob_n"][keep]
        mean_prob = np.full(len(keep), np.nan)
        np.divide(objects["prob_sum"][keep], prob_n, out=mean_prob, where=prob_n > 0)
        self.table = ObjectTable(area, objects["sum_r"][keep] / area, objects["sum_c"][keep] / area,
                                 objects["min_r"][keep], objects["min_c"][keep], objects["max_r"][keep],
                                 objects["max_c"][keep], objects["cls"][keep], mean_prob, objects["edge"][keep] > 0)
        return self.table

    def relabel(self, index: int, labels: np.ndarray) -> np.ndarray:
        """Block ``index``'s provisional labels (:attr:`Block.labels`) as final object ids (uint32; 0 = none)."""
        if self.relabeling is None:
            raise RuntimeError("ObjectMerger.relabel before finish()")
        return self.relabeling(index, labels)


def _same_pixel(records: np.ndarray) -> np.ndarray:
    """Union pairs of ids recorded at the same pixel (records: (pixel index, id))."""
    if not len(records):
        return np.zeros((0, 2), np.int64)
    order = np.lexsort((records[:, 1], records[:, 0]))
    r = records[order]
    same = r[1:, 0] == r[:-1, 0]
    return np.stack([r[:-1, 1][same], r[1:, 1][same]], 1)


def _ring_links(ring: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Links across block faces between core edge pixels of different blocks: rim pieces of one class
    (8-adjacent), background (4-adjacent), and (background, object) pairs (4-adjacent)."""
    empty = np.zeros((0, 2), np.int64)
    if not len(ring):
        return {"objects": empty, "background": empty, "pairs": empty}
    ring = ring[np.argsort(ring[:, 0], kind="stable")]
    found: dict[str, list[np.ndarray]] = {"objects": [], "background": [], "pairs": []}
    for dy, dx, i, j in neighbours(ring[:, 0], shape):
        a, b = ring[i], ring[j]
        piece = (a[:, 4] == 1) & (b[:, 4] == 1) & (a[:, 3] == b[:, 3])
        found["objects"].append(np.stack([a[piece, 1], b[piece, 1]], 1))
        if dy == 0 or dx == 0:  # 4-adjacent
            both_bg = (a[:, 2] > 0) & (b[:, 2] > 0)
            found["background"].append(np.stack([a[both_bg, 2], b[both_bg, 2]], 1))
            for s, t in ((a, b), (b, a)):
                sel = (s[:, 2] > 0) & (t[:, 1] > 0)
                found["pairs"].append(np.stack([s[sel, 2], t[sel, 1]], 1))
    return {k: np.concatenate(v) if v else empty for k, v in found.items()}


def _unique(pairs: np.ndarray) -> np.ndarray:
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def _stack(parts: list[np.ndarray], columns: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, columns), np.int64)


def _gather(parts: list[dict[str, np.ndarray]], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in keys}


def _holes(pairs: np.ndarray, bg_root: np.ndarray, obj_root: np.ndarray, border: np.ndarray) -> np.ndarray:
    """Per background component: the object it is a hole of (off the edge, next to that object only), else -1."""
    hole_of = np.full(len(border), -1, np.int64)
    if not len(pairs):
        return hole_of
    touching = np.unique(np.stack([bg_root[pairs[:, 0] - 1], obj_root[pairs[:, 1] - 1]], 1), axis=0)
    single = (np.bincount(touching[:, 0], minlength=len(border)) == 1) & ~border
    chosen = touching[single[touching[:, 0]]]
    hole_of[chosen[:, 0]] = chosen[:, 1]
    return hole_of


def _absorb(objects: dict[str, np.ndarray], background: dict[str, np.ndarray], hole_of: np.ndarray) -> None:
    """Add the holes' pixels to the statistics of the objects they fill (in place)."""
    holes = np.flatnonzero(hole_of >= 0)
    into = hole_of[holes]
    for key in ("area", "sum_r", "sum_c"):
        np.add.at(objects[key], into, background[key][holes])
    for key, op in (("min_r", np.minimum), ("min_c", np.minimum), ("max_r", np.maximum), ("max_c", np.maximum),
                    ("first", np.minimum)):
        op.at(objects[key], into, background[key][holes])


def _components(n: int, links: np.ndarray) -> np.ndarray:
    """Root (component index) of ids 1..n (returned for index 0..n-1) under ``links`` (pairs of ids 1..n)."""
    if n == 0:
        return np.zeros(0, np.int64)
    links = links[(links[:, 0] > 0) & (links[:, 1] > 0)] - 1 if len(links) else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(links), bool), (links[:, 0], links[:, 1])), shape=(n, n))
    _, root = connected_components(graph, directed=False)
    return root.astype(np.int64)


def _reduce(stats: dict[str, np.ndarray], root: np.ndarray, n: int, maxima: tuple[str, ...] = ()
            ) -> dict[str, np.ndarray]:
    """Statistics of ids 0..n-1 summed (or min/max-ed) into their roots; ``maxima`` keys take the maximum."""
    out: dict[str, np.ndarray] = {}
    for key in ("area", "sum_r", "sum_c", "prob_sum", "prob_n"):
        out[key] = np.bincount(root, stats[key], minlength=n) if n else np.zeros(0)
    out["area"] = out["area"].astype(np.int64)
    out["prob_n"] = out["prob_n"].astype(np.int64)
    big = np.iinfo(np.int64).max
    ops = [("min_r", big, np.minimum), ("min_c", big, np.minimum), ("max_r", -1, np.maximum),
           ("max_c", -1, np.maximum), ("first", big, np.minimum)] + [(k, -1, np.maximum) for k in maxima]
    for key, fill, op in ops:
        out[key] = np.full(n, fill, np.int64)
        op.at(out[key], root, stats[key].astype(np.int64))
    return out
