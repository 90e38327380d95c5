"""Segment one image file and write the requested maps: the library half of ``unetseg predict``.

In-memory inputs (PNG, JPEG, ...) are predicted whole and written as PNGs. TIFF inputs take the streaming
path: they are read lazily window by window and every requested map is written band by band (tiled
BigTIFFs with the input's GeoTIFF tags; probabilities as a ``.npy`` written with plain writes), so memory
does not grow with the image.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnetsegError
from ..io import maps
from ..io.display import colorize, overlay
from ..io.labels import label_dtype
from ..io.ome_zarr_labels import pyramid_levels
from ..io.sinks import BandFanout, NpyWriter
from ..io.source import ImageSource, open_image
from ..io.summary import class_counts, summary
from ..io.tiff_writer import TiffTileWriter
from ..models.base import SegmentationModel
from .predict import image_channels, predict_tiled
from .stitch import probs_to_labels

# predict_tiled options that a summary records next to the settings predict_tiled reports
RECORDED_OPTIONS = ("tile_size", "batch_size", "tta", "amp")
OME_ZARR_CHUNKS = (1024, 1024)  # one process writes row bands in order: any chunking is aligned enough


def ome_zarr_writer(stem: Path, source: ImageSource, model: SegmentationModel, chunks: tuple[int, int]) -> Any:
    """The ``<stem>_index.ome.zarr`` labels writer for ``source`` (its pixel size kept), with the model's classes."""
    from ..io.ome_zarr_labels import OmeZarrLabelsWriter

    table = model.class_table
    return OmeZarrLabelsWriter(f"{stem}_index.ome.zarr", source.shape[:2], label_dtype(model.num_classes), chunks,
                               class_names=list(table.names), colors=table.palette(),
                               pixel_size=source.pixel_size, unit=source.unit)


def _labels_of(band: np.ndarray, as_probs: bool) -> np.ndarray:
    return probs_to_labels(band) if as_probs else band


def predict_file(model: SegmentationModel, path: Path, stem: Path, formats: list[str], level: int = 0,
                 **options: Any) -> list[Path]:
    """Segment image ``path`` (pyramid ``level``) and write each requested map as ``<stem>_<format>.<ext>``
    (ome-zarr: ``<stem>_index.ome.zarr``); returns the written paths.

    ``formats`` come from :data:`unetseg.io.MAP_FORMATS`; ``options`` go to :func:`predict_tiled`.
    """
    source = open_image(path, level)
    channels = image_channels(source.array)
    if channels != model.in_channels:
        raise UnetsegError(f"{path}: image has {channels} channel(s) but the model expects {model.in_channels}")
    output = "probs" if "probs" in formats else "labels"
    settings = {k: v for k, v in options.items() if k in RECORDED_OPTIONS}
    settings["input"] = str(path)
    if not isinstance(source.array, np.ndarray):  # lazy (TIFF, zarr): streamed
        return _predict_streaming(model, source, stem, formats, output, settings, options)

    result = predict_tiled(model, source.array, output=output, progress=True, report=settings, **options)
    labels = _labels_of(result, output == "probs")
    table = model.class_table
    palette = table.palette()
    written = []
    if "index" in formats:
        written.append(maps.write_index(f"{stem}_index.png", labels))
    if "palette" in formats:
        if model.num_classes <= 256:
            written.append(maps.write_palette_png(f"{stem}_palette.png", labels, palette))
        else:
            written.append(maps.write_rgb(f"{stem}_palette.png", colorize(labels, palette)))
    if "overlay" in formats:
        written.append(maps.write_rgb(f"{stem}_overlay.png", overlay(source.array, labels, palette)))
    if output == "probs":
        written.append(maps.write_probs(f"{stem}_probs.npy", result))
    if "ome-zarr" in formats:
        with ome_zarr_writer(stem, source, model, OME_ZARR_CHUNKS) as writer:
            writer[0 : len(labels)] = labels
        written.append(writer.path)
    if "summary" in formats:
        counts = class_counts([labels], model.num_classes)
        written.append(maps.write_json(f"{stem}_summary.json", summary(labels.shape, counts, table.names, **settings)))
    return written


def _predict_streaming(model: SegmentationModel, source: ImageSource, stem: Path, formats: list[str], output: str,
                       settings: dict[str, Any], options: dict[str, Any]) -> list[Path]:
    height, width = source.shape[:2]
    k = model.num_classes
    table = model.class_table
    palette = table.palette()
    as_probs = output == "probs"
    counts = np.zeros(k, np.int64)
    consumers: list[Callable[[int, np.ndarray], None]] = []
    written: list[Path] = []
    with ExitStack() as stack:
        def tiff(kind: str, shape: tuple[int, ...], dtype: Any, **kw: Any) -> TiffTileWriter:
            path = Path(f"{stem}_{kind}.tif")
            written.append(path)
            return stack.enter_context(TiffTileWriter(path, shape, dtype, extratags=source.geotags, levels=levels,
                                                      resolution=resolution, **kw))

        levels = pyramid_levels((height, width))  # sub-resolutions down to ~256 px, for viewers
        resolution = None  # pixels per cm, when the input's pixel size is known in micrometres
        if source.pixel_size is not None and source.unit == "micrometer":
            resolution = (1e4 / source.pixel_size[1], 1e4 / source.pixel_size[0])

        def add(writer: Any, convert: Callable[[np.ndarray], np.ndarray]) -> None:
            consumers.append(lambda r0, b: writer.__setitem__(slice(r0, r0 + len(b)), convert(b)))

        def labels(band: np.ndarray) -> np.ndarray:
            return _labels_of(band, as_probs)

        if "index" in formats:
            add(tiff("index", (height, width), label_dtype(k)), labels)
        if "palette" in formats and k <= 256:
            add(tiff("palette", (height, width), np.uint8, colormap=palette), labels)
        elif "palette" in formats:
            add(tiff("palette", (height, width, 3), np.uint8), lambda b: colorize(labels(b), palette))
        if "overlay" in formats:
            writer = tiff("overlay", (height, width, 3), np.uint8)
            consumers.append(lambda r0, b: writer.__setitem__(
                slice(r0, r0 + len(b)), overlay(np.asarray(source.array[r0 : r0 + len(b), :]), labels(b), palette)))
        if as_probs:
            probs_path = Path(f"{stem}_probs.npy")
            written.append(probs_path)
            add(stack.enter_context(NpyWriter(probs_path, (height, width, k), np.float16)), lambda b: b)
        if "ome-zarr" in formats:
            zarr_writer = stack.enter_context(ome_zarr_writer(stem, source, model, OME_ZARR_CHUNKS))
            written.append(zarr_writer.path)
            add(zarr_writer, labels)
        if "summary" in formats:
            consumers.append(lambda r0, b: counts.__iadd__(class_counts([labels(b)], k)[:k]))
        shape = (height, width, k) if as_probs else (height, width)
        predict_tiled(model, source.array, output=output, progress=True, out=BandFanout(shape, consumers),
                      report=settings, **options)
    if "summary" in formats:
        written.append(maps.write_json(f"{stem}_summary.json", summary((height, width), counts, table.names, **settings)))
    return written
