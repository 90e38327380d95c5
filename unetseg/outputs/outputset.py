"""The output set of one image: every requested kind's writer behind one band sink, then the summary and the
done-manifest. The one-process path feeds it row bands; the Dask path lets workers write its chunked kinds,
then finishes it with the merged result. Both call :meth:`OutputSet.finish` with a
:class:`~unetseg.tiling.result.TiledResult`.

When a kind needs objects, the set also builds them from the bands passing through
(:class:`~unetseg.objects.stream.ObjectStream`, one per object rule in use), and at
:meth:`OutputSet.finish` runs a second pass that hands those kinds the final object ids band by band."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..data.classes import ClassTable
from ..data.labels import map_dtype
from ..engines.allocator import release_freed_memory
from ..errors import UnetsegError
from ..io.cog import cog_available, georeferenced, require_cog
from ..io.ome_zarr_labels import pyramid_levels
from ..io.scratch import ScratchArrays
from ..io.source import ImageSource
from ..io.zarr_io import create_array
from ..objects.merge import ObjectTable
from ..objects.separate import ObjectRule
from ..objects.stream import ObjectStream, object_probability
from ..scale.objects import dask_objects
from ..tiling.result import Band, TiledResult
from .kinds import Finished, KindWriter, check_formats
from .manifest import write_manifest
from .objects import ObjectRules
from .style import MapStyle
from .writers import OmeZarrWriter, label_tags

OME_ZARR_CHUNKS = (1024, 1024)  # one process writes row bands in order: any chunking is aligned enough


@dataclass(frozen=True)
class OutputSpec:
    """What the writers of one image need to know.

    Attributes:
        stem: the output stem (``OUT/<input stem>``); files are ``<stem>_<part><suffix>``.
        source: the opened input (shape, GeoTIFF tags, pixel size; overlays read its rows).
        num_classes: the model's class count. class_table: their names and colours.
        style: how maps are drawn (:class:`~unetseg.outputs.style.MapStyle`; its ``nodata`` label is the one
            invalid pixels carry).
        settings: what the summary records before the resolved tile settings (options given, input path).
        extra_settings: what it records after them (the Dask run's level and scheduler).
        chunks: chunk sides of chunked outputs (OME-Zarr); Dask blocks when the workers write them.
        objects: the object rules of the object kinds (:class:`~unetseg.outputs.objects.ObjectRules`), or None
            when no kind needs objects.
        level: the pyramid level of the input that was segmented (georeferencing of polygons).
        dask: whether Dask workers write the chunked kinds.
        resume: the run's key when its OME-Zarr labels are written resumably, chunk by chunk with a journal
            (:class:`~unetseg.io.ome_zarr_labels.OmeZarrLabelsWriter`), else None.
        cog: whether streamed TIFF maps are Cloud Optimized GeoTIFFs (:mod:`unetseg.io.cog`): None (default) for
            GeoTIFF inputs when rasterio is installed, True for every streamed TIFF map (rasterio needed), False
            never.
    """

    stem: Path
    source: ImageSource
    num_classes: int
    class_table: ClassTable
    style: MapStyle
    settings: dict[str, Any] = field(default_factory=dict)
    extra_settings: dict[str, Any] = field(default_factory=dict)
    chunks: tuple[int, int] = OME_ZARR_CHUNKS
    objects: ObjectRules | None = None
    level: int = 0
    dask: bool = False
    resume: dict[str, Any] | None = None
    cog: bool | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.source.shape[0]), int(self.source.shape[1])

    @property
    def streaming(self) -> bool:
        """Whether the input is read lazily (TIFF, zarr, slides): maps are then streamed into tiled TIFFs."""
        return not isinstance(self.source.array, np.ndarray)

    @property
    def mode(self) -> str:
        """How the outputs are written: "dask" (by workers, chunk by chunk), "stream" or "memory"."""
        return "dask" if self.dask else "stream" if self.streaming else "memory"

    @property
    def labels_dtype(self) -> np.dtype:
        return map_dtype(self.num_classes, self.style.nodata)

    @property
    def label_tags(self) -> list[tuple]:
        return label_tags(self.source.geotags, self.style.nodata)

    @property
    def tiff_levels(self) -> int:
        return pyramid_levels(self.shape)  # sub-resolutions down to ~256 px, for viewers

    @property
    def tiff_resolution(self) -> tuple[float, float] | None:
        """Pixels per cm (x, y) for TIFF resolution tags, when the input's pixel size is known in micrometres."""
        size, unit = self.source.pixel_size, self.source.unit
        if size is None or unit != "micrometer":
            return None
        return 1e4 / size[1], 1e4 / size[0]

    @property
    def tiff_cog(self) -> bool:
        """Whether TIFF maps are assembled as Cloud Optimized GeoTIFFs (see ``cog``)."""
        if self.cog is None:
            return georeferenced(self.source.geotags) and cog_available()
        if self.cog:
            require_cog("--cog")
        return self.cog

    @property
    def tiff_options(self) -> dict[str, Any]:
        """The :class:`~unetseg.io.tiff_writer.TiffTileWriter` options of a streamed map: pyramid levels, pixel size
        and COG assembly."""
        return {"levels": self.tiff_levels, "resolution": self.tiff_resolution, "cog": self.tiff_cog}


@dataclass(frozen=True)
class ChunkTarget:
    """What a Dask task writes its block into (:class:`~unetseg.tiling.result.BlockSink`): the labels, and
    each object rule's per-pixel object probability when the probabilities are kept."""

    labels: Any
    planes: dict[ObjectRule, Any]

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(self.labels.chunks)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.labels.shape)

    def write_block(self, rows: slice, cols: slice, labels: np.ndarray, probs: np.ndarray | None) -> None:
        self.labels[rows, cols] = labels
        if probs is not None:
            for rule, plane in self.planes.items():
                plane[rows, cols] = object_probability(rule, labels, probs)


@dataclass(frozen=True)
class Done:
    """The done-manifest to write once every output is complete: the input and the run's settings key."""

    input: Path
    key: dict[str, Any]


class OutputSet:
    """``with OutputSet(spec, formats) as outputs:`` pass ``outputs`` as the tiler's sink (or hand
    :meth:`chunk_target` to Dask workers), then call :meth:`finish` with the run's result.

    On a clean exit every file is final and, with ``done``, the done-manifest names them; on an exception no
    partial output is left. :attr:`written` lists the files, in ``formats`` order.
    """

    def __init__(self, spec: OutputSpec, formats: Sequence[str], *, dask: bool = False, done: Done | None = None
                 ) -> None:
        self.spec, self.done = spec, done
        self.kinds = check_formats(list(formats), dask=dask)
        if any("objects" in kind.needs for kind in self.kinds) and spec.objects is None:
            raise UnetsegError("an object output was asked for without object rules (OutputSpec.objects)")
        self.writers: list[KindWriter] = []
        self.written: list[Path] = []
        self.streams: dict[ObjectRule, ObjectStream] = {}
        self.scratch: dict[ObjectRule, ScratchArrays] = {}
        self._planes: dict[ObjectRule, Any] = {}
        self._stack = ExitStack()
        self._finished = False

    @property
    def needs_probs(self) -> bool:
        """Whether a kind is made from probabilities (the prediction must keep them)."""
        return any("probs" in kind.needs for kind in self.kinds)

    @property
    def reduces_probs(self) -> bool:
        """Whether only object kinds need the probabilities: the bands then carry one object probability per
        object rule (:meth:`object_planes`) instead of the K class probabilities."""
        return self.needs_probs and all("objects" in kind.needs for kind in self.kinds if "probs" in kind.needs)

    @property
    def probability_planes(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
        """What the tiler keeps of each band's probabilities (:class:`~unetseg.tiling.result.BandSink`): the object
        planes once the set is entered with object streams and only object kinds need probabilities, else None."""
        return self.object_planes if self.streams and self.reduces_probs else None

    def object_planes(self, labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """rows x W x R float32: the object probability of each of the R object streams' rules (in their order)
        of a band's rows x W labels and rows x W x K probabilities."""
        planes = np.empty((*labels.shape, len(self.streams)), np.float32)
        for n, rule in enumerate(self.streams):
            planes[..., n] = object_probability(rule, labels, probs)
        return planes

    @property
    def needs_uncertainty(self) -> bool:
        return any("uncertainty" in kind.needs for kind in self.kinds)

    def __enter__(self) -> OutputSet:
        try:
            for kind in self.kinds:
                writer = self._stack.enter_context(kind.writer(self.spec, kind))
                self.writers.append(writer)
                rule = writer.object_rule()
                if rule is not None and rule not in self.scratch:
                    self.scratch[rule] = self._stack.enter_context(ScratchArrays.beside(writer.path))
                    if not self.spec.dask:
                        plane = len(self.streams) if self.reduces_probs else None
                        self.streams[rule] = ObjectStream(self.spec.shape, rule, self.spec.num_classes,
                                                          self.scratch[rule], probabilities=self.needs_probs,
                                                          plane=plane)
        except BaseException:
            self._stack.close()
            raise
        return self

    def write_band(self, band: Band) -> None:
        """The sink protocol of :func:`unetseg.tiling.run_tiles`: one finished band to every writer (and to the
        object builders)."""
        for writer in self.writers:
            writer.write_band(band)
        for stream in self.streams.values():
            stream.write_band(band)

    def chunk_target(self) -> ChunkTarget:
        """What Dask workers write whole chunks into: the OME-Zarr labels' level 0 and, for object kinds that
        need probabilities, each object rule's per-pixel object probability (a scratch zarr)."""
        labels = next((w.target for w in self.writers if isinstance(w, OmeZarrWriter)), None)
        if labels is None:
            raise UnetsegError("--dask writes its maps into OME-Zarr labels: add ome-zarr to --format")
        if self.needs_probs:
            for rule, scratch in self.scratch.items():
                self._planes[rule] = create_array(scratch.folder / "probability.zarr", self.spec.shape, np.float32,
                                                  self.spec.chunks)
        return ChunkTarget(labels, self._planes)

    def journal(self) -> Any:
        """The OME-Zarr labels' chunk journal of a resumable run (:attr:`OutputSpec.resume`), else None."""
        return next((w.journal for w in self.writers if isinstance(w, OmeZarrWriter)), None)

    def finish(self, result: TiledResult, client: Any = None) -> list[Path]:
        """Finish every kind with the run's result: objects are merged and handed to their kinds band by band,
        whole-image maps encoded, the summary written. ``client``: the Dask client whose workers wrote the
        chunks (they also label the objects, chunk by chunk)."""
        if self.scratch:
            release_freed_memory()  # the tiler's activations are done with: the object pass gets their memory
        tables = {}
        for rule in self.scratch:
            users = [w for w in self.writers if w.object_rule() == rule]
            if self.spec.dask:
                tables[rule], bands = self._dask_objects(rule, users, client)
            else:
                tables[rule], bands = self.streams[rule].finish(), self.streams[rule].bands()
            for writer in users:
                writer.start_objects(tables[rule])
            for start, ids in bands:
                for writer in users:
                    writer.write_objects(start, ids)
        done = Finished(result, tables)
        for writer in self.writers:
            self.written += writer.finish(done)
        self._finished = True
        return self.written

    def _dask_objects(self, rule: ObjectRule, users: list[KindWriter], client: Any
                      ) -> tuple[ObjectTable, Iterator[tuple[int, np.ndarray]]]:
        """Objects labelled chunk by chunk on the workers into the instances writer's OME-Zarr (else a scratch
        zarr); the final ids then come back here in row bands of whole chunks."""
        out = next((w.target for w in users if isinstance(getattr(w, "target", None), zarr.Array)), None)
        if out is None:
            out = create_array(self.scratch[rule].folder / "objects.zarr", self.spec.shape, np.uint32,
                               self.spec.chunks)
        labels = next(w.target for w in self.writers if isinstance(w, OmeZarrWriter))
        table = dask_objects(labels, self._planes.get(rule), rule, self.spec.num_classes, self.scratch[rule].folder,
                             out, client, progress=True)
        step = int(out.chunks[0])
        bands = ((r, np.asarray(out[r : r + step])) for r in range(0, self.spec.shape[0], step))
        return table, bands

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and not self._finished:
            exc = RuntimeError("OutputSet closed before finish(result)")
            self._stack.__exit__(type(exc), exc, None)
            raise exc
        self._stack.__exit__(exc_type, exc, tb)
        if exc_type is None and self.done is not None:
            write_manifest(self.spec.stem, self.done.input, self.done.key, self.written)
