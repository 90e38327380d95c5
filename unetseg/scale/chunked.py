"""One process, chunk by chunk, resumable: the Dask path's blocks (:func:`.dask.predict_block`) run in order
here, each recorded in a journal once its chunk is written, so a killed run's successor redoes only the chunks
that were not recorded, and the result (labels and counts) equals one uninterrupted run's."""
from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from ..tiling.blocks import blocks, check_block_sides
from ..tiling.plan import TilePlan
from ..tiling.result import TiledResult
from .dask import predict_block


def run_blocks(model: nn.Module, source: Any, plan: TilePlan, out: Any, journal: Any = None,
               progress: bool = False) -> TiledResult:
    """Predict every chunk of ``out`` (a zarr array or :class:`~unetseg.tiling.result.BlockSink`, chunked on
    the tile grid) in row-major order and return the merged result.

    ``journal``: a :class:`unetseg.io.ome_zarr_labels.ChunkJournal`; chunks it records are skipped (their counts
    come from it), and each chunk done here is recorded after it is written."""
    sides = tuple(int(c) for c in out.chunks[:2])
    check_block_sides(plan.grid, sides)
    done = journal.done() if journal is not None else {}
    parts = []
    todo = blocks(plan.grid, sides, plan.blend)
    with tqdm(total=len(todo), desc="chunks", unit="chunk", disable=not progress, leave=False) as bar:
        for block in todo:
            key = (block[0].start, block[1].start)
            if key in done:
                parts.append(_from_entry(done[key], plan))
            else:
                part = predict_block(model, source, plan, block, out)
                if journal is not None:
                    journal.record(*key, _entry(part))
                parts.append(part)
            bar.update(1)
    compiled = all(p.report.compiled for p in parts)
    return TiledResult.merged(parts, out, plan.report(compiled=compiled)).check_valid()


def _entry(part: TiledResult) -> dict[str, Any]:
    return {"pixels": part.pixels, "class_counts": part.class_counts.tolist(), "compiled": part.report.compiled}


def _from_entry(entry: dict[str, Any], plan: TilePlan) -> TiledResult:
    return TiledResult(None, plan.report(compiled=bool(entry.get("compiled", False))), int(entry["pixels"]),
                       np.asarray(entry["class_counts"], np.int64))
