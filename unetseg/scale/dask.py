"""``predict_dask``: one image too large for one machine's time, spread over a Dask cluster, written into zarr.

The work is mapped over the *output* chunk grid (:mod:`.blocks`): each task reads its own input window plus
context through the same mirror-padding reader as :func:`unetseg.predict_tiled`, runs the same tiles, and
writes one whole chunk of the zarr output (chunk-aligned, so no locks). The model travels once per worker:
a checkpoint path is loaded by each worker process once (a per-process cache), a model object is one
shared graph node that each worker receives once. Dask is optional (``pip install unetseg[scale]``).
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from tqdm.auto import tqdm

from ..data.labels import label_counts, map_dtype
from ..errors import UnetsegError
from ..models.base import SegmentationModel
from ..models.ensemble import as_model
from ..tiling.blocks import AxisBlock, block_input, block_sides, blocks, check_block_sides, crop_block
from ..tiling.merger import probs_to_labels
from ..tiling.options import DEFAULTS, TileOptions
from ..tiling.plan import TilePlan, plan_tiles
from ..tiling.predict import run_tiles
from ..tiling.result import BlockSink, TiledResult

DEFAULT_CHUNK = 2048
_LOCK = threading.Lock()


def _dask() -> Any:
    try:
        import dask
    except ImportError:
        raise UnetsegError("Dask is not installed: pip install 'unetseg[scale]'") from None
    return dask


@functools.lru_cache(maxsize=4)
def _load_model(path: str, mtime_ns: int, device: str) -> nn.Module:
    from ..models.checkpoint import load_model

    return load_model(path, device=device)


def worker_model(model: nn.Module | str | os.PathLike, device: str = "cpu") -> nn.Module:
    """``model`` itself, or the checkpoint at that path loaded once per process (and again only if the file changes)."""
    if isinstance(model, nn.Module):
        return model
    path = os.fspath(model)
    with _LOCK:  # threads of one worker share one load
        return _load_model(path, os.stat(path).st_mtime_ns, device)


@dataclass(frozen=True)
class FileRef:
    """An image file (or zarr folder) and pyramid level that each worker opens itself; ``drop_alpha``: without its
    alpha band (:meth:`unetseg.io.source.ImageSource.without_alpha`), as the process that planned the run opened it."""

    path: str
    level: int = 0
    drop_alpha: bool = False


@functools.lru_cache(maxsize=4)
def _open_source(ref: FileRef, mtime_ns: int) -> Any:
    from ..io.source import open_image

    source = open_image(ref.path, ref.level)
    return (source.without_alpha() if ref.drop_alpha else source).array


def worker_source(source: Any) -> Any:
    """``source`` itself (an array), or the image at that path / :class:`FileRef` opened lazily once per process."""
    if isinstance(source, (str, os.PathLike)):
        source = FileRef(os.fspath(source))
    if not isinstance(source, FileRef):
        return source
    with _LOCK:
        return _open_source(source, os.stat(source.path).st_mtime_ns)


def predict_block(model: Any, source: Any, plan: TilePlan, block: tuple[AxisBlock, AxisBlock], out: Any
                  ) -> TiledResult:
    """One task: predict ``block`` of the global grid and write it into ``out`` (an array of the plan's output,
    or a :class:`~unetseg.tiling.result.BlockSink` taking labels and probabilities); returns the block's
    result (its pixels and class counts; no output)."""
    image = worker_source(source)
    net = worker_model(model, str(plan.device))
    window, grid = block_input(image, plan.grid, block, plan.pad_mode)
    # the model's inference graph is built once per worker (cached while the weights are unchanged)
    done = run_tiles(net, window, plan.on_grid(grid))
    result = crop_block(done.output, block)
    rb, cb = block
    k = result.shape[2] if plan.output == "probs" else len(done.class_counts)
    labels = probs_to_labels(result, plan.nodata_label) if plan.output == "probs" else result
    rows, cols = slice(rb.start, rb.stop), slice(cb.start, cb.stop)
    if isinstance(out, BlockSink):
        out.write_block(rows, cols, labels, result if plan.output == "probs" else None)
    else:
        out[rows, cols] = result
    return TiledResult(None, done.report, result.shape[0] * result.shape[1], label_counts(labels, k))


def _options_model(model_or_checkpoint: Any) -> nn.Module:
    if isinstance(model_or_checkpoint, nn.Module):
        return model_or_checkpoint
    if not isinstance(model_or_checkpoint, (str, os.PathLike)):
        raise UnetsegError(f"model_or_checkpoint must be an nn.Module or a checkpoint path, got {type(model_or_checkpoint).__name__}")
    if not Path(model_or_checkpoint).is_file():
        raise UnetsegError(f"{model_or_checkpoint}: no such checkpoint")
    return worker_model(model_or_checkpoint)


def predict_dask(model_or_checkpoint: nn.Module | str | os.PathLike | list, source: Any, out: Any, *,
                 chunk: int | tuple[int, int] = DEFAULT_CHUNK, client: Any = None, **options: Any) -> Any:
    """Segment one (huge) image on a Dask cluster, chunk by chunk into ``out``; equal to :func:`predict_tiled`.

    Args:
        model_or_checkpoint: a model (sent once to each worker) or a checkpoint path (each worker process loads
            it once; the workers must see the file), or a list of them: an ensemble (see
            :func:`unetseg.predict_tiled`), loaded here and sent as one model.
        source: HxW[xC] image: an array (numpy, zarr, any lazy array the workers can receive), or a path or
            :class:`FileRef` (path + pyramid level) that each worker opens lazily with
            :func:`unetseg.io.open_image` (TIFF, zarr/OME-Zarr, whole-slide, ...).
        out: a zarr array of the result's shape (labels HxW; probs HxWxK) whose chunk sides are multiples of the
            tile grid's step (or cover their axis), or a path where a zarr array with chunks of about ``chunk``
            px is created (labels only; dtype :func:`unetseg.data.labels.map_dtype`). Writers must not overlap,
            so each task writes whole chunks.
        chunk: output chunk side(s) in px when ``out`` is a path, rounded to multiples of the tile step
            (default 2048). One task per chunk; each reads its chunk plus the tile context.
        client: a ``distributed.Client``; default the current one if any, else Dask's local threads.
        **options: :func:`unetseg.predict_tiled` options (:class:`~unetseg.tiling.options.TileOptions`:
            tile_size, batch_size, halo, pad_mode, tta, output, amp, device, normalization, blend, nodata, ...).
            The result is bit for bit the single-process one for the same options when the batch composition
            does not change the model's floats (``batch_size=1``, the CPU default). Under blend "gaussian" a task
            also runs the neighbouring tiles whose outputs reach into its chunk.

    Returns:
        ``out`` (the zarr array). :func:`dask_tiled` returns the whole :class:`TiledResult` (class counts too).
    """
    return dask_tiled(model_or_checkpoint, source, out, chunk=chunk, client=client,
                      options=TileOptions.of("predict_dask", **options)).output


def dask_tiled(model_or_checkpoint: nn.Module | str | os.PathLike, source: Any, out: Any, *,
               chunk: int | tuple[int, int] = DEFAULT_CHUNK, client: Any = None,
               options: TileOptions = DEFAULTS, progress: bool = False) -> TiledResult:
    """:func:`predict_dask` as a result object (output, settings, pixel and class counts); raises NoValidPixel
    when no pixel of the image held data."""
    if options.output not in ("labels", "probs"):
        raise UnetsegError(f"predict_dask writes labels or probabilities, not output={options.output!r}")
    if isinstance(model_or_checkpoint, (list, tuple)):  # an ensemble travels as one model object
        model_or_checkpoint = as_model([_options_model(m) for m in model_or_checkpoint])
    model = _options_model(model_or_checkpoint)
    plan = plan_tiles(model, worker_source(source), options)
    if isinstance(out, (str, os.PathLike)):
        out = _create_labels(out, model, plan, chunk)
    return map_blocks(model_or_checkpoint, source, plan, out, client, progress=progress)


def map_blocks(model_or_checkpoint: Any, source: Any, plan: TilePlan, out: Any, client: Any = None,
               progress: bool = False) -> TiledResult:
    """Run one Dask task per chunk of ``out`` (see :func:`predict_dask`) and merge the blocks' results.

    ``progress``: a tqdm bar over finished chunks (with a distributed client).
    """
    dask = _dask()
    sides = tuple(int(c) for c in out.chunks[:2])
    check_block_sides(plan.grid, sides)
    shape = plan.grid.rows.length, plan.grid.cols.length
    if tuple(out.shape[:2]) != shape:
        raise UnetsegError(f"out has shape {tuple(out.shape)}, the image {shape}")
    ref = model_or_checkpoint if isinstance(model_or_checkpoint, nn.Module) else os.fspath(model_or_checkpoint)
    shared_model = dask.delayed(ref, traverse=False)  # one graph node: sent once to each worker that needs it
    shared_source = dask.delayed(source, traverse=False)
    task = dask.delayed(predict_block, pure=False)
    tasks = [task(shared_model, shared_source, plan, b, out) for b in blocks(plan.grid, sides, plan.blend)]
    parts = _compute(dask, tasks, client, progress)
    compiled = all(p.report.compiled for p in parts)
    return TiledResult.merged(parts, out, plan.report(compiled=compiled)).check_valid()


def _compute(dask: Any, tasks: list, client: Any, progress: bool) -> list:
    if client is None:
        return list(dask.compute(*tasks))
    from distributed import as_completed

    futures = client.compute(tasks)
    with tqdm(total=len(futures), desc="chunks", unit="chunk", disable=not progress, leave=False) as bar:
        for _ in as_completed(futures):
            bar.update(1)
    return client.gather(futures)


def _create_labels(path: str | os.PathLike, model: nn.Module, plan: TilePlan, chunk: Any) -> Any:
    from ..io.zarr_io import create_array

    if plan.output != "labels" or not isinstance(model, SegmentationModel):
        raise UnetsegError("out= as a path needs output='labels' and a unetseg model; pass a zarr array otherwise")
    shape = plan.grid.rows.length, plan.grid.cols.length
    nodata = None if plan.invalid is None else plan.nodata_label
    return create_array(path, shape, map_dtype(model.num_classes, nodata), block_sides(plan.grid, chunk))


@dataclass(frozen=True)
class LocalShape:
    """How ``local:N`` was laid out: ``workers`` processes x ``threads`` torch threads, from the measured rates
    (probe forwards per second) of N workers at once and of one worker with every core."""

    workers: int
    threads: int
    parallel_rate: float | None = None
    single_rate: float | None = None

    def describe(self) -> str:
        line = f"{self.workers} worker(s) x {self.threads} thread(s)"
        if self.parallel_rate is None:
            return line
        return (f"{line} (measured: all workers at once {self.parallel_rate:.2f} probes/s, one worker with every "
                f"core {self.single_rate:.2f})")


# N workers must beat one worker that has every core by this much: each chunk recomputes its tiles' context and
# the last round of chunks leaves workers idle, which the probe does not see
SHAPE_MARGIN = 1.15


@contextlib.contextmanager
def local_cluster(**kwargs: Any) -> Iterator[Any]:
    """A ``distributed.LocalCluster(**kwargs)`` (no dashboard) whose workers do not sample their threads' stacks:
    the statistical profiler calls ``sys._current_frames`` every 10 ms, which on Python 3.11 can deadlock against a
    garbage collection while other threads start or stop (CPython #106883; a test hung in a worker's torch call with
    the profiler's thread inside distributed's GC callback), and the tiler starts a reader and a writer thread per
    block."""
    import dask
    import distributed

    with dask.config.set({"distributed.worker.profile.enabled": False}), \
            distributed.LocalCluster(dashboard_address=None, **kwargs) as cluster:
        yield cluster


@contextlib.contextmanager
def dask_client(spec: str | None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``local:N`` or a scheduler address (``tcp://host:8786``); None for None.

    ``local:N`` starts a LocalCluster of N worker processes sharing the machine's cores as torch threads, then
    chooses its shape by measurement (:func:`choose_local_shape`): where N workers at once are not clearly faster
    than one worker with every core (few cores: the scheduler, the chunks' repeated context and idle workers cost
    more than they bring), one worker with every core is kept. ``client.unetseg_shape`` is the :class:`LocalShape`.
    """
    if spec is None:
        yield None
        return
    try:
        import distributed
    except ImportError:
        raise UnetsegError("--dask needs Dask: pip install 'unetseg[scale]'") from None
    if spec.startswith("local:"):
        workers = spec.removeprefix("local:")
        if not workers.isdigit() or int(workers) < 1:
            raise UnetsegError(f"--dask {spec!r}: local:N needs a positive number of workers")
        with local_cluster(n_workers=int(workers), threads_per_worker=1, processes=True) as cluster, \
                distributed.Client(cluster) as client:
            client.unetseg_shape = choose_local_shape(client, os.cpu_count() or 1)
            yield client
        return
    try:
        client = distributed.Client(spec, timeout="20s")
    except (OSError, ValueError, TypeError) as err:
        raise UnetsegError(f"--dask {spec}: cannot reach the Dask scheduler ({err})") from None
    with client:
        yield client


def choose_local_shape(client: Any, cores: int, margin: float = SHAPE_MARGIN) -> LocalShape:
    """Lay out a local cluster's workers by measurement and return the shape kept.

    Every worker gets ``cores // workers`` torch threads and runs :func:`probe_rate` at once; then one worker runs
    it alone with every core. Unless the workers together beat it by ``margin``, all but that worker are retired
    and it keeps every core."""
    addresses = sorted(client.scheduler_info()["workers"])
    share = max(1, cores // len(addresses))
    client.run(_set_torch_threads, share)
    if len(addresses) == 1:
        client.run(_set_torch_threads, cores)
        return LocalShape(1, cores)
    parallel = sum(client.run(probe_rate, share).values())
    single = client.run(probe_rate, cores, workers=addresses[:1])[addresses[0]]
    if parallel >= margin * single:
        client.run(_set_torch_threads, share)
        return LocalShape(len(addresses), share, parallel, single)
    cluster = getattr(client, "cluster", None)  # a LocalCluster keeps its spec: scale it, or it starts them anew
    if cluster is not None:
        cluster.scale(1)
    else:
        client.retire_workers(addresses[1:], close_workers=True)
    _wait_for_workers(client, 1)
    client.run(_set_torch_threads, cores)
    return LocalShape(1, cores, parallel, single)


def _wait_for_workers(client: Any, count: int, timeout: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while len(client.scheduler_info()["workers"]) != count:
        if time.monotonic() > deadline:
            raise UnetsegError(f"the local Dask cluster did not settle on {count} worker(s) in {timeout:.0f} s")
        time.sleep(0.05)


def probe_rate(threads: int, side: int = 256, repeats: int = 3) -> float:
    """Forward passes per second of a small same-padded U-Net (base 16, depth 3) on a ``side``^2 tile with
    ``threads`` torch threads: the measuring stick of :func:`choose_local_shape`."""
    import time

    import torch

    from ..models.unet import UNet

    torch.set_num_threads(threads)
    net = UNet(1, 2, base_channels=16, depth=3, padding="same").eval()
    x = torch.rand(1, 1, side, side)
    with torch.inference_mode():
        net(x)  # warm-up: allocations, oneDNN primitives
        start = time.perf_counter()
        for _ in range(repeats):
            net(x)
        return repeats / (time.perf_counter() - start)


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
