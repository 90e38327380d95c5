"""``unetseg predict --dask``: one file at a time, its chunks spread over a Dask cluster, into OME-Zarr labels."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnetsegError
from ..io import maps
from ..io.labels import nodata_label
from ..io.source import open_image
from ..io.summary import summary
from ..models.base import SegmentationModel
from .blocks import block_sides
from .dask import DEFAULT_CHUNK, FileRef, map_blocks
from .files import RECORDED_OPTIONS, ome_zarr_writer
from .predict import tiled_settings

DASK_FORMATS = ("ome-zarr", "summary")


@contextlib.contextmanager
def dask_client(spec: str | None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``local:N`` (a LocalCluster of N single-threaded worker processes, the
    machine's cores shared out as torch threads) or a scheduler address (``tcp://host:8786``); None for None."""
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
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        with distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            client.run(_set_torch_threads, threads)
            yield client
        return
    try:
        client = distributed.Client(spec, timeout="20s")
    except (OSError, ValueError, TypeError) as err:
        raise UnetsegError(f"--dask {spec}: cannot reach the Dask scheduler ({err})") from None
    with client:
        yield client


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def predict_file_dask(model: SegmentationModel, checkpoint: str | os.PathLike, path: Path, stem: Path,
                      formats: list[str], *, client: Any, level: int = 0, chunk: int = DEFAULT_CHUNK,
                      **options: Any) -> list[Path]:
    """Segment image ``path`` (pyramid ``level``) on ``client``'s workers, each loading ``checkpoint`` (``model`` is
    its copy here) once, into ``<stem>_index.ome.zarr`` (chunks of about ``chunk`` px) and, if asked, a summary."""
    extra = [f for f in formats if f not in DASK_FORMATS]
    if extra:
        raise UnetsegError(f"--dask writes {' and '.join(DASK_FORMATS)} only, not {','.join(extra)}")
    source = open_image(path, level)
    options = {k: v for k, v in options.items() if k != "bands"}  # preview bands: no preview is drawn here
    settings = tiled_settings(model, source.array, **options)
    label = None if settings.invalid is None else nodata_label(model.num_classes, settings.nodata_label)
    settings = replace(settings, nodata_label=label)
    with ome_zarr_writer(stem, source, model, block_sides(settings.grid, chunk), label) as writer:
        counts = map_blocks(os.fspath(checkpoint), FileRef(os.fspath(path), level), settings, writer.level0, client,
                            progress=True)
    written = [writer.path]
    if "summary" in formats:
        recorded = {k: v for k, v in options.items() if k in RECORDED_OPTIONS}
        recorded.update(settings.report(), input=str(path), level=level, dask=str(client.scheduler.address))
        k = model.num_classes
        counts = np.pad(counts, (0, max(0, k - len(counts))))
        if label is not None:  # invalid pixels are counted apart from the classes
            recorded.update(nodata_label=label, nodata_pixels=int(counts[label]) if len(counts) > label else 0)
        written.append(maps.write_json(f"{stem}_summary.json", summary(source.shape[:2], counts[:k],
                                                                       model.class_table.names, **recorded)))
    return written
