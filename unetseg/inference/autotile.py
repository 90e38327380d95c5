"""tile_size="auto" and batch_size="auto": pick what segments a given image fastest on this model and device.

batch_size="auto" is 1 on CPUs and 4 on GPUs (:func:`auto_batch_size`). For tile_size="auto" each candidate
(256 to 2048 px, rounded to sizes the model accepts, then shrunk to the smallest tile that still covers the
image with as many tiles, so no tile computes rows past the image's end) is timed with one forward pass of a
full batch after a warm-up pass at its shape; the estimated time of the whole image is
``tiles(image, candidate) * seconds_per_tile(candidate)``, which accounts for the margin/halo each tile
wastes. Candidates whose activations would exceed the memory budget are skipped. Timings are cached per
(model config, device, precision, channels, tile shape), so a model is timed once per process.
"""
from __future__ import annotations

import json
import time

import psutil
import torch
from torch import nn

from ..models.geometry import Geometry
from .graph import InferenceGraph
from .grid import TileGrid

CANDIDATES = (256, 512, 768, 1024, 1536, 2048)
_SECONDS_PER_TILE: dict[tuple, float] = {}
_BYTES_PER_PIXEL: dict[tuple, float] = {}


def model_key(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    if config is None:
        return f"{type(model).__qualname__}@{id(model)}"
    return json.dumps(config, sort_keys=True, default=str)


def auto_batch_size(device: torch.device) -> int:
    """Tiles per forward pass for batch_size="auto": 4 on GPUs (small batches leave them launch-bound), 1 on CPUs.

    A CPU gains nothing from batching (each convolution already uses every core) and loses cache locality:
    on a 2-core AVX2 CPU, 4x512^2 tiles per pass ran 15-40% slower per pixel than 1x512^2 (smp ResNet-18
    U-Net 0.59 vs 0.70 MP/s, base-16 U-Net 0.71 vs 1.16) and held 4x the activations.
    """
    return 4 if device.type == "cuda" else 1


def memory_budget(device: torch.device) -> int:
    """Bytes the activations of one batch may use: half the free GPU memory, a quarter of free RAM on CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    return int(psutil.virtual_memory().available * 0.25)


def _activation_bytes_per_pixel(graph: InferenceGraph, x: torch.Tensor) -> float:
    """Sum of all module outputs' bytes per input pixel: an upper bound of the forward's peak activations."""
    total = 0

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in graph.net.modules() if not list(m.children())]
    try:
        graph(x)
    finally:
        for h in handles:
            h.remove()
    return total / (x.shape[0] * x.shape[-2] * x.shape[-1])


def seconds_per_tile(graph: InferenceGraph, model_key: str, shape: tuple[int, int], *, channels: int,
                     batch_size: int) -> float | None:
    """Measured seconds per tile of ``shape`` at ``batch_size`` (after a warm-up forward at that shape; cached per
    model config, device, precision and shape), or None when one batch would exceed the memory budget."""
    device = graph.device
    base_key = (model_key, str(device), graph.precision, channels)
    key = (*base_key, batch_size, *shape)
    if key in _SECONDS_PER_TILE:
        return _SECONDS_PER_TILE[key]
    budget = memory_budget(device)
    if base_key in _BYTES_PER_PIXEL and _BYTES_PER_PIXEL[base_key] * batch_size * shape[0] * shape[1] > budget:
        return None
    x = torch.randn(batch_size, channels, *shape, device=device)
    with torch.inference_mode():
        if base_key not in _BYTES_PER_PIXEL:  # first forward: warm-up and memory estimate
            _BYTES_PER_PIXEL[base_key] = _activation_bytes_per_pixel(graph, x)
            if _BYTES_PER_PIXEL[base_key] * batch_size * shape[0] * shape[1] > budget:
                return None
        else:
            # cuDNN autotunes, inductor compiles, oneDNN JITs its kernels on the first call at a shape: 1.3-1.9x
            # slower than later calls on an AMX Xeon (base-16 U-Net, bf16), and unevenly so across sizes
            graph(x)
        _synchronize(device)
        start = time.perf_counter()
        graph(x)
        _synchronize(device)
    _SECONDS_PER_TILE[key] = (time.perf_counter() - start) / batch_size
    return _SECONDS_PER_TILE[key]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def balanced_tile(image_shape: tuple[int, int], tile: int, geometry: Geometry, halo: int | str) -> int:
    """The smallest tile side (in steps of the model stride) that tiles ``image_shape`` with no more tiles than
    ``tile`` does: a 2048 px image with a 96 px halo needs 2x2 tiles of 1216 px, not 2x2 of 1536."""
    count = TileGrid.build(image_shape, tile, geometry, halo).num_tiles
    while tile - geometry.stride > 0 and TileGrid.build(image_shape, tile - geometry.stride, geometry,
                                                          halo).num_tiles <= count:
        tile -= geometry.stride
    return tile


def auto_tile_size(graph: InferenceGraph, model_key: str, image_shape: tuple[int, int], geometry: Geometry, *,
                   channels: int, batch_size: int, halo: int | str = "auto") -> int:
    """The candidate tile side (px) with the shortest estimated time for an ``image_shape`` image.

    The estimate is ``tiles(image, candidate) * seconds_per_tile(candidate)``: it charges each candidate the
    margin/halo its tiles waste and whatever cache effects make per-pixel speed non-monotonic in tile size.
    """
    grids = {}
    for c in CANDIDATES:
        c = balanced_tile(image_shape, c, geometry, halo)
        grid = TileGrid.build(image_shape, c, geometry, halo)
        grids.setdefault(grid.tile_shape, (c, grid))
    options = sorted(grids.values(), key=lambda cg: cg[1].tile_shape[0] * cg[1].tile_shape[1])
    if options[0][1].num_tiles == 1:  # the smallest candidate already covers the image in one tile
        return options[0][0]
    best, best_time = options[0][0], float("inf")
    for candidate, grid in options:
        seconds = seconds_per_tile(graph, model_key, grid.tile_shape, channels=channels, batch_size=batch_size)
        if seconds is None:  # over the memory budget; larger tiles would be too
            break
        estimate = grid.num_tiles * seconds
        if estimate < best_time:
            best, best_time = candidate, estimate
        elif estimate > 1.25 * best_time:  # throughput falls past the optimum; larger tiles won't help
            break
    return best
