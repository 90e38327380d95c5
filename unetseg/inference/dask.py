"""``predict_dask``: one image too large for one machine's time, spread over a Dask cluster, written into zarr.

The work is mapped over the *output* chunk grid (:mod:`.blocks`): each task reads its own input window plus
context through the same mirror-padding reader as :func:`unetseg.predict_tiled`, runs the same tiles, and
writes one whole chunk of the zarr output (chunk-aligned, so no locks). The model travels once per worker:
a checkpoint path is loaded by each worker process once (a per-process cache), a model object is one
shared graph node that each worker receives once. Dask is optional (``pip install unetseg[scale]``).
"""
from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from ..errors import UnetsegError
from ..models.base import SegmentationModel
from .allocator import keep_freed_memory
from .blocks import AxisBlock, block_input, block_sides, blocks, check_block_sides, crop_block
from .predict import NoValidPixel, Settings, run_tiles, tiled_settings

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
    """An image file (or zarr folder) and pyramid level that each worker opens itself."""

    path: str
    level: int = 0


@functools.lru_cache(maxsize=4)
def _open_source(ref: FileRef, mtime_ns: int) -> Any:
    from ..io.source import open_image

    return open_image(ref.path, ref.level).array


def worker_source(source: Any) -> Any:
    """``source`` itself (an array), or the image at that path / :class:`FileRef` opened lazily once per process."""
    if isinstance(source, (str, os.PathLike)):
        source = FileRef(os.fspath(source))
    if not isinstance(source, FileRef):
        return source
    with _LOCK:
        return _open_source(source, os.stat(source.path).st_mtime_ns)


def predict_block(model: Any, source: Any, settings: Settings, block: tuple[AxisBlock, AxisBlock], out: Any
                  ) -> tuple[np.ndarray | None, bool]:
    """One task: predict ``block`` of the global grid, write it into ``out``; returns its class counts (labels,
    else None) and whether it held a valid pixel."""
    keep_freed_memory()  # once per worker process: undoes Dask's MALLOC_TRIM_THRESHOLD_, which slows torch 1.25x
    image = worker_source(source)
    net = worker_model(model, str(settings.device))
    window, grid = block_input(image, settings.grid, block, settings.pad_mode)
    validity: list[bool] = []
    # the model's inference graph is built once per worker (cached while the weights are unchanged)
    result = crop_block(run_tiles(net, window, replace(settings, grid=grid), validity=validity), block)
    rb, cb = block
    out[rb.start : rb.stop, cb.start : cb.stop] = result
    return (np.bincount(result.ravel()) if settings.output == "labels" else None), validity[0]


def _options_model(model_or_checkpoint: Any) -> nn.Module:
    if isinstance(model_or_checkpoint, nn.Module):
        return model_or_checkpoint
    if not isinstance(model_or_checkpoint, (str, os.PathLike)):
        raise UnetsegError(f"model_or_checkpoint must be an nn.Module or a checkpoint path, got {type(model_or_checkpoint).__name__}")
    if not Path(model_or_checkpoint).is_file():
        raise UnetsegError(f"{model_or_checkpoint}: no such checkpoint")
    return worker_model(model_or_checkpoint)


def predict_dask(model_or_checkpoint: nn.Module | str | os.PathLike, source: Any, out: Any, *,
                 chunk: int | tuple[int, int] = DEFAULT_CHUNK, client: Any = None, counts: list | None = None,
                 **options: Any) -> Any:
    """Segment one (huge) image on a Dask cluster, chunk by chunk into ``out``; equal to :func:`predict_tiled`.

    Args:
        model_or_checkpoint: a model (sent once to each worker) or a checkpoint path (each worker process loads
            it once; the workers must see the file).
        source: HxW[xC] image: an array (numpy, zarr, any lazy array the workers can receive), or a path or
            :class:`FileRef` (path + pyramid level) that each worker opens lazily with
            :func:`unetseg.io.open_image` (TIFF, zarr/OME-Zarr, whole-slide, ...).
        out: a zarr array of the result's shape (labels HxW; probs HxWxK) whose chunk sides are multiples of the
            tile grid's step (or cover their axis), or a path where a zarr array with chunks of about ``chunk``
            px is created (labels only; dtype from the model's class count). Writers must not overlap, so each
            task writes whole chunks.
        chunk: output chunk side(s) in px when ``out`` is a path, rounded to multiples of the tile step
            (default 2048). One task per chunk; each reads its chunk plus the tile context.
        client: a ``distributed.Client``; default the current one if any, else Dask's local threads.
        counts: optional list that receives the per-class pixel counts (int64, labels output).
        **options: :func:`unetseg.predict_tiled` options (tile_size, batch_size, halo, pad_mode, tta, output,
            amp, device, normalization, blend). The result is bit for bit the single-process one for the same
            options when the batch composition does not change the model's floats (``batch_size=1``, the CPU
            default). Under blend "gaussian" a task also runs the neighbouring tiles whose outputs reach into
            its chunk.

    Returns:
        ``out`` (the zarr array).
    """
    for name in ("progress", "out", "report"):
        if name in options:
            raise UnetsegError(f"predict_dask does not take {name}=")
    model = _options_model(model_or_checkpoint)
    settings = tiled_settings(model, worker_source(source), **options)
    if isinstance(out, (str, os.PathLike)):
        out = _create_labels(out, model, settings, chunk)
    found = map_blocks(model_or_checkpoint, source, settings, out, client)
    if counts is not None and found is not None:
        counts[:] = found.tolist()
    return out


def map_blocks(model_or_checkpoint: Any, source: Any, settings: Settings, out: Any, client: Any = None,
               progress: bool = False) -> np.ndarray | None:
    """Run one Dask task per chunk of ``out`` (see :func:`predict_dask`); returns the class counts (labels).

    ``progress``: a tqdm bar over finished chunks (with a distributed client).
    """
    dask = _dask()
    sides = tuple(int(c) for c in out.chunks[:2])
    check_block_sides(settings.grid, sides)
    shape = settings.grid.rows.length, settings.grid.cols.length
    if tuple(out.shape[:2]) != shape:
        raise UnetsegError(f"out has shape {tuple(out.shape)}, the image {shape}")
    ref = model_or_checkpoint if isinstance(model_or_checkpoint, nn.Module) else os.fspath(model_or_checkpoint)
    shared_model = dask.delayed(ref, traverse=False)  # one graph node: sent once to each worker that needs it
    shared_source = dask.delayed(source, traverse=False)
    task = dask.delayed(predict_block, pure=False)
    tasks = [task(shared_model, shared_source, settings, b, out) for b in blocks(settings.grid, sides, settings.blend)]
    results = _compute(dask, tasks, client, progress)
    if not any(valid for _, valid in results):
        raise NoValidPixel(settings.invalid.nodata)
    if settings.output != "labels":
        return None
    total = np.zeros(max(len(counts) for counts, _ in results), np.int64)
    for counts, _ in results:
        total[: len(counts)] += counts
    return total


def _compute(dask: Any, tasks: list, client: Any, progress: bool) -> list:
    if client is None:
        return list(dask.compute(*tasks))
    from distributed import as_completed

    futures = client.compute(tasks)
    with tqdm(total=len(futures), desc="chunks", unit="chunk", disable=not progress, leave=False) as bar:
        for _ in as_completed(futures):
            bar.update(1)
    return client.gather(futures)


def _create_labels(path: str | os.PathLike, model: nn.Module, settings: Settings, chunk: Any) -> Any:
    from ..io.labels import label_dtype
    from ..io.zarr_io import create_array

    if settings.output != "labels" or not isinstance(model, SegmentationModel):
        raise UnetsegError("out= as a path needs output='labels' and a unetseg model; pass a zarr array otherwise")
    shape = settings.grid.rows.length, settings.grid.cols.length
    return create_array(path, shape, label_dtype(model.num_classes), block_sides(settings.grid, chunk))
