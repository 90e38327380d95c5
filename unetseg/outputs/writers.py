"""The writers of the built-in output kinds, one class each, registered with :func:`register_output_kind`.

In-memory inputs (PNG, JPEG, ...) get PNG maps, gathered whole and encoded once; streamed inputs (TIFF, zarr,
slides) get tiled BigTIFFs written band by band, with the input's GeoTIFF tags, a pyramid and its pixel size,
so memory does not grow with the image; those of GeoTIFF inputs are then assembled as Cloud Optimized GeoTIFFs
(:mod:`unetseg.io.cog`; ``OutputSpec.cog``). Every file is written atomically and verified (:mod:`unetseg.io`).
"""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from ..io import maps
from ..io.display import colorize
from ..io.ome_zarr_labels import OmeZarrLabelsWriter
from ..io.sinks import NpyWriter
from ..io.tiff_writer import TiffTileWriter, nodata_tag
from ..models.ensemble import entropy_bound
from ..tiling.result import Band
from .kinds import Finished, KindWriter, OutputKind, register_output_kind
from .summary import summary


class WholeMap:
    """Rows of an HxW[xC] map gathered into one array (in-memory inputs: their maps are encoded whole)."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.array = np.zeros(shape, dtype)

    def put(self, start: int, rows: np.ndarray) -> None:
        self.array[start : start + len(rows)] = rows


class MapWriter(KindWriter):
    """A map made from each band's labels: a streamed TIFF, or a gathered map encoded at :meth:`finish`.

    Subclasses give :meth:`tiff` (the TIFF writer's shape, dtype, tags and options) and :meth:`encode` (the
    whole map -> a file), and may convert labels per band (:meth:`rows`)."""

    def __init__(self, spec: Any, kind: OutputKind) -> None:
        super().__init__(spec, kind)
        self._stack = ExitStack()
        self._sink: Any = None

    def __enter__(self) -> MapWriter:
        if self.spec.streaming:
            shape, dtype, tags, extra = self.tiff()
            self._sink = self._stack.enter_context(TiffTileWriter(
                self.path, shape, dtype, extratags=tags, **self.spec.tiff_options, **extra))
        else:
            self._sink = WholeMap(self.spec.shape, self.spec.labels_dtype)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    def write_band(self, band: Band) -> None:
        if self.spec.streaming:
            self._sink[band.start : band.stop] = self.rows(band)
        else:
            self._sink.put(band.start, band.labels)

    def finish(self, done: Finished) -> list[Path]:
        if not self.spec.streaming:
            self.encode(self._sink.array)
        return [self.path]

    def rows(self, band: Band) -> np.ndarray:
        return band.labels

    def tiff(self) -> tuple[tuple[int, ...], Any, list[tuple], dict[str, Any]]:
        raise NotImplementedError

    def encode(self, labels: np.ndarray) -> None:
        raise NotImplementedError


@register_output_kind("index", part="index", suffixes=(".png", ".tif"), needs="labels",
                      help="class-index map (PNG, or tiled TIFF for TIFF/zarr/slide inputs)")
class IndexWriter(MapWriter):
    def tiff(self) -> tuple[tuple[int, ...], Any, list[tuple], dict[str, Any]]:
        return self.spec.shape, self.spec.labels_dtype, self.spec.label_tags, {}

    def encode(self, labels: np.ndarray) -> None:
        maps.write_index(self.path, labels)


@register_output_kind("palette", part="palette", suffixes=(".png", ".tif"), needs="labels",
                      help="colour map in the class colours (a paletted PNG/TIFF up to 256 labels, else RGB)")
class PaletteWriter(MapWriter):
    """Paletted (the index map with the class colours) when the map is 8-bit, else RGB."""

    @property
    def paletted(self) -> bool:
        return self.spec.labels_dtype == np.uint8

    def tiff(self) -> tuple[tuple[int, ...], Any, list[tuple], dict[str, Any]]:
        if self.paletted:
            return self.spec.shape, np.uint8, self.spec.label_tags, {"colormap": self.spec.style.palette}
        return (*self.spec.shape, 3), np.uint8, self.spec.source.geotags, {}

    def rows(self, band: Band) -> np.ndarray:
        return band.labels if self.paletted else colorize(band.labels, self.spec.style.palette)

    def encode(self, labels: np.ndarray) -> None:
        if self.paletted:
            maps.write_palette_png(self.path, labels, self.spec.style.palette)
        else:
            maps.write_rgb(self.path, colorize(labels, self.spec.style.palette))


@register_output_kind("overlay", part="overlay", suffixes=(".png", ".tif"), needs="labels",
                      help="the image with the classes tinted over it (RGB)")
class OverlayWriter(MapWriter):
    def tiff(self) -> tuple[tuple[int, ...], Any, list[tuple], dict[str, Any]]:
        return (*self.spec.shape, 3), np.uint8, self.spec.source.geotags, {}

    def rows(self, band: Band) -> np.ndarray:
        image = np.asarray(self.spec.source.array[band.start : band.stop, :])
        return self.spec.style.overlay(image, band.labels)

    def encode(self, labels: np.ndarray) -> None:
        maps.write_rgb(self.path, self.spec.style.overlay(self.spec.source.array, labels))


@register_output_kind("probs", part="probs", suffixes=(".npy", ".npy"), needs="probs",
                      help="class probabilities, HxWxK float16 .npy (0 on invalid pixels)")
class ProbsWriter(KindWriter):
    def __enter__(self) -> ProbsWriter:
        self._writer = NpyWriter(self.path, (*self.spec.shape, self.spec.num_classes), np.float16).__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._writer.__exit__(exc_type, exc, tb)

    def write_band(self, band: Band) -> None:
        self._writer[band.start : band.stop] = band.probs


@register_output_kind("uncertainty", part="uncertainty", suffixes=(".tif", ".tif"), needs="uncertainty",
                      help="float32 TIFF, 2 bands: predictive entropy (nats, 0..log K) and the disagreement of the "
                           "ensemble's members or TTA's views (mutual information); 0 on invalid pixels")
class UncertaintyWriter(KindWriter):
    """Written band by band into a tiled float32 TIFF for every input (the summary gives the image means)."""

    def __enter__(self) -> UncertaintyWriter:
        spec = self.spec
        options = spec.tiff_options if spec.streaming else {"resolution": spec.tiff_resolution, "cog": spec.tiff_cog}
        self._writer = TiffTileWriter(self.path, (*spec.shape, 2), np.float32, extratags=spec.source.geotags,
                                      **options).__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._writer.__exit__(exc_type, exc, tb)

    def write_band(self, band: Band) -> None:
        self._writer[band.start : band.stop] = band.uncertainty


@register_output_kind("ome-zarr", part="index", suffixes=(".ome.zarr", ".ome.zarr"), needs="labels", dask=True,
                      help="the index map (or a volume's labels) as OME-Zarr labels with class names and colours "
                           "(unetseg[scale])", dims=(2, 3))
class OmeZarrWriter(KindWriter):
    """The index map as a multiscale OME-Zarr label image, written by bands (one process) or by whole chunks
    (Dask workers write :attr:`target` directly)."""

    def __enter__(self) -> OmeZarrWriter:
        spec = self.spec
        table = spec.class_table
        self._writer = OmeZarrLabelsWriter(
            self.path, spec.shape, spec.labels_dtype, spec.chunks, class_names=list(table.names),
            colors=table.palette(), pixel_size=spec.source.pixel_size, unit=spec.source.unit,
            resume=spec.resume).__enter__()
        return self

    @property
    def journal(self) -> Any:
        """The chunk journal of a resumable run, else None."""
        return self._writer.journal

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._writer.__exit__(exc_type, exc, tb)

    @property
    def target(self) -> Any:
        """The level-0 zarr array, chunked as ``spec.chunks``."""
        return self._writer.level0

    def write_band(self, band: Band) -> None:
        self._writer[band.start : band.stop] = band.labels


@register_output_kind("summary", part="summary", suffixes=(".json", ".json"), needs="result", dask=True,
                      help="JSON: image size, the settings used, pixels per class, invalid pixels, objects per class",
                      dims=(2, 3))
class SummaryWriter(KindWriter):
    def finish(self, done: Finished) -> list[Path]:
        spec = self.spec
        settings = {**spec.settings, **done.result.report.as_dict(), **spec.extra_settings}
        data = summary(done.result, spec.shape, spec.class_table.names, settings, spec.style.nodata,
                       spec.class_table.colors)
        means = done.result.mean_uncertainty
        if means is not None:  # what to label next: sort images by it
            data["uncertainty"] = {"mean_entropy": means[0], "mean_disagreement": means[1],
                                   "max_entropy": entropy_bound(spec.num_classes)}
        table = None if spec.objects is None else done.tables.get(spec.objects.objects)
        if table is not None:  # objects per class, next to the pixels per class
            counts = table.counts_per_class(spec.num_classes)
            data["objects"] = {"count": len(table), "per_class": {
                spec.class_table.names[c]: int(n) for c, n in enumerate(counts) if n}}
        return [maps.write_json(self.path, data)]


def label_tags(geotags: list[tuple], nodata: int | None) -> list[tuple]:
    """GeoTIFF tags of the input plus the GDAL_NODATA tag of a label map (its own dtype's value)."""
    return [*geotags, *nodata_tag(nodata)]
