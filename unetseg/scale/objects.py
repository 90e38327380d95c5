"""Objects of a class map held in a chunked zarr array, over Dask workers, as dask-image's ``label`` does it:
each task labels one chunk (with ``rule.halo`` px of context) and parks its provisional labels in scratch files;
this process merges the chunks' pieces (:class:`~unetseg.objects.separate.ObjectMerger`); each task then
relabels its chunk into the output. The result equals one pass over the whole map
(:func:`~unetseg.objects.separate.label_objects`) label for label. Dome seeds (``rule.seed_height``) take two
rounds first: each task joins nothing but reports its chunk's components (:func:`~unetseg.objects.domes.dome_block`),
this process joins them (:class:`~unetseg.objects.domes.DomeMerger`), and each task writes its chunk's seeds into
a scratch zarr that the labelling tasks read with their context.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..io.scratch import ScratchArrays
from ..io.zarr_io import create_array
from ..objects.domes import DomeBlock, DomeMerger, dome_block, dome_seeds
from ..objects.merge import Block, ObjectMerger, ObjectTable, Relabeling
from ..objects.separate import ObjectRule, block_window, blocks_of, label_block
from .dask import _compute, _dask


def dome_chunk(classes: Any, core: tuple[int, int, int, int], rule: ObjectRule, num_classes: int) -> DomeBlock:
    """One task: the dome components of one chunk's core (no context)."""
    a, b, c, d = core
    shape = tuple(int(s) for s in classes.shape[:2])
    return dome_block(np.asarray(classes[a:b, c:d]), (a, c), shape, rule.seed_height, num_classes)


def seed_chunk(classes: Any, core: tuple[int, int, int, int], rule: ObjectRule, num_classes: int,
               verdicts: list[np.ndarray], seeds: Any) -> None:
    """One task: one chunk's dome seeds, from its components' merged verdicts, into ``seeds`` (bool zarr)."""
    a, b, c, d = core
    seeds[a:b, c:d] = dome_seeds(np.asarray(classes[a:b, c:d]), verdicts, rule.seed_height, num_classes)


def label_chunk(classes: Any, prob: Any, core: tuple[int, int, int, int], rule: ObjectRule, num_classes: int,
                scratch: str, key: int, seeds: Any = None) -> Block:
    """One task: the objects of one chunk's core; its provisional labels go to ``scratch`` (not returned).
    ``seeds``: the map's dome seeds (a bool zarr) for a rule with ``seed_height``."""
    shape = tuple(int(s) for s in classes.shape[:2])
    (r0, r1, c0, c1), inner = block_window(core, shape, rule.halo)
    window = np.asarray(classes[r0:r1, c0:c1])
    p = None if prob is None else np.asarray(prob[r0:r1, c0:c1])
    markers = None if seeds is None else np.asarray(seeds[r0:r1, c0:c1])
    block = label_block(window, (r0, c0), inner, shape, rule, num_classes, p, markers)
    ScratchArrays(scratch).put(key, block.labels)
    block.labels = np.zeros((0, 0), np.int32)
    return block


def relabel_chunk(scratch: str, key: int, core: tuple[int, int, int, int], relabeling: Relabeling, index: int,
                  out: Any) -> None:
    """One task: a chunk's provisional labels as final object ids, into ``out``."""
    a, b, c, d = core
    out[a:b, c:d] = relabeling(index, ScratchArrays(scratch).get(key))


def dask_objects(classes: Any, prob: Any, rule: ObjectRule, num_classes: int, scratch: str | os.PathLike,
                 out: Any, client: Any = None, progress: bool = False) -> ObjectTable:
    """The objects of ``classes`` (a zarr array; ``prob`` the per-pixel object probability, or None), chunk by
    chunk on ``client``'s workers, written as final ids into ``out`` (a zarr array chunked alike); returns
    their table. The workers must see ``scratch`` (a folder) and both arrays."""
    dask = _dask()
    shape = tuple(int(s) for s in classes.shape[:2])
    cores = blocks_of(shape, tuple(int(c) for c in out.chunks[:2]))
    shared = [dask.delayed(x, traverse=False) for x in (classes, prob, out)]
    seeds = None
    if rule.seed_height:
        found = _compute(dask, [dask.delayed(dome_chunk, pure=False)(shared[0], core, rule, num_classes)
                                for core in cores], client, progress)
        domes = DomeMerger(shape, rule.seed_height, num_classes)
        for block in found:
            domes.add(block)
        domes.finish()
        seeds = dask.delayed(create_array(os.path.join(scratch, "seeds.zarr"), shape, bool, out.chunks[:2]),
                             traverse=False)
        _compute(dask, [dask.delayed(seed_chunk, pure=False)(shared[0], core, rule, num_classes, domes.verdicts(n),
                                                             seeds) for n, core in enumerate(cores)], client, progress)
    label = dask.delayed(label_chunk, pure=False)
    blocks = _compute(dask, [label(shared[0], shared[1], core, rule, num_classes, os.fspath(scratch), n, seeds)
                             for n, core in enumerate(cores)], client, progress)
    merger = ObjectMerger(shape, rule)
    indices = [merger.add(block) for block in blocks]
    table = merger.finish()
    relabel = dask.delayed(relabel_chunk, pure=False)
    lookup = dask.delayed(merger.relabeling, traverse=False)  # one graph node: sent once to each worker
    _compute(dask, [relabel(os.fspath(scratch), n, core, lookup, index, shared[2])
                    for n, (core, index) in enumerate(zip(cores, indices, strict=True))], client, progress)
    return table
