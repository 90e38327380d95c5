"""Objects of a class map that arrives in row bands: exact (equal to one whole-map pass) and memory-bounded.

:class:`ObjectStream` is a band sink: it keeps a few hundred rows of classes (and object probabilities),
labels each finished block of rows with :func:`~unetseg.objects.separate.label_block` once ``rule.halo`` rows
below it have arrived, parks the block's provisional labels in scratch files and its statistics in an
:class:`~unetseg.objects.merge.ObjectMerger`. :meth:`ObjectStream.finish` merges and numbers the objects;
:meth:`ObjectStream.bands` then yields the final object ids band by band, in row order (a second pass).

A rule with dome seeds (``rule.seed_height``) needs the whole map's components before any block can be labelled
(:mod:`unetseg.objects.domes`): the stream then parks each block of rows in scratch as it arrives, joining its
components, and labels the blocks at :meth:`ObjectStream.finish`, reading them back with their context.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..io.scratch import ScratchArrays
from ..tiling.result import Band
from .domes import DomeMerger, dome_block, dome_seeds
from .merge import ObjectMerger, ObjectTable
from .separate import ObjectRule, label_block

CORE_ROWS = 256  # rows labelled per block: bounds the block's temporaries (~40 B/px) whatever the width


def object_probability(rule: ObjectRule, labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per pixel, the probability that it belongs to the object it is part of: the summed probabilities of the
    seed and grow classes for an instance model (any object), of every level for a distance model, else the
    probability of the pixel's own class (its largest, since labels are the most probable class). float32;
    invalid pixels (labels past the classes) get 0."""
    k = probs.shape[-1]
    if rule.flood_levels:  # distance levels: any level is the object
        out = probs[..., 1:].sum(-1, dtype=np.float32)
        out[labels >= k] = 0
        return out
    if rule.grow_class is not None:
        return probs[..., [*rule.seed_classes, rule.grow_class]].sum(-1, dtype=np.float32)
    if k == 1:  # one sigmoid channel: label 1 where p > 0.5
        out = np.where(labels == 1, probs[..., 0], 1 - probs[..., 0]).astype(np.float32)
    else:  # a pixel's label is its most probable class
        out = probs.max(-1).astype(np.float32, copy=False)
    out[labels >= max(k, 2)] = 0
    return out


class ObjectStream:
    """A band sink that builds the objects of the map passing through it (see the module docstring).

    Args:
        shape: (H, W) of the map.
        rule: the object rule. num_classes: the model's label count (labels past it are invalid pixels).
        scratch: where provisional labels wait for the second pass.
        probabilities: whether bands carry probabilities (the table's mean probability; NaN otherwise).
        plane: where the bands' ``probs`` are already object probabilities (a sink's ``probability_planes``),
            the index of this rule's plane; None (default) when they are the K class probabilities.
    """

    def __init__(self, shape: tuple[int, int], rule: ObjectRule, num_classes: int, scratch: ScratchArrays,
                 probabilities: bool = False, plane: int | None = None) -> None:
        self.shape, self.rule, self.num_classes, self.scratch = shape, rule, num_classes, scratch
        self.probabilities, self.plane = probabilities, plane
        self.merger = ObjectMerger(shape, rule)
        self._classes: np.ndarray | None = None  # the buffered rows, in the bands' own label dtype
        self._prob = np.zeros((0, shape[1]), np.float32) if probabilities else None
        self._top = 0       # image row of the buffer's first row
        self._next = 0      # first row not yet labelled
        self._blocks: list[tuple[int, int, int]] = []  # (start, stop, merger index)
        self.table: ObjectTable | None = None
        self.domes = DomeMerger(shape, rule.seed_height, num_classes) if rule.seed_height else None
        self._parked: list[tuple[int, int]] = []  # dome seeds: (start, stop) of the blocks of rows in scratch

    def write_band(self, band: Band) -> None:
        rows = band.labels
        self._classes = rows.copy() if self._classes is None else np.concatenate([self._classes, rows])
        if self._prob is not None:
            if band.probs is None:
                prob = np.full(band.labels.shape, np.nan, np.float32)
            elif self.plane is not None:
                prob = band.probs[..., self.plane]
            else:
                prob = object_probability(self.rule, band.labels, band.probs)
            self._prob = np.concatenate([self._prob, prob])
        if self.domes is not None:
            self._park(final=False)
        else:
            self._label(final=False)

    def _park(self, final: bool) -> None:
        """Dome seeds' first pass: join each complete block of rows' components and park its rows in scratch."""
        assert self.domes is not None and self._classes is not None
        have = self._top + len(self._classes)
        while self._next < self.shape[0]:
            stop = min(self._next + CORE_ROWS, self.shape[0])
            if not final and have < stop:
                return
            rows = self._classes[: stop - self._top]
            self.domes.add(dome_block(rows, (self._next, 0), self.shape, self.rule.seed_height, self.num_classes))
            n = len(self._parked)
            self.scratch.put(f"levels{n}", rows)
            if self._prob is not None:
                self.scratch.put(f"prob{n}", self._prob[: stop - self._top])
                self._prob = self._prob[stop - self._top :]
            self._parked.append((self._next, stop))
            self._classes = self._classes[stop - self._top :]
            self._top = self._next = stop

    def _label_parked(self) -> None:
        """Dome seeds' second pass: label each parked block of rows with its context read back from scratch."""
        assert self.domes is not None
        self.domes.finish()
        cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}

        def parked(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
            if n not in cache:
                rows = self.scratch.get(f"levels{n}")
                seeds = dome_seeds(rows, self.domes.verdicts(n), self.rule.seed_height, self.num_classes)
                prob = self.scratch.get(f"prob{n}") if self._prob is not None else None
                cache[n] = rows, seeds, prob
            return cache[n]

        halo = self.rule.halo
        for start, stop in self._parked:
            w0, w1 = max(start - halo, 0), min(stop + halo, self.shape[0])
            near = [m for m, (a, b) in enumerate(self._parked) if a < w1 and b > w0]
            for m in [m for m in cache if m not in near]:
                del cache[m]
            cuts = []  # each parked block near, and the window's rows of it
            for m in near:
                a, b = self._parked[m]
                cuts.append((parked(m), slice(max(w0, a) - a, min(w1, b) - a)))
            window, seeds = (np.concatenate([p[i][cut] for p, cut in cuts]) for i in (0, 1))
            prob = None if self._prob is None else np.concatenate([p[2][cut] for p, cut in cuts])
            core = (slice(start - w0, stop - w0), slice(0, self.shape[1]))
            block = label_block(window, (w0, 0), core, self.shape, self.rule, self.num_classes, prob, seeds)
            index = self.merger.add(block)
            self.scratch.put(index, block.labels)
            self._blocks.append((start, stop, index))

    def _label(self, final: bool) -> None:
        height = self.shape[0]
        halo = self.rule.halo
        have = self._top + (0 if self._classes is None else len(self._classes))
        while self._next < height:
            stop = min(self._next + CORE_ROWS, height)
            if not final and have < min(stop + halo, height):
                return
            w0 = max(self._next - halo, 0)
            w1 = min(stop + halo, have)
            a, b = w0 - self._top, w1 - self._top
            window = self._classes[a:b]
            prob = None if self._prob is None else self._prob[a:b]
            core = (slice(self._next - w0, stop - w0), slice(0, self.shape[1]))
            block = label_block(window, (w0, 0), core, self.shape, self.rule, self.num_classes, prob)
            index = self.merger.add(block)
            self.scratch.put(index, block.labels)
            self._blocks.append((self._next, stop, index))
            self._next = stop
            keep = max(self._next - halo, self._top) - self._top  # the next block's window starts here
            self._classes = self._classes[keep:]
            if self._prob is not None:
                self._prob = self._prob[keep:]
            self._top += keep

    def finish(self) -> ObjectTable:
        """Label the last rows and merge: the objects' table (ids 1..N in raster order)."""
        got = self._top + (0 if self._classes is None else len(self._classes))
        if got != self.shape[0]:
            raise RuntimeError(f"ObjectStream got {got} of {self.shape[0]} rows")
        if self.domes is not None:
            self._park(final=True)
            self._label_parked()
        else:
            self._label(final=True)
        self._classes = self._prob = None
        self.table = self.merger.finish()
        return self.table

    def bands(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, HbxW uint32 object ids) of each block, in row order (after :meth:`finish`)."""
        for start, _, index in self._blocks:
            yield start, self.merger.relabel(index, self.scratch.get(index))
