"""Segment one image file into its output set: the library half of ``unetseg predict``, one process or Dask.

In-memory inputs (PNG, JPEG, ...) are predicted whole and written as PNGs. Lazy inputs (TIFF, zarr, slides)
are read window by window and every requested map is written band by band, so memory does not grow with the
image. With a Dask client, workers write the image's OME-Zarr labels chunk by chunk and this process finishes
the same output set with the merged result.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import UnetsegError
from ..io.source import ImageSource, open_image
from ..models.base import SegmentationModel
from ..scale.chunked import run_blocks
from ..scale.dask import DEFAULT_CHUNK, FileRef, map_blocks
from ..tiling.blocks import block_sides
from ..tiling.options import DEFAULTS, TileOptions
from ..tiling.plan import TilePlan, image_channels, plan_tiles
from ..tiling.predict import run_tiles
from .kinds import OutputKind, check_formats
from .manifest import resumable, run_identity
from .objects import OBJECT_DEFAULTS, ObjectOptions
from .outputset import Done, OutputSet, OutputSpec
from .style import MapStyle


def _open(model: SegmentationModel, path: Path, level: int) -> ImageSource:
    source = open_image(path, level)
    if image_channels(source.array) == model.in_channels + 1:  # an RGBA image for an RGB model
        source = source.without_alpha()
    channels = image_channels(source.array)
    if channels != model.in_channels:
        raise UnetsegError(f"{path}: image has {channels} channel(s) but the model expects {model.in_channels}")
    return source


def predict_file(model: SegmentationModel, path: Path, stem: Path, formats: list[str], level: int = 0, *,
                 options: TileOptions = DEFAULTS, bands: list[int] | None = None, done: Done | None = None,
                 objects: ObjectOptions = OBJECT_DEFAULTS, cog: bool | None = None) -> list[Path]:
    """Segment image ``path`` (pyramid ``level``) and write each requested kind as ``<stem>_<part>.<ext>``
    (:mod:`unetseg.outputs.kinds`); returns the written paths.

    ``options``: the tiled prediction's (its ``output`` is chosen here: probabilities when a kind needs them);
    ``bands``: preview bands of the overlay (default the checkpoint's ``display_bands``); ``done``: write the
    done-manifest once every output is complete; ``objects``: how the object kinds make objects. Invalid pixels get the nodata label (a GDAL_NODATA tag on
    TIFF label maps), black in palettes and overlays, 0 probabilities, and are counted apart in the summary.
    ``cog``: the streamed TIFF maps as Cloud Optimized GeoTIFFs: None (default) for GeoTIFF inputs when rasterio
    is installed (else plain tiled GeoTIFFs, as before), True always (rasterio needed), False never.
    """
    kinds = check_formats(formats)
    source = _open(model, path, level)
    if resumable(formats):
        return _predict_resumable(model, source, path, stem, formats, level, options, done)
    output = plan_output(kinds)
    plan = plan_tiles(model, source.array, replace(options, output=output))
    spec = replace(_spec(model, source, stem, path, options, plan, bands, formats, level, objects), cog=cog)
    with OutputSet(spec, formats, done=done) as outputs:
        result = run_tiles(model, source.array, plan, out=outputs, progress=True).check_valid()
        outputs.finish(result)
    return outputs.written


def _predict_resumable(model: SegmentationModel, source: ImageSource, path: Path, stem: Path, formats: list[str],
                       level: int, options: TileOptions, done: Done | None) -> list[Path]:
    """OME-Zarr labels (and the summary) chunk by chunk in this process, each finished chunk recorded: a run
    killed part-way is resumed by the next run with the same input, model and settings, which takes over the
    measured choices of the first (tile size, engine, compile) so the result is the one an uninterrupted run
    gives."""
    from ..io.ome_zarr_labels import resume_key
    from .naming import output_path

    run = run_identity(path, formats, options, model, level=level)
    previous = resume_key(output_path(stem, "index", ".ome.zarr"))
    chosen = options
    if previous is not None and previous.get("run") == run:
        chosen = replace(options, **previous["resolved"])
    plan = plan_tiles(model, source.array, replace(chosen, output="labels"))
    resolved = {"tile_size": max(plan.grid.tile_shape), "engine": plan.engine, "compile": plan.compile}
    spec = replace(_spec(model, source, stem, path, options, plan, None, formats, level),
                   chunks=block_sides(plan.grid, DEFAULT_CHUNK), dask=True, resume={"run": run, "resolved": resolved})
    with OutputSet(spec, formats, dask=True, done=done) as outputs:
        result = run_blocks(model, source.array, plan, outputs.chunk_target(), outputs.journal(), progress=True)
        outputs.finish(result)
    return outputs.written


def predict_file_dask(model: SegmentationModel, checkpoint: str | os.PathLike | SegmentationModel, path: Path,
                      stem: Path, formats: list[str], *, client: Any, level: int = 0, chunk: int = DEFAULT_CHUNK,
                      options: TileOptions = DEFAULTS, done: Done | None = None,
                      objects: ObjectOptions = OBJECT_DEFAULTS) -> list[Path]:
    """Segment image ``path`` (pyramid ``level``) on ``client``'s workers, each loading ``checkpoint`` (``model`` is
    its copy here; an ensemble is sent as the model itself) once, into ``<stem>_index.ome.zarr`` (chunks of about ``chunk`` px) and the other requested
    kinds Dask can write (summary; objects: instances as OME-Zarr labels, labelled chunk by chunk on the
    workers; objects, geojson and gpkg from them)."""
    kinds = check_formats(formats, dask=True)
    formats = formats if "ome-zarr" in formats else ["ome-zarr", *formats]  # the workers write their labels there
    source = _open(model, path, level)
    output = plan_output(kinds)
    plan = plan_tiles(model, source.array, replace(options, output=output))
    spec = replace(_spec(model, source, stem, path, options, plan, None, formats, level, objects),
                   chunks=block_sides(plan.grid, chunk), dask=True,
                   extra_settings={"level": level, "dask": str(client.scheduler.address)})
    with OutputSet(spec, formats, dask=True, done=done) as outputs:
        shipped = checkpoint if isinstance(checkpoint, SegmentationModel) else os.fspath(checkpoint)
        ref = FileRef(os.fspath(path), level, drop_alpha=source.dropped_alpha)
        result = map_blocks(shipped, ref, plan, outputs.chunk_target(), client, progress=True)
        outputs.finish(result, client)
    return outputs.written


def plan_output(kinds: list[OutputKind]) -> str:
    """The tiled prediction's output that makes every kind of ``kinds``."""
    needs = {need for kind in kinds for need in kind.needs}
    if "uncertainty" in needs:
        return "probs+uncertainty" if "probs" in needs else "uncertainty"
    return "probs" if "probs" in needs else "labels"


def _spec(model: SegmentationModel, source: ImageSource, stem: Path, path: Path, options: TileOptions,
          plan: TilePlan, bands: list[int] | None, formats: list[str], level: int,
          objects: ObjectOptions = OBJECT_DEFAULTS) -> OutputSpec:
    style = MapStyle.of(model, source, plan, bands, overlays="overlay" in formats)
    return OutputSpec(stem, source, model.num_classes, model.class_table, style,
                      settings={**options.recorded(), "input": str(path)}, objects=objects.rules(model), level=level)
