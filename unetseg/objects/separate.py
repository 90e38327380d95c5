"""Objects from class maps, exact across row bands and Dask chunks.

An :class:`ObjectRule` turns a class map into separated objects:

* **seeds**: the 8-connected components of each seed class (the object interior of an instance-trained
  model; every non-background class of a plain class map, eroded by ``split`` px to cut touching blobs);
* **growth**: pixels of the grow class (the object boundary of an instance model; the eroded-away rim of a
  split class) take the label of the nearest seed pixel within ``grow_radius`` (Euclidean, ties broken by
  a fixed order of offsets); rim pixels of a split class farther from every seed are objects of their own
  (their 8-connected components); boundary pixels of an instance model with no interior near are background;
* **flooding** (maps of quantised distance levels, ``flood_levels`` K > 0: class 0 background, 1..K the levels):
  seeds are the 8-connected components of {level >= ``seed_level``} or, with ``seed_height`` h > 0, of the
  dome seeds of :mod:`unetseg.objects.domes` (the tops of domes at least h levels high: h-maxima); then, level by
  level from ``seed_level - 1`` (dome seeds: ``K - 1``) down to 1, the unlabelled pixels of level >= l take the
  label of an 8-neighbour that has one, ``flood_steps`` times per level (a marker watershed on the levels, bounded: each level floods at most ``flood_steps`` px), ties
  going to the seed pixel of smallest raster index the label came from (a global, not a block-local order).
  Foreground pixels no seed reaches (objects too shallow for the seed level) are objects of their own: their
  8-connected components;
* **holes** (4-connected background not touching the image edge, nor invalid pixels, and next to one object
  only) are filled; objects under ``min_size`` pixels are dropped; objects are numbered 1..N in raster order
  of their first pixel.

Every step but connectivity (and dome seeds, which a first pass over the blocks decides: :mod:`.domes`) looks no
further than :attr:`ObjectRule.halo` pixels, so a block (a row band, a
Dask chunk) read with that much context labels its own pixels exactly as one pass over the whole map would,
up to the numbering; :class:`ObjectMerger` then joins the blocks' labels with one union-find (seed pixels
seen by two blocks, 8-adjacent rim pieces, 4-adjacent background across block faces), as dask-image's
``label`` does, and numbers the objects. So objects of a tiled, streamed or Dask run equal those of one
whole-image run, label for label.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from scipy import ndimage

from .domes import DomeMerger, dome_block, dome_markers, dome_seeds
from .merge import Block, ObjectMerger, ObjectTable

EIGHT = np.ones((3, 3), bool)
FOUR = ndimage.generate_binary_structure(2, 1)
SPARSE = 16  # a flood step visits the open pixels alone once they are under 1/SPARSE of the window


@dataclass(frozen=True)
class ObjectRule:
    """How a class map becomes objects (see the module docstring).

    Attributes:
        seed_classes: classes whose connected components seed objects (each class on its own).
        grow_class: the class grown into the nearest seed of any class (an instance model's boundary), or None.
        grow_radius: how far growth reaches, px (Euclidean).
        split: erode each seed class by this many px before taking components (cuts touching blobs of plain
            class maps; 0: off). The eroded rim grows back into the nearest seed of its class.
        min_size: objects with fewer pixels (after hole filling) are dropped.
        fill_holes: fill background holes enclosed by one object.
        flood_levels: K > 0: the map holds distance levels 1..K (0 background) and objects come from the bounded
            seeded watershed of the module docstring (``seed_classes``, ``grow_class`` and ``split`` unused).
        seed_level: with ``flood_levels``, pixels of level >= it seed objects (1..K); 0 with ``seed_height``.
        flood_steps: with ``flood_levels``, how far (px, 8-connected steps) each level floods.
        seed_height: with ``flood_levels``, h > 0: the seeds are the tops of domes at least h levels high
            (:mod:`unetseg.objects.domes`) instead of the pixels of level >= ``seed_level``; 0: off.
    """

    seed_classes: tuple[int, ...]
    grow_class: int | None = None
    grow_radius: int = 0
    split: int = 0
    min_size: int = 0
    fill_holes: bool = True
    flood_levels: int = 0
    seed_level: int = 0
    flood_steps: int = 0
    seed_height: int = 0

    def __post_init__(self) -> None:
        if self.split < 0 or self.grow_radius < 0 or self.min_size < 0 or self.flood_steps < 0:
            raise ValueError("split, grow_radius, min_size and flood_steps must be >= 0")
        if self.split and self.grow_class is not None:
            raise ValueError("split applies to plain class maps, not to an instance model's boundary class")
        if self.seed_height and not (self.flood_levels and self.seed_level == 0
                                     and 1 <= self.seed_height <= self.flood_levels):
            raise ValueError(f"seed height {self.seed_height} needs distance levels (1..{self.flood_levels}) and "
                             "no seed level")
        if self.flood_levels and not self.seed_height and not 1 <= self.seed_level <= self.flood_levels:
            raise ValueError(f"seed level {self.seed_level} is not one of the levels 1..{self.flood_levels}")

    @property
    def flood_from(self) -> int:
        """The highest level the flood opens: ``seed_level - 1``, with dome seeds ``flood_levels - 1``."""
        return self.flood_levels - 1 if self.seed_height else self.seed_level - 1

    @property
    def radius(self) -> int:
        """Growth radius in effect: ``grow_radius``, at least ``split + 1`` when splitting; when flooding, the
        farthest (chessboard) a pixel's seed can be: ``flood_steps * flood_from``."""
        if self.flood_levels:
            return self.flood_steps * self.flood_from
        return max(self.grow_radius, self.split + 1) if self.split else self.grow_radius

    @property
    def halo(self) -> int:
        """Context a block needs on each side so that its seeds and growth are exact."""
        return self.radius + self.split + 1


def _offsets(radius: int) -> np.ndarray:
    """(dy, dx) within ``radius``, nearest first, ties in a fixed (dy, dx) order: the growth's tie-break."""
    r = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    d2 = dy**2 + dx**2
    keep = (d2 <= radius**2) & (d2 > 0)
    order = np.lexsort((dx[keep], dy[keep], d2[keep]))
    return np.stack([dy[keep][order], dx[keep][order]], 1)


def _erode(mask: np.ndarray, depth: int) -> np.ndarray:
    """Pixels of ``mask`` with no non-mask pixel within ``depth`` px (a disk); outside the array counts as mask."""
    size = 2 * depth + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.erode(mask.view(np.uint8), disk, borderType=cv2.BORDER_CONSTANT, borderValue=1).view(bool)


def label_block(classes: np.ndarray, window: tuple[int, int], core: tuple[slice, slice], image_shape: tuple[int, int],
                rule: ObjectRule, num_classes: int, prob: np.ndarray | None = None,
                markers: np.ndarray | None = None) -> Block:
    """Objects of one block.

    Args:
        classes: the class map of the block's window (its core plus up to ``rule.halo`` px of context on each
            side, clipped at the image), integer; values >= ``num_classes`` are invalid pixels.
        window: image (row, col) of ``classes[0, 0]``.
        core: the core's rows and columns within ``classes``.
        image_shape: (H, W) of the whole map (edge contact, raster indices).
        rule: the object rule. num_classes: the model's label count.
        prob: the window's per-pixel object probability (float32), or None.
        markers: with ``rule.seed_height``, the window's dome seeds (bool; :mod:`unetseg.objects.domes`).
    """
    height, width = image_shape
    classes = np.asarray(classes)
    cr, cc = core
    if rule.flood_levels:
        levels = classes
        foreground = (levels >= 1) & (levels < num_classes)
        classes = np.where(foreground, 1, levels)  # objects are of one class; invalid pixels stay invalid
        if rule.seed_height:
            if markers is None:
                raise ValueError("a rule with dome seeds (seed_height) needs the window's markers")
            found, n = ndimage.label(np.asarray(markers, bool) & foreground, EIGHT)
            seeds, count = found.astype(np.int32, copy=False), int(n)
        else:
            seeds, count = _level_seeds(levels, rule.seed_level, num_classes)
        objects = _flood(seeds, levels, rule, num_classes)
        grow = foreground
    else:
        seeds, rim, count = _seeds(classes, window, image_shape, rule)
        grow = rim if rule.grow_class is None else (classes == rule.grow_class)
        objects = seeds
        if rule.radius and grow.any():
            objects = seeds.copy()
            _grow(objects, seeds, grow, classes, rule)
    core_objects = objects[cr, cc]
    core_classes = classes[cr, cc]
    leftover = grow[cr, cc] & (core_objects == 0)
    if rule.flood_levels and leftover.any():  # foreground no seed reached: objects of their own
        found, n = ndimage.label(leftover, EIGHT)
        core_objects[found > 0] = found[found > 0] + count
        count += n
    elif rule.grow_class is None and leftover.any():  # split rims far from every seed: objects of their own
        for c in rule.seed_classes:
            found, n = ndimage.label(leftover & (core_classes == c), EIGHT)
            core_objects[found > 0] = found[found > 0] + count
            count += n
    else:
        leftover[:] = False  # an instance model's boundary with no interior near is background
    valid = core_classes < num_classes
    bg, n_bg = ndimage.label(valid & (core_objects == 0), FOUR)
    # local ids: those in the core, and those of seed pixels near the core's edge (the neighbours see them too)
    near = _near_edge(classes.shape, core, rule.halo - rule.split) & (seeds > 0)
    present = np.zeros(count + 1, bool)
    present[core_objects.ravel()] = True
    present[seeds[near]] = True
    present[0] = False
    used = np.flatnonzero(present)
    lut = np.zeros(count + 1, np.int32)
    lut[used] = np.arange(1, len(used) + 1, dtype=np.int32)
    labels = lut[core_objects]  # object ids > 0; background components as their negative ids
    local = labels > 0
    np.negative(bg, out=labels, where=~local)
    r0, c0 = window[0] + cr.start, window[1] + cc.start
    n_obj = len(used)
    core_prob = None if prob is None else prob[cr, cc]
    obj_stats = _stats(labels, n_obj, (r0, c0), image_shape, core_prob)
    obj_class = np.full(n_obj + 1, -1, np.int64)
    obj_class[labels[local]] = core_classes[local]
    win_rows, win_cols = np.nonzero(near)
    obj_class[lut[seeds[win_rows, win_cols]]] = classes[win_rows, win_cols]
    obj_stats["cls"] = obj_class
    bg_stats = _stats(bg, n_bg, (r0, c0), image_shape, None)
    # background touching the image edge or an invalid pixel (4-neighbour) is never a hole
    invalid_near = ndimage.binary_dilation(classes >= num_classes, FOUR)[cr, cc]
    border = np.bincount(bg[invalid_near & (bg > 0)], minlength=n_bg + 1) > 0
    bg_stats["border"] = border | bg_stats.pop("edge")
    seed_index = (win_rows + window[0]).astype(np.int64) * width + (win_cols + window[1])
    seed_records = np.stack([seed_index, lut[seeds[win_rows, win_cols]].astype(np.int64)], 1)
    ring = _ring(labels, core_classes, leftover, (r0, c0), width)
    return Block((r0, c0), labels.shape, labels, n_obj, n_bg, obj_stats, bg_stats, seed_records, ring,
                 _pairs(labels))


def _seeds(classes: np.ndarray, window: tuple[int, int], image_shape: tuple[int, int], rule: ObjectRule
           ) -> tuple[np.ndarray, np.ndarray, int]:
    """The window's seed components (int32, 0 = none; ids unique across classes), the split rims (bool), and
    the number of seed ids. Where splitting erodes, pixels within ``split`` px of a window edge that is not the
    image's are no seeds: their erosion would need pixels the window does not hold."""
    seeds = np.zeros(classes.shape, np.int32)
    rim = np.zeros(classes.shape, bool)
    count = 0
    for c in rule.seed_classes:
        mask = classes == c
        if rule.split:
            kept = _erode(mask, rule.split)
            rim |= mask & ~kept
            mask = kept & _away_from_cuts(classes.shape, window, image_shape, rule.split)
        found, n = ndimage.label(mask, EIGHT)
        np.add(found, count, out=found, where=found > 0)
        seeds += found  # the classes' components are disjoint
        count += n
    return seeds, rim, count


def _level_seeds(levels: np.ndarray, seed_level: int, num_classes: int) -> tuple[np.ndarray, int]:
    """The 8-connected components of {seed_level <= level < num_classes} (int32, 0 = none) and their count."""
    found, n = ndimage.label((levels >= seed_level) & (levels < num_classes), EIGHT)
    return found.astype(np.int32, copy=False), int(n)


def _flood(seeds: np.ndarray, levels: np.ndarray, rule: ObjectRule, num_classes: int) -> np.ndarray:
    """The bounded seeded watershed of a window (see the module docstring): the seed id of each pixel (0: none).

    Each pixel carries the raster index of the seed pixel its label came from; a step gives every open pixel the
    smallest such index among its 8 neighbours. After ``t`` steps a pixel depends on the window within ``t`` px
    only, so pixels ``rule.radius`` px inside a window's cut edges are those of the whole image. The indices are the
    window's own (row-major, as the image's: the same order), int32 where they fit: the flood's arrays are most of a
    streamed block's memory."""
    h, w = levels.shape
    dtype = np.int32 if (h + 1) * w < np.iinfo(np.int32).max else np.int64
    none = np.iinfo(dtype).max
    padded = np.full((h + 2, w + 2), none, dtype)  # the source indices with a border of none: its core is `source`
    source = padded[1:-1, 1:-1]
    np.copyto(source, np.arange(h * w, dtype=dtype).reshape(h, w), where=seeds > 0)
    flat = padded.reshape(-1)
    offsets = np.array([dy * (w + 2) + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    # the steps reuse these buffers: fresh window-sized temporaries every step fragment the heap of a streamed run
    best = np.empty((h, w), dtype)
    reached = np.empty((h, w), bool)
    open_ = np.empty((h, w), bool)
    valid = levels < num_classes
    for level in range(rule.flood_from, 0, -1):
        np.greater_equal(levels, level, out=open_)
        open_ &= valid
        open_ &= source == none
        where: np.ndarray | None = None  # once few pixels are open: their places in `flat`, stepped on alone
        for _ in range(rule.flood_steps):
            if where is None:
                count = int(np.count_nonzero(open_))
                if not count:
                    break
                if count * SPARSE < h * w:
                    index = np.flatnonzero(open_)
                    where = (index // w + 1) * (w + 2) + index % w + 1
            if where is not None:
                near = flat[where + offsets[0]]
                for off in offsets[1:]:
                    np.minimum(near, flat[where + off], out=near)
                hit = near != none
                if not hit.any():
                    break
                flat[where[hit]] = near[hit]  # every pixel's minimum was read before any is written: one step
                where = where[~hit]
                if not len(where):
                    break
                continue
            np.minimum(padded[:h, :w], padded[:h, 2:], out=best)
            for dy, dx in ((0, 1), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)):
                np.minimum(best, padded[dy : dy + h, dx : dx + w], out=best)
            np.not_equal(best, none, out=reached)
            reached &= open_
            if not reached.any():
                break
            np.copyto(source, best, where=reached)
            np.greater(open_, reached, out=open_)  # open and not reached
    objects = np.zeros((h, w), np.int32)
    got = source != none
    index = source[got]
    objects[got] = seeds[index // w, index % w]
    return objects


def _away_from_cuts(shape: tuple[int, int], window: tuple[int, int], image_shape: tuple[int, int], depth: int
                    ) -> np.ndarray:
    """Window pixels at least ``depth`` px from each window edge that cuts the image (not the image's own edge)."""
    out = np.ones(shape, bool)
    r0, c0 = window
    if r0 > 0:
        out[:depth] = False
    if c0 > 0:
        out[:, :depth] = False
    if r0 + shape[0] < image_shape[0]:
        out[shape[0] - depth :] = False
    if c0 + shape[1] < image_shape[1]:
        out[:, shape[1] - depth :] = False
    return out


def _grow(objects: np.ndarray, seeds: np.ndarray, grow: np.ndarray, classes: np.ndarray, rule: ObjectRule) -> None:
    """Label each grow pixel with its nearest seed within the rule's radius (in place, on ``objects``)."""
    ys, xs = np.nonzero(grow)
    own = classes[ys, xs]
    taken = np.zeros(len(ys), bool)
    h, w = seeds.shape
    for dy, dx in _offsets(rule.radius):
        todo = np.flatnonzero(~taken)
        if not len(todo):
            break
        y, x = ys[todo] + dy, xs[todo] + dx
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        todo, y, x = todo[inside], y[inside], x[inside]
        found = seeds[y, x]
        hit = found > 0
        if rule.grow_class is None:  # a split rim grows into seeds of its own class only
            hit &= classes[y, x] == own[todo]
        objects[ys[todo[hit]], xs[todo[hit]]] = found[hit]
        taken[todo[hit]] = True


def _near_edge(shape: tuple[int, int], core: tuple[slice, slice], halo: int) -> np.ndarray:
    """Window pixels within ``halo`` of the core's edge (inside or outside the core)."""
    out = np.zeros(shape, bool)
    cr, cc = core
    inner = np.zeros(shape, bool)
    inner[cr.start + halo : max(cr.stop - halo, cr.start + halo), cc.start + halo : max(cc.stop - halo, cc.start + halo)] = True
    out[max(cr.start - halo, 0) : cr.stop + halo, max(cc.start - halo, 0) : cc.stop + halo] = True
    return out & ~inner


def _stats(ids: np.ndarray, n: int, origin: tuple[int, int], image_shape: tuple[int, int],
           prob: np.ndarray | None, strip: int = 32) -> dict[str, np.ndarray]:
    """Per id 1..n of a core (index 0 unused): pixel count, coordinate sums, bounding box, first raster index,
    probability sum and count, image-edge contact. Taken ``strip`` rows at a time (bounded temporaries)."""
    height, width = image_shape
    big = np.iinfo(np.int64).max
    out = {"area": np.zeros(n + 1, np.int64), "sum_r": np.zeros(n + 1), "sum_c": np.zeros(n + 1),
           "min_r": np.full(n + 1, big, np.int64), "min_c": np.full(n + 1, big, np.int64),
           "max_r": np.full(n + 1, -1, np.int64), "max_c": np.full(n + 1, -1, np.int64),
           "first": np.full(n + 1, big, np.int64), "prob_sum": np.zeros(n + 1), "prob_n": np.zeros(n + 1, np.int64),
           "edge": np.zeros(n + 1, bool)}
    for top in range(0, ids.shape[0], strip):
        part = ids[top : top + strip]
        rr, cc = np.nonzero(part > 0)
        if not len(rr):
            continue
        k = part[rr, cc].astype(np.int64)
        r, c = rr + origin[0] + top, cc + origin[1]
        count = np.bincount(k, minlength=n + 1)
        out["area"] += count
        out["sum_r"] += np.bincount(k, r, minlength=n + 1)
        out["sum_c"] += np.bincount(k, c, minlength=n + 1)
        np.minimum.at(out["min_r"], k, r)
        np.minimum.at(out["min_c"], k, c)
        np.maximum.at(out["max_r"], k, r)
        np.maximum.at(out["max_c"], k, c)
        np.minimum.at(out["first"], k, r.astype(np.int64) * width + c)
        on_edge = (r == 0) | (r == height - 1) | (c == 0) | (c == width - 1)
        out["edge"][k[on_edge]] = True
        if prob is not None:
            out["prob_sum"] += np.bincount(k, prob[top : top + strip][rr, cc], minlength=n + 1)
            out["prob_n"] += count
    return out


def _ring(labels: np.ndarray, classes: np.ndarray, leftover: np.ndarray, origin: tuple[int, int], width: int
          ) -> np.ndarray:
    """(raster index, object id, background id, class, leftover piece?) of the core's outermost pixels; leftover
    pieces (split rims that are objects of their own) join 8-adjacently across block faces."""
    h, w = labels.shape
    edge = np.zeros((h, w), bool)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    rr, cc = np.nonzero(edge)
    raster = (rr + origin[0]).astype(np.int64) * width + (cc + origin[1])
    lab = labels[rr, cc].astype(np.int64)
    return np.stack([raster, np.maximum(lab, 0), np.maximum(-lab, 0), classes[rr, cc].astype(np.int64),
                     leftover[rr, cc].astype(np.int64)], 1)


def _pairs(labels: np.ndarray) -> np.ndarray:
    """Unique (background id, object id) pairs of 4-adjacent pixels in the core."""
    found = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        for bg_side, obj_side in ((a, b), (b, a)):
            sel = (bg_side < 0) & (obj_side > 0)
            found.append(np.stack([-bg_side[sel], obj_side[sel]], 1))
    pairs = np.concatenate(found).astype(np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def label_objects(classes: np.ndarray, rule: ObjectRule, num_classes: int, prob: np.ndarray | None = None
                  ) -> tuple[np.ndarray, ObjectTable]:
    """The objects of a whole class map in one block: (HxW uint32 object ids, their table)."""
    classes = np.asarray(classes)
    shape = classes.shape[:2]
    markers = dome_markers(classes, rule.seed_height, num_classes) if rule.seed_height else None
    block = label_block(classes, (0, 0), (slice(0, shape[0]), slice(0, shape[1])), shape, rule, num_classes, prob,
                        markers)
    merger = ObjectMerger(shape, rule)
    index = merger.add(block)
    table = merger.finish()
    return merger.relabel(index, block.labels), table


def block_window(core: tuple[int, int, int, int], shape: tuple[int, int], halo: int) -> tuple[tuple[int, int, int, int],
                                                                                           tuple[slice, slice]]:
    """The window (r0, r1, c0, c1) a block with core rows [a, b) x cols [c, d) reads, clipped at the image, and
    the core's place in it."""
    a, b, c, d = core
    r0, r1, c0, c1 = max(a - halo, 0), min(b + halo, shape[0]), max(c - halo, 0), min(d + halo, shape[1])
    return (r0, r1, c0, c1), (slice(a - r0, b - r0), slice(c - c0, d - c0))


def blocks_of(shape: tuple[int, int], sides: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Cores (r0, r1, c0, c1) of a grid of blocks of ``sides`` over ``shape``, row-major."""
    return [(r, min(r + sides[0], shape[0]), c, min(c + sides[1], shape[1]))
            for r in range(0, shape[0], sides[0]) for c in range(0, shape[1], sides[1])]


def label_blocks(classes: Any, rule: ObjectRule, num_classes: int, sides: tuple[int, int],
                 prob: Any = None) -> tuple[np.ndarray, ObjectTable]:
    """The objects of ``classes`` (any array readable by windows) computed block by block, then merged: equal
    to :func:`label_objects`. For tests and for maps on disk; the streaming paths use the same pieces."""
    shape = tuple(int(s) for s in classes.shape[:2])
    cores = blocks_of(shape, sides)
    markers = None
    if rule.seed_height:  # the first pass: dome seeds, block by block
        domes = DomeMerger(shape, rule.seed_height, num_classes)
        for a, b, c, d in cores:
            domes.add(dome_block(classes[a:b, c:d], (a, c), shape, rule.seed_height, num_classes))
        domes.finish()
        markers = np.zeros(shape, bool)
        for n, (a, b, c, d) in enumerate(cores):
            markers[a:b, c:d] = dome_seeds(np.asarray(classes[a:b, c:d]), domes.verdicts(n), rule.seed_height,
                                           num_classes)
    merger = ObjectMerger(shape, rule)
    done = []
    for core in cores:
        (r0, r1, c0, c1), inner = block_window(core, shape, rule.halo)
        window = np.asarray(classes[r0:r1, c0:c1])
        p = None if prob is None else np.asarray(prob[r0:r1, c0:c1])
        m = None if markers is None else markers[r0:r1, c0:c1]
        block = label_block(window, (r0, c0), inner, shape, rule, num_classes, p, m)
        done.append((core, merger.add(block), block.labels))
    table = merger.finish()
    out = np.zeros(shape, np.uint32)
    for (a, b, c, d), index, labels in done:
        out[a:b, c:d] = merger.relabel(index, labels)
    return out, table


def default_seed_level(levels: int) -> int:
    """The seed level of a distance model without a tuned one: the middle level (``(levels + 1) // 2``)."""
    return max(1, (levels + 1) // 2)


# How far each level floods, in bins (+1 px each): a true map's level lies within a bin of the next one up, but
# predicted levels spread wider. On the nuclei sample's 4 region folds (two cross-validation runs' checkpoints, AMX
# Xeon) the fold-mean AP@0.5 went 0.909 -> 0.940 and 0.941 -> 0.963 from a reach of 1 to 3 (worst fold 0.765 ->
# 0.844, 0.848 -> 0.935), equal to an unbounded watershed's; 2 fell short, 5 and 20 gained nothing more.
FLOOD_REACH = 3


def distance_rule(levels: int, bin_px: int, seed_level: int, *, min_size: int = 0, fill_holes: bool = True,
                  seed_height: int = 0) -> ObjectRule:
    """The rule of a distance-level map (``levels`` K, ``bin_px`` per level): seeds of level >= ``seed_level``
    or, ``seed_height`` h > 0, the tops of domes at least h levels high (``seed_level`` then unused), each level
    flooding :data:`FLOOD_REACH` ``* (bin_px + 1)`` px."""
    return ObjectRule((), None, 0, 0, min_size, fill_holes, flood_levels=levels,
                      seed_level=0 if seed_height else seed_level, flood_steps=FLOOD_REACH * (bin_px + 1),
                      seed_height=seed_height)


def object_rule(model: Any, *, background: int | None = 0, split: int = 0, min_size: int | None = None,
                fill_holes: bool = True, seed_level: int | None = None, seed_height: int | None = None
                ) -> ObjectRule:
    """The rule that makes objects of ``model``'s class maps.

    A model trained on instance masks (its checkpoint's :class:`~unetseg.models.meta.InstanceRecord`): its
    interior classes seed objects and its boundary class grows onto them, within twice the trained boundary
    width plus one; a model trained on distance targets: the bounded seeded watershed of :func:`distance_rule`.
    ``min_size`` (px) and ``seed_level`` (distance models) None: the values tuned on the run's validation images
    (:class:`~unetseg.models.meta.ObjectTuning`: a seed level or a dome seed height), else 0 and
    :func:`default_seed_level`; a ``seed_level`` or ``seed_height`` given overrides the tuned seeds. Any other model:
    the connected components of each class but ``background`` (None: every class), split where they touch by
    eroding ``split`` px (0: no split).
    """
    meta = getattr(model, "meta", None)
    record = getattr(meta, "instances", None)
    tuned = getattr(meta, "object_tuning", None)
    if record is not None:
        if split:
            raise ValueError("split applies to plain class maps; an instance-trained model separates its objects")
        return instance_rule(record, tuned, min_size=min_size, fill_holes=fill_holes, seed_level=seed_level,
                             seed_height=seed_height)
    if min_size is None:
        min_size = tuned.min_size if tuned is not None else 0
    k = int(getattr(model, "num_classes", 2))
    seeds = tuple(c for c in range(max(k, 2)) if c != background)
    return ObjectRule(seeds, None, 0, split, min_size, fill_holes)


def instance_rule(record: Any, tuned: Any = None, *, min_size: int | None = None, fill_holes: bool = True,
                  seed_level: int | None = None, seed_height: int | None = None) -> ObjectRule:
    """The rule of a model trained on instance masks, from its :class:`~unetseg.models.meta.InstanceRecord` and
    its :class:`~unetseg.models.meta.ObjectTuning` (None: untuned): see :func:`object_rule`."""
    if min_size is None:
        min_size = tuned.min_size if tuned is not None else 0
    if record.target == "distance":
        height = seed_height or 0
        if seed_level is None and seed_height is None:
            height = tuned.seed_height if tuned is not None and tuned.seed_height else 0
            seed_level = tuned.seed_level if tuned is not None and tuned.seed_level else None
        level = default_seed_level(record.levels) if seed_level is None else seed_level
        return distance_rule(record.levels, record.bin, level, min_size=min_size, fill_holes=fill_holes,
                             seed_height=height)
    return ObjectRule(record.object_classes, record.boundary_class, 2 * record.boundary_width + 1,
                      min_size=min_size, fill_holes=fill_holes)


def class_region_rule(num_classes: int) -> ObjectRule:
    """Regions of every class, as they are (no splitting, hole filling or size limit): ``--polygons classes``."""
    return ObjectRule(tuple(range(max(num_classes, 2))), fill_holes=False)
