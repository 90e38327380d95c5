"""Region split: validation blocks cut out of the images themselves, for datasets of one or a few images.

Each image is cut into a ``rows x cols`` grid of blocks; a seeded ``val_fraction`` of all blocks goes to
validation (each block a validation image of its own). The training side keeps the whole images, but the
validation blocks are marked invalid there (their pixels are filled like nodata, so no training crop sees
them) and the labels within ``gap`` pixels of a validation block (the model's context) are ignored, so no
training target is predicted from pixels next to validation ones.

A validation block's edges cut the objects of instance masks that cross them. Each piece is scored as the object
it is where it holds at least half of its object's pixels; smaller pieces (slivers of objects that lie mostly in
a neighbouring block) are *unscored*: no true objects, and predictions lying mostly on them are no false ones
(:class:`unetseg.metrics.ObjectScores`). So every object is scored once, in the block that holds most of
it, and a fold's object scores measure its objects rather than where the grid's lines fall.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import UnetsegError
from .folds import block_fold_assignment
from .labels import label_dtype


@dataclass(frozen=True)
class Block:
    """Block ``(row, col)`` of image ``image`` (its index): pixel rows ``[r0, r1)``, columns ``[c0, c1)``."""

    image: int
    row: int
    col: int
    r0: int
    r1: int
    c0: int
    c1: int

    def record(self, name: str) -> dict[str, Any]:
        return {"file": name, "block": [self.row, self.col], "rows": [self.r0, self.r1], "cols": [self.c0, self.c1]}


def grid_blocks(shapes: list[tuple[int, int]], grid: tuple[int, int]) -> list[Block]:
    """Every block of every image, image by image, row-major; edges from ``linspace`` (sizes differ by <= 1)."""
    blocks = []
    for k, (h, w) in enumerate(shapes):
        rows, cols = min(grid[0], h), min(grid[1], w)
        ys = np.linspace(0, h, rows + 1).round().astype(int)
        xs = np.linspace(0, w, cols + 1).round().astype(int)
        blocks += [Block(k, i, j, int(ys[i]), int(ys[i + 1]), int(xs[j]), int(xs[j + 1]))
                   for i in range(rows) for j in range(cols)]
    return blocks


def choose_val_blocks(blocks: list[Block], val_fraction: float, seed: int) -> set[int]:
    """Indices of the validation blocks: ``round(val_fraction * n)`` (>= 1 when val_fraction > 0), seeded."""
    n_val = 0 if val_fraction == 0 else max(1, int(round(val_fraction * len(blocks))))
    if n_val >= len(blocks):
        raise UnetsegError(f"val_fraction={val_fraction} takes all {len(blocks)} region block(s) for validation; "
                           "lower val_fraction or use a finer data.split_grid")
    return set(np.random.default_rng(seed).permutation(len(blocks))[:n_val].tolist())


def region_split(
    images: list[np.ndarray], masks: list[np.ndarray], valid: list[np.ndarray | None], names: list[str], *,
    grid: tuple[int, int], val_fraction: float, seed: int, gap: int, ignore: int,
    instances: list[np.ndarray] | None = None, fold: tuple[int, int] | None = None,
) -> tuple[dict[str, list], dict[str, list], dict[str, Any]]:
    """Split images into training images (validation blocks invalid, labels ignored within ``gap`` of them)
    and validation blocks.

    Returns ``(train, val, record)``: train and val as ``{"images", "masks", "valid", "names", "instances"}``
    lists (valid: HxW bool or None; instances: the object ids of each, when ``instances`` are given, cut like
    the masks, each piece of a validation block an object of its own, :func:`cut_pieces`; val also
    ``"unscored"``: each block's :func:`minor_pieces`, HxW bool, or None without instances), and the split.json
    record (files and regions per side). ``fold``: ``(i, k)`` takes fold i of k
    for validation instead of ``val_fraction``: a compact run of blocks along a Hilbert curve through the grid
    (:func:`unetseg.data.folds.block_fold_assignment`; ``seed`` is then unused), so that the labels ignored
    within ``gap`` of the validation blocks are few.
    """
    objects = instances if instances is not None else [None] * len(images)
    blocks = grid_blocks([m.shape for m in masks], grid)
    if fold is None:
        chosen = choose_val_blocks(blocks, val_fraction, seed)
    else:
        folds = block_fold_assignment([(b.image, b.row, b.col) for b in blocks], fold[1])
        chosen = set(np.flatnonzero(folds == fold[0]).tolist())
    train: dict[str, list] = {"images": [], "masks": [], "valid": [], "names": [], "instances": []}
    val: dict[str, list] = {"images": [], "masks": [], "valid": [], "names": [], "instances": [], "unscored": []}
    record: dict[str, Any] = {"mode": "regions", "grid": list(grid), "gap": gap,
                              **({} if fold is None else {"fold": fold[0], "folds": fold[1]}),
                              "train": {"files": [], "regions": []}, "val": {"files": [], "regions": []}}
    for k, (image, mask, ok, name, inst) in enumerate(zip(images, masks, valid, names, objects, strict=True)):
        mine = [(n, b) for n, b in enumerate(blocks) if b.image == k]
        held = [b for n, b in mine if n in chosen]
        kept = [b for n, b in mine if n not in chosen]
        areas = None if inst is None or not held else np.unique(inst, return_counts=True)
        for b in held:
            val["images"].append(image[b.r0 : b.r1, b.c0 : b.c1])
            val["masks"].append(mask[b.r0 : b.r1, b.c0 : b.c1])
            val["valid"].append(None if ok is None else ok[b.r0 : b.r1, b.c0 : b.c1])
            crop = None if inst is None else inst[b.r0 : b.r1, b.c0 : b.c1]
            pieces = None if crop is None else cut_pieces(crop)
            val["instances"].append(pieces)
            val["unscored"].append(None if crop is None or areas is None
                                   else minor_pieces(crop, *areas, pieces=pieces))
            val["names"].append(f"{name}@r{b.row}c{b.col}")
            record["val"]["regions"].append(b.record(name))
        if held and name not in record["val"]["files"]:
            record["val"]["files"].append(name)
        if not kept:
            continue
        train_valid = np.ones(mask.shape, bool) if ok is None else ok.copy()
        train_mask = mask.astype(label_dtype(max(int(mask.max()), ignore) + 1), copy=True)
        for b in held:
            train_valid[b.r0 : b.r1, b.c0 : b.c1] = False
            train_mask[max(b.r0 - gap, 0) : b.r1 + gap, max(b.c0 - gap, 0) : b.c1 + gap] = ignore
        train["images"].append(image)
        train["masks"].append(train_mask)
        train["valid"].append(None if train_valid.all() else train_valid)
        train["instances"].append(inst)
        train["names"].append(name)
        record["train"]["files"].append(name)
        record["train"]["regions"] += [b.record(name) for b in kept]
    return train, val, record


def cut_pieces(ids: np.ndarray) -> np.ndarray:
    """Object ids HxW (0 = none) -> uint32 HxW where each 8-connected piece of each object has an id of its own
    (1..n, in order of first pixel): a true object cropped by a validation block's edge into pieces that meet
    only outside the block. Objects in one piece keep their pixels (with new ids)."""
    ids = np.asarray(ids)
    h, w = ids.shape
    flat = ids.ravel()
    index = np.arange(h * w).reshape(h, w)
    pairs = []
    for da, db in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),        # left neighbour
                   ((slice(1, None), slice(None)), (slice(None, -1), slice(None))),        # upper
                   ((slice(1, None), slice(1, None)), (slice(None, -1), slice(None, -1))),  # upper left
                   ((slice(1, None), slice(None, -1)), (slice(None, -1), slice(1, None)))):  # upper right
        a, b = index[da].ravel(), index[db].ravel()
        same = (flat[a] == flat[b]) & (flat[a] != 0)
        pairs.append(np.stack([a[same], b[same]]))
    edges = np.concatenate(pairs, 1)
    graph = coo_matrix((np.ones(edges.shape[1], np.int8), (edges[0], edges[1])), shape=(h * w, h * w))
    _, component = connected_components(graph, directed=False)
    out = np.zeros(h * w, np.uint32)
    on = flat != 0
    _, first, inverse = np.unique(component[on], return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    out[on] = rank[inverse] + 1
    return out.reshape(h, w)


SCORED_FRACTION = 0.5  # a cut object's piece is scored where it holds at least this fraction of the object


def minor_pieces(block: np.ndarray, ids: np.ndarray, areas: np.ndarray, *, pieces: np.ndarray | None = None
                 ) -> np.ndarray:
    """HxW bool: the pixels of ``block``'s (a crop of an instance map, 0 = none) 8-connected object pieces
    (:func:`cut_pieces`; ``pieces``: its result where already computed) that hold less than
    :data:`SCORED_FRACTION` of their object's pixels in the whole map, whose object ids and pixel counts are
    ``ids`` (sorted) and ``areas`` (``np.unique(..., return_counts=True)``)."""
    block = np.asarray(block)
    pieces = cut_pieces(block) if pieces is None else pieces
    n = int(pieces.max(initial=0))
    if not n:
        return np.zeros(block.shape, bool)
    owner = np.zeros(n + 1, block.dtype)
    owner[pieces.ravel()] = block.ravel()
    whole = areas[np.searchsorted(ids, owner)]
    minor = np.bincount(pieces.ravel(), minlength=n + 1) < SCORED_FRACTION * whole
    minor[0] = False
    return minor[pieces]
