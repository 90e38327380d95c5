"""Dome seeds of a distance-level map (h-maxima), exact across row bands and Dask chunks.

A pixel of level ``p`` is a **dome seed** of height ``h`` when ``p`` is the highest level of its 8-connected
component of {level >= max(p - h + 1, 1)}: it tops a dome that rises at least ``h`` levels above every saddle
to a higher one (scikit-image's ``h_maxima`` for domes of at least ``h`` levels; a lower isolated dome is a
seed at its top too). Unlike the seeds of one level, this is a property of whole components, so no bounded
window decides it: blocks first label their cores' components of each threshold ``t`` (:func:`dome_block`),
one union-find joins them across block faces carrying their highest level (:class:`DomeMerger`), and each
block's seeds then follow from its own components and the merged verdicts (:func:`dome_seeds`). A seed of
threshold ``t`` is a pixel at level ``m`` of a component whose highest level ``m`` has
``max(m - h + 1, 1) == t``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .merge import _components, _stack, _unique, neighbours, touching

EIGHT = np.ones((3, 3), bool)


def thresholds(levels: int, height: int) -> range:
    """The thresholds ``t`` whose components can hold dome seeds of ``height`` in a map of levels 1..``levels``."""
    return range(1, max(levels - height + 1, 1) + 1)


def _by_level(levels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Per level 0..num_classes-1, the flat indices of its pixels."""
    flat = levels.reshape(-1)
    return [np.flatnonzero(flat == v) for v in range(num_classes)]


def _components_of(levels: np.ndarray, t: int, num_classes: int, by_level: list[np.ndarray]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The 8-connected components of {t <= level < num_classes} (int32) and each one's highest level (index 0:
    none); ``by_level``: :func:`_by_level` of ``levels``."""
    found, n = ndimage.label((levels >= t) & (levels < num_classes), EIGHT)
    top = np.zeros(n + 1, np.int64)
    ids = found.reshape(-1)
    for v in range(t, num_classes):  # ascending: a component's highest level is written last
        top[ids[by_level[v]]] = v
    return found, top


def _verdict(top: np.ndarray, t: int | np.ndarray, height: int) -> np.ndarray:
    """Per component of threshold ``t`` (by its highest level ``top``), the level its seed pixels have, or -1:
    none."""
    return np.where(np.maximum(top - height + 1, 1) == t, top, -1)


def dome_seeds(levels: np.ndarray, verdicts: list[np.ndarray], height: int, num_classes: int) -> np.ndarray:
    """The dome seeds (bool) of a block's core ``levels``, given per threshold the verdict of each of the core's
    own components (:meth:`DomeMerger.verdicts`; for a whole map, :func:`dome_markers`)."""
    seeds = np.zeros(levels.shape, bool)
    by_level = _by_level(levels, num_classes)
    for t, verdict in zip(thresholds(num_classes - 1, height), verdicts, strict=True):
        found, _ = _components_of(levels, t, num_classes, by_level)
        seeds |= (found > 0) & (levels == verdict[found])
    return seeds


def dome_markers(levels: np.ndarray, height: int, num_classes: int) -> np.ndarray:
    """The dome seeds (bool) of a whole map of levels (0 background, 1..``num_classes - 1``; values past them are
    invalid pixels)."""
    levels = np.asarray(levels)
    by_level = _by_level(levels, num_classes)
    verdicts = [_verdict(_components_of(levels, t, num_classes, by_level)[1], t, height)
                for t in thresholds(num_classes - 1, height)]
    return dome_seeds(levels, verdicts, height, num_classes)


@dataclass
class DomeBlock:
    """One block core's components per threshold: their highest levels (index 0 unused) and the core's outermost
    pixels in them, as (threshold * pixels + raster index, local component id) rows."""

    origin: tuple[int, int]
    shape: tuple[int, int]
    tops: list[np.ndarray]
    ring: np.ndarray


def dome_block(levels: np.ndarray, origin: tuple[int, int], image_shape: tuple[int, int], height: int,
               num_classes: int) -> DomeBlock:
    """The components of a block's core ``levels`` (no context needed) at ``image_shape``'s ``origin``."""
    levels = np.asarray(levels)
    h, w = levels.shape
    edge = np.zeros((h, w), bool)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    rr, cc = np.nonzero(edge)
    raster = (rr + origin[0]).astype(np.int64) * image_shape[1] + (cc + origin[1])
    pixels = image_shape[0] * image_shape[1]
    tops, rings = [], []
    by_level = _by_level(levels, num_classes)
    for t in thresholds(num_classes - 1, height):
        found, top = _components_of(levels, t, num_classes, by_level)
        tops.append(top)
        ids = found[rr, cc].astype(np.int64)
        on = ids > 0
        rings.append(np.stack([t * pixels + raster[on], ids[on]], 1))
    return DomeBlock(origin, (h, w), tops, _stack(rings, 2))


@dataclass
class DomeMerger:
    """Joins the blocks' components (:func:`dome_block`, :meth:`~DomeMerger.add` in raster order of their origins) across block
    faces and decides each one's seeds (:meth:`~DomeMerger.finish`, then :meth:`~DomeMerger.verdicts` per block). Like
    :class:`~unetseg.objects.merge.ObjectMerger`, it holds the edges of about two rows of blocks."""

    image_shape: tuple[int, int]
    height: int
    num_classes: int
    _ids: list[list[int]] = field(default_factory=list)  # per block: each threshold's first global id - 1, then the end
    _tops: list[np.ndarray] = field(default_factory=list)
    _t: list[np.ndarray] = field(default_factory=list)
    _open: list[tuple[tuple[int, int, int, int], np.ndarray]] = field(default_factory=list)
    _links: list[np.ndarray] = field(default_factory=list)
    _n: int = 0
    _verdict: np.ndarray | None = None

    def add(self, block: DomeBlock) -> int:
        """Take one block's components; returns its index (for :meth:`verdicts`)."""
        ids, ring = [self._n], block.ring.copy()
        pixels = self.image_shape[0] * self.image_shape[1]
        for n, top in enumerate(block.tops):
            ring[ring[:, 0] // pixels == n + 1, 1] += self._n
            self._tops.append(top[1:])
            self._t.append(np.full(len(top) - 1, n + 1, np.int64))
            self._n += len(top) - 1
            ids.append(self._n)
        self._ids.append(ids)
        (r0, c0), (h, w) = block.origin, block.shape
        bounds = (r0, r0 + h, c0, c0 + w)
        for old_bounds, old_ring in self._open:
            if touching(old_bounds, bounds):
                self._links.append(_unique(_adjacent(np.concatenate([old_ring, ring]), self.image_shape)))
        # a block whose next row of blocks has been passed can meet no block still to come
        self._open = [o for o in self._open if o[0][1] >= r0] + [(bounds, ring)]
        return len(self._ids) - 1

    def finish(self) -> None:
        """Union the blocks' components and decide which hold seeds."""
        self._open = []
        root = _components(self._n, _stack(self._links, 2))
        tops = np.concatenate(self._tops) if self._tops else np.zeros(0, np.int64)
        t = np.concatenate(self._t) if self._t else np.zeros(0, np.int64)
        highest = np.zeros(self._n, np.int64)
        np.maximum.at(highest, root, tops.astype(np.int64))
        self._verdict = _verdict(highest[root], t, self.height)

    def verdicts(self, index: int) -> list[np.ndarray]:
        """Per threshold, block ``index``'s components' seed level (index 0 unused; -1: none): for
        :func:`dome_seeds`. Small and picklable (what Dask tasks receive)."""
        if self._verdict is None:
            raise RuntimeError("DomeMerger.verdicts before finish()")
        ids = self._ids[index]
        return [np.concatenate([[-1], self._verdict[a:b]]) for a, b in zip(ids[:-1], ids[1:], strict=True)]


def _adjacent(ring: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pairs of component ids whose pixels are 8-adjacent at the same threshold (rows: (key, id) with key =
    threshold * pixels + raster index of a map of ``shape``)."""
    if not len(ring):
        return np.zeros((0, 2), np.int64)
    ring = ring[np.argsort(ring[:, 0], kind="stable")]
    return np.concatenate([np.stack([ring[i, 1], ring[j, 1]], 1) for _, _, i, j in neighbours(ring[:, 0], shape)])
