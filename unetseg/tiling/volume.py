"""Overlap-tile inference of volumes (DxHxW[xC]) by a 3D model, streamed slab by slab along the first axis.

The same tiler as for images, on three axes: the grid (:class:`~unetseg.tiling.grid.TileGrid`) plans each axis
with that axis's geometry (an anisotropic 3D U-Net has its own stride, margin and halo per axis), windows are
mirror-padded per axis (:func:`~unetseg.tiling.padding.read_box`), and the forward stage
(:class:`~unetseg.tiling.forward.TileForward`: normalisation, nodata, TTA, softmax/argmax) runs on the device.
Tiles start on multiples of each axis's stride and keep only their centre (crop blending), so with the exact halo
(or valid padding) the result equals the model applied once to the whole mirror-padded volume.

Memory: a slab is one tile row along the first axis (its kept depth x H x W labels, or x K probabilities); it is
written to the destination (``out[z0:z1] = slab``) as soon as its tiles are done, so a streaming destination
(:class:`unetseg.io.nifti.NiftiSlabWriter`, a zarr array) never sees the whole volume's float probabilities.
"""
from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.labels import label_counts, map_dtype
from ..engines.allocator import release_between_batches
from ..engines.contract import ForwardSpec, TileOutput
from ..engines.graph import inference_graph
from ..engines.registry import build_engine, usable_engines
from ..engines.tta import resolve_tta
from ..errors import UnetsegError, UnetsegWarning
from ..models.geometry import Geometry, round_up
from ..models.precision import resolve_precision
from .autotile import memory_budget
from .forward import TileForward
from .grid import TileGrid, plan_axis, warn_wasteful
from .options import DEFAULTS, TileOptions
from .padding import read_box
from .plan import TilePlan, input_settings
from .result import TiledResult
from .splitter import travel_dtype

# tile_size="auto" for volumes: of the grids whose tiles' activations stay within this many bytes, the one that
# computes the fewest voxels. That matters more in 3D than in 2D: every tile recomputes the context on both sides of
# every axis, and a tile that overhangs the volume computes mirrored voxels nobody keeps (brain volume, halo 32:
# 8 tiles of 168^3 = 7.3x the volume's voxels; the searched 2 x 2 x 2 grid of 136 x 168 x 152 tiles: 5.3x; in bf16,
# whose values take 2 bytes, 2 tiles of 208 x 168 x 240: 3.2x, 1.86x the speed; a 512^3 volume's peak RSS 596 -> 986 MiB).
# Measured peak of an eval forward (CPU): about ACTIVATION_FACTOR x the first level's feature map.
TILE_MEMORY_BYTES = 768 * 2**20
ACTIVATION_FACTOR = 6
# where even the smallest tiles exceed free memory's share, tiles up to this many times their voxels are allowed:
# twice the memory for a far faster grid (24 x 96 x 96 voxels, halo 96: 2 tiles and 31M voxels computed, not 72
# and 648M)
OVERSHOOT = 2


def spatial_dims(model: nn.Module) -> int:
    """2 for image models (NCHW), 3 for volume models (NCDHW)."""
    return int(getattr(model, "spatial_dims", 2))


def volume_channels(model: nn.Module, volume: Any) -> int:
    """The channels of ``volume`` for a 3D model: DxHxW is one channel, DxHxWxC has C; anything else is a one-line
    UnetsegError."""
    shape = tuple(volume.shape)
    if len(shape) == 3:
        channels = 1
    elif len(shape) == 4:
        channels = int(shape[3])
    else:
        raise UnetsegError(f"a 3D model segments volumes of shape DxHxW or DxHxWxC, got shape {shape}")
    expected = getattr(model, "in_channels", channels)
    if channels != expected:
        raise UnetsegError(f"volume of shape {shape} has {channels} channel(s) but the model expects {expected}")
    if min(shape[:3]) < 1:
        raise UnetsegError(f"volume is empty: shape {shape}")
    return channels


def tile_voxels(model: nn.Module, batch_size: int, itemsize: int = 4, budget: int = TILE_MEMORY_BYTES) -> int:
    """Input voxels per tile whose forward fits ``budget`` bytes (default :data:`TILE_MEMORY_BYTES`) with
    ``batch_size`` tiles at once and activations of ``itemsize`` bytes (4 in fp32, 2 under bf16/fp16)."""
    width = getattr(model, "widths", [32])[0]
    return max(1, budget // (itemsize * ACTIVATION_FACTOR * width * batch_size))


def axis_tilings(length: int, geometry: Geometry, halo: int | str) -> list[tuple[int, int]]:
    """(tile, count) of every way to tile an axis of ``length`` voxels, the smallest tile for each count: from one
    tile over the whole axis down to the smallest tile the axis's context allows."""
    best: dict[int, int] = {}
    context = geometry.halo_for(halo) if geometry.padding == "same" else geometry.margin
    top = round_up(length + 2 * context, geometry.stride) + 2 * geometry.stride
    for size in range(geometry.stride, top + 1, geometry.stride):
        plan = plan_axis(length, size, geometry, geometry.halo_for(halo))
        if plan.count not in best or plan.tile < best[plan.count]:
            best[plan.count] = plan.tile
    return sorted((tile, count) for count, tile in best.items())


def auto_volume_tile(shape: tuple[int, ...], geometries: tuple[Geometry, ...], halo: int | str,
                     voxels: int, most: int | None = None) -> tuple[int, ...]:
    """Tile sides (D, H, W): of the grids whose tiles hold at most ``voxels`` input voxels, the one that computes
    the fewest voxels in all (tiles x tile voxels; ties: fewer tiles).

    Where the context alone makes every tile larger than ``voxels`` (a deep model's exact halo around a small
    volume), memory is over the preferred bound whatever the grid, and the smallest tiles are the slowest choice:
    each recomputes the whole context for a sliver of kept voxels (24 x 96 x 96 voxels, halo 96: 72 tiles of
    208^3, 2200x the volume's voxels). Then the grid computing the fewest voxels among those within ``most``
    voxels (what free memory holds; None: no bound), and where even the smallest tiles exceed that, among those
    within :data:`OVERSHOOT` x the smallest tiles' voxels."""
    axes = [axis_tilings(n, g, halo) for n, g in zip(shape, geometries, strict=True)]
    grids = []  # (voxels computed, tiles, tile voxels, tile sides) of every grid
    for combo in itertools.product(*axes):
        size, count = math.prod(t for t, _ in combo), math.prod(c for _, c in combo)
        grids.append((count * size, count, size, tuple(t for t, _ in combo)))
    smallest = math.prod(a[0][0] for a in axes)
    fallback = most if most is None or smallest <= most else OVERSHOOT * smallest
    for bound in (voxels, fallback):
        fits = [g for g in grids if bound is None or g[2] <= bound]
        if fits:
            return min(fits)[3]
    raise AssertionError("the smallest tiles are always within the fallback bound")


def volume_input_voxels(model: nn.Module, shape: tuple[int, int, int], halo: int | str = "exact") -> int:
    """Input voxels (tiles with their context) that predicting a volume of ``shape`` (D, H, W) computes with
    ``model`` at ``halo`` and the automatic tiles: the cost of a prediction before running it (plans)."""
    geometries = Geometry.axes(model)
    return TileGrid.build(shape, auto_volume_tile(shape, geometries, halo, tile_voxels(model, 1)), geometries,
                          halo).computed_pixels


def plan_volume(model: nn.Module, volume: Any, options: TileOptions = DEFAULTS) -> TilePlan:
    """:func:`~unetseg.tiling.plan.plan_tiles` for a 3D model: check ``options`` against the model and the
    volume and resolve every "auto". OpenVINO (where installed, :func:`volume_engine`) or torch runs volumes;
    crop blending, labels or probabilities."""
    channels = volume_channels(model, volume)
    options = replace(options, tta=resolve_tta(model, options.tta))
    if options.engine not in ("auto", "torch", "openvino"):
        raise UnetsegError(f"engine={options.engine!r}: volumes run on the torch or the OpenVINO engine "
                           "(engine='auto', 'torch' or 'openvino')")
    if options.blend != "crop":
        raise UnetsegError(f"blend={options.blend!r}: volumes are stitched by crop blending (blend='crop'), which "
                           "with the exact halo equals one pass over the whole volume")
    if options.output not in ("labels", "probs"):
        raise UnetsegError(f"output={options.output!r}: volumes give output='labels' or 'probs'")
    if options.amp == "int8":
        raise UnetsegError("amp='int8' quantises 2D models on OpenVINO; run volumes with amp='auto', 'bf16', "
                           "'fp16' or False")
    norm, invalid, label, device = input_settings(model, volume, options, channels, "volume")
    precision = resolve_precision(options.amp, device)
    geometries = Geometry.axes(model)
    shape = tuple(int(n) for n in volume.shape[:3])
    batch = 1 if options.batch_size == "auto" else int(options.batch_size)  # one large tile beats several small
    itemsize = 4 if precision.dtype is None else 2
    if options.tile_size == "auto":
        tile: int | tuple[int, ...] = auto_volume_tile(
            shape, geometries, options.halo, tile_voxels(model, batch, itemsize),
            tile_voxels(model, batch, itemsize, memory_budget(device)))
    else:
        tile = int(options.tile_size)
    grid = TileGrid.build(shape, tile, geometries, options.halo)
    warn_wasteful(grid, options.tile_size)
    warn_oversized(grid, model, batch, itemsize, options.tile_size)
    spec = ForwardSpec.of(norm, volume.dtype, travel_dtype(volume.dtype), channels, invalid=invalid,
                          labels=options.output == "labels", tta=options.tta, dims=3)
    engine = volume_engine(device, precision) if options.engine == "auto" else options.engine
    return TilePlan(grid, batch, "crop", options.pad_mode, options.tta, options.output, precision, device, norm,
                    options.compile is True, invalid, label, spec, engine)


def warn_oversized(grid: TileGrid, model: nn.Module, batch: int, itemsize: int, tile_size: int | str) -> None:
    """Warn when the automatic tiles exceed :data:`TILE_MEMORY_BYTES` because the halo alone is that large: the
    prediction is slow and memory-hungry, and a smaller halo (or a measured one) is the remedy."""
    voxels = math.prod(grid.tile_shape)
    if tile_size != "auto" or voxels <= tile_voxels(model, batch, itemsize):
        return
    computed = grid.computed_pixels / math.prod(grid.shape)
    contexts = "x".join(str(a.context) for a in grid.axes)
    warnings.warn(f"the halo ({contexts} voxels per side along z, y, x) makes every tile of this "
                  f"{'x'.join(map(str, grid.shape))} volume over the tile memory bound: {grid.num_tiles} tile(s) of "
                  f"{'x'.join(map(str, grid.tile_shape))} compute {computed:.0f}x its voxels; a checkpoint with a "
                  "measured halo (training measures it when its budget allows) or a smaller halo= is faster",
                  UnetsegWarning, stacklevel=4)


def volume_engine(device: torch.device, precision: Any) -> str:
    """engine="auto" for volumes: OpenVINO where it is installed and runs ``precision`` on this CPU, else torch.
    A rule from measurement rather than a per-call timing (a 3D tile takes seconds, and a volume has a few): on the
    brain volume (2-core AMD EPYC, AVX512-BF16) OpenVINO ran 1.3-1.7x torch's speed at every halo in bf16 and fp32
    (``scripts/benchmark.py --sections volumes``)."""
    if device.type == "cpu" and "openvino" in usable_engines(device, precision):
        return "openvino"
    return "torch"


def _tile_boxes(grid: TileGrid, slab: int) -> Iterator[tuple[tuple[int, int, int], tuple[tuple[int, int], ...]]]:
    """The tiles of slab ``slab`` (C order) with their input windows (start, stop) per axis."""
    for j in range(grid.axes[1].count):
        for k in range(grid.axes[2].count):
            index = (slab, j, k)
            yield index, tuple((a.input_start(i), a.input_start(i) + a.tile) for a, i in zip(grid.axes, index,
                                                                                              strict=True))


def run_volume(model: nn.Module, volume: Any, plan: TilePlan, *, out: Any = None,
               progress: bool | Callable[[int, int], Any] = False, journal: Any = None) -> TiledResult:
    """Run ``plan`` over ``volume``: per slab (one tile row along D), read each tile's mirror-padded window, run the
    forward stage on the plan's device, keep each tile's centre in the slab, then hand the slab to ``out``
    (``out[z0:z1] = slab``; None: a new numpy array). Returns the output, settings and class counts.

    ``journal``: a :class:`unetseg.io.ome_zarr_labels.ChunkJournal` of a resumable ``out`` (labels only): slabs it
    records (by their first slice) are skipped, their class counts taken from it; each slab done here is recorded
    once ``out`` holds it. So a killed run's successor computes only the slabs that were not recorded."""
    from .predict import TileProgress  # the progress bar of the 2D runner

    grid, spec = plan.grid, plan.spec
    built: list[TileForward] = []  # the engine, built for the first slab the journal does not hold

    def forward(x: torch.Tensor) -> TileOutput:
        if not built:
            engine = build_engine(inference_graph(model, plan.device, plan.precision, compile=plan.compile),
                                  plan.engine)
            built.append(TileForward(engine, spec))
        return built[0](x)
    num_classes = int(getattr(model, "num_classes", 0)) or None
    labels_dtype = map_dtype(num_classes or 256, plan.nodata_label)
    if out is None:
        out = (np.empty(grid.shape, labels_dtype) if plan.output == "labels" else None)
    counts: np.ndarray | None = None
    if journal is not None and (plan.output != "labels" or out is None):
        raise ValueError("a journal records labels written to an output, not probabilities or a returned array")
    done: dict[int, np.ndarray] = {}
    if journal is not None:
        done = {row: np.asarray(entry["class_counts"], np.int64) for (row, _), entry in journal.done().items()}
    with torch.inference_mode(), TileProgress(grid.num_tiles, progress) as bar:
        for slab in range(grid.axes[0].count):
            z0, z1 = grid.axes[0].kept(slab)
            tiles = list(_tile_boxes(grid, slab))
            if z0 in done:
                counts = done[z0] if counts is None else counts + done[z0]
                bar.update(len(tiles))
                continue
            merged: np.ndarray | None = None
            for first in range(0, len(tiles), plan.batch_size):
                batch = tiles[first : first + plan.batch_size]
                raw = np.stack([read_box(volume, box, plan.pad_mode).numpy() for _, box in batch])
                x = torch.from_numpy(np.ascontiguousarray(raw.reshape(*raw.shape[:4], -1), dtype=spec.dtype))
                result = forward(x.to(plan.device))
                if merged is None:
                    classes = result.classes
                    kept = (z1 - z0, *grid.shape[1:])
                    merged = (np.empty(kept, labels_dtype) if plan.output == "labels"
                              else np.empty((*kept, classes), np.float32))
                _keep(merged, result, [index for index, _ in batch], grid, plan.nodata_label)
                bar.update(len(batch))
                release_between_batches()
            assert merged is not None
            if out is None:  # probabilities: the class count is known once the first tile ran
                out = np.empty((*grid.shape, merged.shape[-1]), np.float32)
            out[z0:z1] = merged
            slab_counts = (label_counts(merged, num_classes or int(merged.max()) + 1) if plan.output == "labels"
                           else _prob_counts(merged))
            counts = slab_counts if counts is None else counts + slab_counts
            if journal is not None:
                journal.record(z0, 0, {"class_counts": slab_counts.tolist()})
    assert counts is not None
    compiled = bool(built) and built[0].engine.compiled
    return TiledResult(out, plan.report(compiled=compiled), math.prod(grid.shape), counts)


def _keep(merged: np.ndarray, result: TileOutput, indices: list[tuple[int, int, int]], grid: TileGrid,
          nodata_label: int | None) -> None:
    """Copy each tile's kept centre (crop blending) from the batch ``result`` into the slab ``merged``."""
    for n, index in enumerate(indices):
        target, source, context = [], [], []
        for axis, (plan, i) in enumerate(zip(grid.axes, index, strict=True)):
            a, b = plan.kept(i)
            start = a - grid.axes[0].kept(index[0])[0] if axis == 0 else a
            target.append(slice(start, start + b - a))
            source.append(slice(plan.offset, plan.offset + b - a))
            context.append(slice(plan.context, plan.context + b - a))
        if result.labels is not None:
            values = result.labels[n][tuple(source)]
        else:
            assert result.probs is not None
            values = result.probs[n][(slice(None), *source)].movedim(0, -1)
        if result.invalid is not None:
            bad = result.invalid[n][tuple(context)]
            fill = nodata_label if result.labels is not None else 0
            if fill is None:
                raise UnetsegError("the volume has invalid voxels but no nodata label was resolved")
            values = values.masked_fill(bad if result.labels is not None else bad[..., None], fill)
        merged[tuple(target)] = values.cpu().numpy()


def _prob_counts(probs: np.ndarray) -> np.ndarray:
    """Voxels per most probable class of a probabilities slab (invalid voxels, all zero, not counted)."""
    valid = probs.max(-1) > 0
    return np.bincount(probs.argmax(-1)[valid].ravel(), minlength=probs.shape[-1]).astype(np.int64)
