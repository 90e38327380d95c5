"""tile_size="auto" and batch_size="auto": pick what segments a given image fastest on this model and device.

batch_size="auto" is 1 on CPUs and 4 on GPUs (:func:`auto_batch_size`). For tile_size="auto" each candidate
(256 to 4096 px, rounded to sizes the model accepts, then shrunk to the smallest tile that still covers the
image with as many tiles, so no tile computes rows past the image's end) is timed through the forward stage that
will run (raw tiles in, labels or probabilities out), after a warm-up pass at its shape, in rounds: one timed pass
each, then the candidates within :data:`CONTENDER` of the best again, up to :data:`TIMED_RUNS` passes each, the best
pass counting. The estimated time of the whole image is ``tiles(image, candidate) * seconds_per_tile(candidate)``,
which accounts for the margin/halo each tile wastes. Candidates whose activations would exceed the memory budget
are skipped. Timings are cached per (model config, device, precision, forward stage, tile shape), so a model is
timed once per process, and the resolved engine and tile are kept in the tuning cache (:mod:`.tuning`), so a later
process on the same machine reuses them without timing anything.
"""
from __future__ import annotations

import functools
import json
import time

import numpy as np
import psutil
import torch
from torch import nn

from ..engines.allocator import release_freed_memory
from ..engines.contract import ForwardSpec
from ..engines.graph import InferenceGraph
from ..engines.registry import Engine, build_engine, usable_engines
from ..models.geometry import Geometry
from . import tuning
from .forward import TileForward
from .grid import TileGrid
from .tuning import Choice

# Up to 4096 px: on an AVX512 EPYC a 2048^2 image ran 1.10x faster as one 2144 px tile than as 2x2 tiles of 1120
# (9 % less halo computed, the same speed per computed pixel); on the AMX Xeon of the engines issue the large tile
# was slower (cache). The memory budget and the timing decide.
CANDIDATES = (256, 512, 768, 1024, 1536, 2048, 3072, 4096)
# engine="auto" converts the model only when torch's estimated time for the model's images in this process (the
# image at hand and those before it that stayed on torch) reaches this. Converting (ONNX in memory, 0.5 s) and
# compiling per tile shape (0.2 s) cost ~1-2 s once per process on a 2-core CPU; below a second of work (a 1024^2
# image) a one-off call would not repay it, a program segmenting several images does (on an AMX Xeon torch bf16
# estimated a 2048^2 image at 0.6 s, and OpenVINO then ran it 1.5x faster: per image, it would never have converted).
CONVERT_AFTER_SECONDS = 1.0
# the best of two timed forwards for every candidate in contention (the same count for all, or the min would favour
# some): one alone swung the choice between 512 and 1120 px run to run on a shared 2-core VM
TIMED_RUNS = 2
# candidates whose first estimate is within this factor of the best are timed again, in a second round over them all:
# a slow spell of a shared machine then hits every contender, not only the ones timed during it
CONTENDER = 1.15
_TIMINGS: dict[tuple, list[float]] = {}
# torch's estimated seconds of the images engine="auto" kept on torch without timing another engine, per (model,
# device, precision): what counts towards CONVERT_AFTER_SECONDS
_TORCH_WORK: dict[tuple, float] = {}
UNKNOWN_MODEL = "unknown:"  # model_key's prefix for a model without a config
_BYTES_PER_PIXEL: dict[tuple, float] = {}


def model_key(model: nn.Module) -> str:
    """What a model's timings are kept under: its architecture (config; an ensemble's with its members'), or, for
    a model without a config, its identity in this process (prefixed :data:`UNKNOWN_MODEL`)."""
    config = getattr(model, "config", None)
    if config is None:  # known to this process only: its timings are not kept in the tuning cache
        return f"{UNKNOWN_MODEL}{type(model).__qualname__}@{id(model)}"
    members = getattr(model, "members", None)  # an ensemble's config names no members: its timings are theirs
    if isinstance(members, nn.ModuleList):
        config = {**config, "members": [model_key(m) for m in members]}
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


def probe_tiles(spec: ForwardSpec, batch_size: int, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Random raw tiles (N x H x W x C of the spec's dtype) to time the forward stage on."""
    size = (batch_size, *shape, spec.channels)
    dtype = torch.from_numpy(np.zeros(0, spec.dtype)).dtype
    generator = torch.Generator().manual_seed(0)
    if dtype.is_floating_point:
        return torch.rand(size, generator=generator).to(device=device, dtype=dtype)
    high = min(int(np.iinfo(spec.dtype).max), 255) + 1
    return torch.randint(0, high, size, generator=generator).to(device=device, dtype=dtype)


def seconds_per_tile(engine: Engine, model_key: str, shape: tuple[int, int], *, spec: ForwardSpec,
                     batch_size: int, graph: InferenceGraph | None = None, runs: int = TIMED_RUNS) -> float | None:
    """Measured seconds per tile of ``shape`` at ``batch_size`` through the forward stage that will run (``spec`` on
    ``engine``: raw tiles in, labels or probabilities out): the best of at least ``runs`` timed passes after a
    warm-up pass at that shape, cached per model config, engine, device, precision, spec and shape (asking again
    with more ``runs`` times only the missing ones). None when one batch would exceed the memory budget. The
    activations are measured on the torch ``graph`` (default: ``engine`` itself)."""
    graph = graph if graph is not None else engine
    device = engine.device
    base_key = (model_key, str(device), engine.precision, spec.channels)
    key = (*base_key, engine.name, spec, batch_size, *shape)
    timed = _TIMINGS.get(key, [])
    if len(timed) >= runs:
        return min(timed) / batch_size
    with torch.inference_mode():
        if not timed:
            if base_key not in _BYTES_PER_PIXEL:  # first torch forward: the memory estimate
                x = torch.randn(batch_size, spec.channels, *shape, device=device)
                _BYTES_PER_PIXEL[base_key] = _activation_bytes_per_pixel(graph, x)
                del x
            # checked before the probe tiles are made: every plan asks again for a tile over the budget, and a
            # 4096^2 batch of random uint8 took 80 ms (a third of a 2048^2 image's segmentation on an AMX Xeon)
            if _BYTES_PER_PIXEL[base_key] * batch_size * shape[0] * shape[1] > memory_budget(device):
                return None
        tiles = probe_tiles(spec, batch_size, shape, device)
        forward = TileForward(engine, spec)
        if not timed:
            # cuDNN autotunes, inductor compiles, oneDNN and OpenVINO JIT their kernels on the first call at a
            # shape: 1.3-1.9x slower than later calls on an AMX Xeon (base-16 U-Net, bf16), unevenly across sizes
            forward(tiles)
        while len(timed) < runs:
            _synchronize(device)
            start = time.perf_counter()
            forward(tiles)
            _synchronize(device)
            timed.append(time.perf_counter() - start)
    _TIMINGS[key] = timed
    return min(timed) / batch_size


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@functools.lru_cache(maxsize=1024)  # every plan with tile_size="auto" asks for each candidate: ~600 grids, 11 ms
def balanced_tile(image_shape: tuple[int, int], tile: int, geometry: Geometry, halo: int | str) -> int:
    """The smallest tile side (in steps of the model stride) that tiles ``image_shape`` with no more tiles than
    ``tile`` does: a 2048 px image with a 96 px halo needs 2x2 tiles of 1216 px, not 2x2 of 1536."""
    count = TileGrid.build(image_shape, tile, geometry, halo).num_tiles
    while tile - geometry.stride > 0 and TileGrid.build(image_shape, tile - geometry.stride, geometry,
                                                          halo).num_tiles <= count:
        tile -= geometry.stride
    return tile


def auto_tile_size(engine: Engine, model_key: str, image_shape: tuple[int, int], geometry: Geometry, *,
                   spec: ForwardSpec, batch_size: int, halo: int | str = "auto",
                   graph: InferenceGraph | None = None) -> int:
    """The candidate tile side (px) with the shortest estimated time for an ``image_shape`` image on ``engine``."""
    return fastest_tile(engine, model_key, image_shape, geometry, spec=spec, batch_size=batch_size,
                        halo=halo, graph=graph)[0]


def fastest_tile(engine: Engine, model_key: str, image_shape: tuple[int, int], geometry: Geometry, *,
                 spec: ForwardSpec, batch_size: int, halo: int | str = "auto",
                 graph: InferenceGraph | None = None) -> tuple[int, float]:
    """The candidate tile side (px) with the shortest estimated time for an ``image_shape`` image, and that time
    in seconds (0 when one tile of the smallest candidate covers the image: nothing was timed).

    The estimate is ``tiles(image, candidate) * seconds_per_tile(candidate)``: it charges each candidate the
    margin/halo its tiles waste and whatever cache effects make per-pixel speed non-monotonic in tile size.
    """
    grids = {}
    for c in CANDIDATES:
        c = balanced_tile(tuple(image_shape), c, geometry, halo)
        grid = TileGrid.build(image_shape, c, geometry, halo)
        grids.setdefault(grid.tile_shape, (c, grid))
    options = sorted(grids.values(), key=lambda cg: cg[1].tile_shape[0] * cg[1].tile_shape[1])
    if options[0][1].num_tiles == 1:  # the smallest candidate already covers the image in one tile
        return options[0][0], 0.0
    estimates: dict[int, float] = {}
    grid_of = dict(options)
    for candidate, grid in options:  # first round: one timed pass each, from small to large
        seconds = seconds_per_tile(engine, model_key, grid.tile_shape, spec=spec, batch_size=batch_size,
                                   graph=graph, runs=1)
        if seconds is None:  # over the memory budget; larger tiles would be too
            break
        estimates[candidate] = grid.num_tiles * seconds
        if estimates[candidate] > 1.25 * min(estimates.values()):  # past the optimum; larger tiles won't help
            break
    if not estimates:
        return options[0][0], float("inf")
    for rounds in range(2, TIMED_RUNS + 1):  # then the contenders again, round by round
        best_time = min(estimates.values())
        for candidate in [c for c, t in estimates.items() if t <= CONTENDER * best_time]:
            grid = grid_of[candidate]
            seconds = seconds_per_tile(engine, model_key, grid.tile_shape, spec=spec, batch_size=batch_size,
                                       graph=graph, runs=rounds)
            estimates[candidate] = grid.num_tiles * seconds
    best = min(estimates, key=estimates.__getitem__)
    return best, estimates[best]


def engine_and_tile(graph: InferenceGraph, model_key: str, image_shape: tuple[int, int], geometry: Geometry, *,
                    engine: str, tile_size: int | str, spec: ForwardSpec, batch_size: int,
                    halo: int | str = "auto") -> Choice:
    """Resolve ``engine`` and ``tile_size`` ("auto" or given) together: the pair with the shortest estimated time
    for the image, each engine at its own best tile.

    engine="auto" considers the usable engines (:func:`~unetseg.engines.registry.usable_engines`; ONNX Runtime
    only in fp32, the precision it runs) on CPUs, torch alone on GPUs; it stays on torch, without converting
    the model, while torch's estimate for the model's images in this process (this one and those kept on torch
    before it) is under :data:`CONVERT_AFTER_SECONDS`. amp="int8" runs on OpenVINO.
    A measured choice is kept in the tuning cache (:mod:`.tuning`) and reused by later processes on this machine
    while the engine still runs here and its tiles fit the memory free now; one that stayed on torch without
    comparing is measured again once this process's work on the model reaches the threshold.
    """
    if engine != "auto" and tile_size != "auto":
        return Choice(engine, int(tile_size))
    work = (model_key, str(graph.device), graph.precision.name)
    key = None
    if not model_key.startswith(UNKNOWN_MODEL):
        request = {"model": model_key, "image": list(image_shape), "engine": engine, "tile_size": tile_size,
                   "spec": tuning.spec_facts(spec), "batch": batch_size, "halo": halo,
                   "precision": graph.precision.name, "device": str(graph.device), "candidates": CANDIDATES,
                   "convert_after": CONVERT_AFTER_SECONDS}
        key = tuning.choice_key(request, graph.device)
        hit = tuning.recall(key)
        if (hit is not None and hit.batch_bytes <= memory_budget(graph.device)
                and hit.engine in usable_engines(graph.device, graph.precision)
                and (hit.compared or _TORCH_WORK.get(work, 0.0) + (hit.seconds or 0.0) < CONVERT_AFTER_SECONDS)):
            return _counted(hit, work)
    choice = _measured_choice(graph, model_key, image_shape, geometry, engine=engine, tile_size=tile_size,
                              spec=spec, batch_size=batch_size, halo=halo, work=_TORCH_WORK.get(work, 0.0))
    if key is not None:
        tuning.remember(key, choice)
    return _counted(choice, work)


def _counted(choice: Choice, work: tuple) -> Choice:
    """``choice``, its estimated seconds added to the model's torch work when it stayed on torch uncompared."""
    if not choice.compared:
        _TORCH_WORK[work] = _TORCH_WORK.get(work, 0.0) + (choice.seconds or 0.0)
    return choice


def _measured_choice(graph: InferenceGraph, model_key: str, image_shape: tuple[int, int], geometry: Geometry, *,
                     engine: str, tile_size: int | str, spec: ForwardSpec, batch_size: int,
                     halo: int | str, work: float = 0.0) -> Choice:
    """The measured choice; ``work``: torch's estimated seconds of the model's earlier images kept on torch."""
    def estimate(name: str) -> tuple[float, int]:
        runner = build_engine(graph, name)
        if tile_size != "auto":
            grid = TileGrid.build(image_shape, tile_size, geometry, halo)
            seconds = seconds_per_tile(runner, model_key, grid.tile_shape, spec=spec, batch_size=batch_size,
                                       graph=graph)
            return (float("inf") if seconds is None else seconds * grid.num_tiles), int(tile_size)
        tile, seconds = fastest_tile(runner, model_key, image_shape, geometry, spec=spec,
                                     batch_size=batch_size, halo=halo, graph=graph)
        return seconds, tile

    def chosen(seconds: float, tile: int, name: str, compared: bool = True) -> Choice:
        per_pixel = _BYTES_PER_PIXEL.get((model_key, str(graph.device), graph.precision, spec.channels), 0.0)
        th, tw = TileGrid.build(image_shape, tile, geometry, halo).tile_shape
        return Choice(name, tile, seconds if np.isfinite(seconds) else None, per_pixel * batch_size * th * tw,
                      compared=compared)

    if engine == "auto":
        others = [n for n in usable_engines(graph.device, graph.precision) if n != "torch"]
        if graph.precision.int8:
            engine = "openvino"
        elif not others or graph.device.type != "cpu":
            engine = "torch"
        else:
            timed = [(*estimate("torch"), "torch")]
            if timed[0][0] + work < CONVERT_AFTER_SECONDS:
                return chosen(*timed[0], compared=False)
            # torch's freed activations are kept for its next forward (.allocator); another engine would run
            # with them still held: handed back first, so the process peaks at the larger engine, not the sum
            release_freed_memory()
            timed += [(*estimate(name), name) for name in others]
            best = min(timed)
            if best[2] != "torch":
                release_freed_memory()
            return chosen(*best)
    return chosen(*estimate(engine), engine)
