"""Segment one image file and write the requested maps: the library half of ``unetseg predict``.

In-memory inputs (PNG, JPEG, ...) are predicted whole and written as PNGs. TIFF inputs take the streaming
path: they are read lazily window by window and every requested map is written band by band (tiled
BigTIFFs with the input's GeoTIFF tags; probabilities as a ``.npy`` written with plain writes), so memory
does not grow with the image.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnetsegError
from ..io import maps
from ..data.nodata import valid_mask
from ..io.display import colorize, overlay, preview_bands, stretch_limits
from ..io.labels import map_dtype, nodata_label
from ..io.ome_zarr_labels import pyramid_levels
from ..io.sinks import BandFanout, NpyWriter
from ..io.source import ImageSource, open_image
from ..io.summary import class_counts, summary
from ..io.tiff_writer import TiffTileWriter, nodata_tag
from ..models.base import SegmentationModel
from .predict import image_channels, invalid_rule, predict_tiled
from .stitch import probs_to_labels
from .tiles import InvalidRule

# predict_tiled options that a summary records next to the settings predict_tiled reports
RECORDED_OPTIONS = ("tile_size", "batch_size", "tta", "amp", "halo")
STRETCH_WINDOW = 2048  # streaming overlays take their stretch from the central window of this side
OME_ZARR_CHUNKS = (1024, 1024)  # one process writes row bands in order: any chunking is aligned enough


def ome_zarr_writer(stem: Path, source: ImageSource, model: SegmentationModel, chunks: tuple[int, int],
                    nodata: int | None = None) -> Any:
    """The ``<stem>_index.ome.zarr`` labels writer for ``source`` (its pixel size kept), with the model's classes
    (``nodata``: the label of invalid pixels, which may widen the dtype)."""
    from ..io.ome_zarr_labels import OmeZarrLabelsWriter

    table = model.class_table
    return OmeZarrLabelsWriter(f"{stem}_index.ome.zarr", source.shape[:2], map_dtype(model.num_classes, nodata), chunks,
                               class_names=list(table.names), colors=table.palette(),
                               pixel_size=source.pixel_size, unit=source.unit)


@dataclass
class MapStyle:
    """How the maps of one image are drawn: the nodata label (None: no pixel can be invalid), the palette
    (padded to 256 with black so the nodata label shows black), preview bands and stretch, transparent classes."""

    nodata: int | None
    palette: np.ndarray
    bands: list[int] | None
    limits: tuple[np.ndarray, np.ndarray] | None
    transparent: tuple[int, ...]
    rule: InvalidRule | None

    def overlay(self, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        valid = None if self.rule is None else valid_mask(image, self.rule.nodata, self.rule.rule)
        return overlay(image, labels, self.palette, bands=self.bands, limits=self.limits,
                       transparent=self.transparent, valid=valid)

    def tags(self, geotags: list[tuple]) -> list[tuple]:
        """GeoTIFF tags of the input plus the GDAL_NODATA tag of a label map (its own dtype's value)."""
        return [*geotags, *nodata_tag(self.nodata)]


def map_style(model: SegmentationModel, source: ImageSource, options: dict[str, Any], bands: Any,
              overlays: bool) -> MapStyle:
    """The :class:`MapStyle` of ``source`` under ``options`` (predict_tiled's nodata / nodata_label); the stretch
    (read from the central window) only when ``overlays`` are drawn."""
    rule = invalid_rule(model, source.array, options.get("nodata", "auto"))
    k = model.num_classes
    label = None if rule is None else nodata_label(k, options.get("nodata_label"))
    palette = model.class_table.palette()
    if label is not None and k <= 256:
        palette = np.concatenate([palette, np.zeros((256 - k, 3), np.uint8)])
    if bands is None:
        bands = ((getattr(model, "meta", None) or {}).get("display") or {}).get("bands")
    if not overlays:
        return MapStyle(label, palette, bands, None, model.class_table.transparent, rule)
    side = min(STRETCH_WINDOW, source.shape[0]), min(STRETCH_WINDOW, source.shape[1])
    top, left = (source.shape[0] - side[0]) // 2, (source.shape[1] - side[1]) // 2
    window = np.asarray(source.array[top : top + side[0], left : left + side[1]])
    valid = None if rule is None else valid_mask(window, rule.nodata, rule.rule)
    limits = stretch_limits(window, preview_bands(image_channels(window), bands), valid)
    return MapStyle(label, palette, bands, limits, model.class_table.transparent, rule)


def _labels_of(band: np.ndarray, as_probs: bool, nodata: int | None) -> np.ndarray:
    return probs_to_labels(band, nodata) if as_probs else band


def _summary(shape: tuple[int, ...], counts: np.ndarray, style: MapStyle, names: Any, k: int,
             settings: dict[str, Any]) -> dict[str, Any]:
    """The JSON summary: class counts, and invalid pixels counted apart."""
    invalid = int(counts[style.nodata]) if style.nodata is not None and len(counts) > style.nodata else 0
    extra = {} if style.nodata is None else {"nodata_label": style.nodata, "nodata_pixels": invalid}
    return summary(shape, counts[:k], names, **settings, **extra)


def predict_file(model: SegmentationModel, path: Path, stem: Path, formats: list[str], level: int = 0, *,
                 bands: list[int] | None = None, **options: Any) -> list[Path]:
    """Segment image ``path`` (pyramid ``level``) and write each requested map as ``<stem>_<format>.<ext>``
    (ome-zarr: ``<stem>_index.ome.zarr``); returns the written paths.

    ``formats`` come from :data:`unetseg.io.MAP_FORMATS`; ``bands``: preview bands of the overlay (default the
    checkpoint's ``display.bands``, else :func:`unetseg.io.display.preview_bands`); ``options`` go to
    :func:`predict_tiled` (``nodata``, ``nodata_label``, ...). Invalid pixels get the nodata label (a
    GDAL_NODATA tag on TIFF label maps), black in palettes and overlays, 0 probabilities, and are counted apart
    in the summary.
    """
    source = open_image(path, level)
    channels = image_channels(source.array)
    if channels != model.in_channels:
        raise UnetsegError(f"{path}: image has {channels} channel(s) but the model expects {model.in_channels}")
    output = "probs" if "probs" in formats else "labels"
    settings = {k: v for k, v in options.items() if k in RECORDED_OPTIONS}
    settings["input"] = str(path)
    style = map_style(model, source, options, bands, "overlay" in formats)
    if style.nodata is not None:
        options = {**options, "nodata_label": style.nodata}
    if not isinstance(source.array, np.ndarray):  # lazy (TIFF, zarr): streamed
        return _predict_streaming(model, source, stem, formats, output, settings, options, style)

    result = predict_tiled(model, source.array, output=output, progress=True, report=settings, **options)
    labels = _labels_of(result, output == "probs", style.nodata)
    table = model.class_table
    written = []
    if "index" in formats:
        written.append(maps.write_index(f"{stem}_index.png", labels))
    if "palette" in formats:
        if model.num_classes <= 256 and int(labels.max(initial=0)) < 256:
            written.append(maps.write_palette_png(f"{stem}_palette.png", labels, style.palette))
        else:
            written.append(maps.write_rgb(f"{stem}_palette.png", colorize(labels, style.palette)))
    if "overlay" in formats:
        written.append(maps.write_rgb(f"{stem}_overlay.png", style.overlay(source.array, labels)))
    if output == "probs":
        written.append(maps.write_probs(f"{stem}_probs.npy", result))
    if "ome-zarr" in formats:
        with ome_zarr_writer(stem, source, model, OME_ZARR_CHUNKS, style.nodata) as writer:
            writer[0 : len(labels)] = labels
        written.append(writer.path)
    if "summary" in formats:
        counts = class_counts([labels], model.num_classes)
        written.append(maps.write_json(f"{stem}_summary.json",
                                       _summary(labels.shape, counts, style, table.names, model.num_classes, settings)))
    return written


def _predict_streaming(model: SegmentationModel, source: ImageSource, stem: Path, formats: list[str], output: str,
                       settings: dict[str, Any], options: dict[str, Any], style: MapStyle) -> list[Path]:
    height, width = source.shape[:2]
    k = model.num_classes
    table = model.class_table
    palette = style.palette
    as_probs = output == "probs"
    consumers: list[Callable[[int, np.ndarray], None]] = []
    written: list[Path] = []
    with ExitStack() as stack:
        def tiff(kind: str, shape: tuple[int, ...], dtype: Any, tags: list[tuple], **kw: Any) -> TiffTileWriter:
            path = Path(f"{stem}_{kind}.tif")
            written.append(path)
            return stack.enter_context(TiffTileWriter(path, shape, dtype, extratags=tags, levels=levels,
                                                      resolution=resolution, **kw))

        levels = pyramid_levels((height, width))  # sub-resolutions down to ~256 px, for viewers
        resolution = None  # pixels per cm, when the input's pixel size is known in micrometres
        if source.pixel_size is not None and source.unit == "micrometer":
            resolution = (1e4 / source.pixel_size[1], 1e4 / source.pixel_size[0])

        def add(writer: Any, convert: Callable[[np.ndarray], np.ndarray]) -> None:
            consumers.append(lambda r0, b: writer.__setitem__(slice(r0, r0 + len(b)), convert(b)))

        def labels(band: np.ndarray) -> np.ndarray:
            return _labels_of(band, as_probs, style.nodata)

        label_tags = style.tags(source.geotags)
        if "index" in formats:
            add(tiff("index", (height, width), map_dtype(k, style.nodata), label_tags), labels)
        if "palette" in formats and k <= 256 and (style.nodata or 0) < 256:
            add(tiff("palette", (height, width), np.uint8, label_tags, colormap=palette), labels)
        elif "palette" in formats:
            add(tiff("palette", (height, width, 3), np.uint8, source.geotags), lambda b: colorize(labels(b), palette))
        if "overlay" in formats:
            writer = tiff("overlay", (height, width, 3), np.uint8, source.geotags)
            consumers.append(lambda r0, b: writer.__setitem__(
                slice(r0, r0 + len(b)), style.overlay(np.asarray(source.array[r0 : r0 + len(b), :]), labels(b))))
        if as_probs:
            probs_path = Path(f"{stem}_probs.npy")
            written.append(probs_path)
            add(stack.enter_context(NpyWriter(probs_path, (height, width, k), np.float16)), lambda b: b)
        tally = Tally(k)
        if "ome-zarr" in formats:
            zarr_writer = stack.enter_context(ome_zarr_writer(stem, source, model, OME_ZARR_CHUNKS, style.nodata))
            written.append(zarr_writer.path)
            add(zarr_writer, labels)
        if "summary" in formats:
            consumers.append(lambda r0, b: tally.add(labels(b)))
        shape = (height, width, k) if as_probs else (height, width)
        predict_tiled(model, source.array, output=output, progress=True, out=BandFanout(shape, consumers),
                      report=settings, **options)
    if "summary" in formats:
        written.append(maps.write_json(f"{stem}_summary.json",
                                       _summary((height, width), tally.counts, style, table.names, k, settings)))
    return written


class Tally:
    """Label counts over row bands (grown to the largest label seen, e.g. the nodata label)."""

    def __init__(self, k: int) -> None:
        self.counts = np.zeros(k, np.int64)

    def add(self, labels: np.ndarray) -> None:
        band = class_counts([labels], len(self.counts))
        self.counts = band + np.pad(self.counts, (0, len(band) - len(self.counts)))
