"""The output set of one image: every requested kind's writer behind one band sink, then the summary and the
done-manifest. The one-process path feeds it row bands; the Dask path lets workers write its chunked kinds,
then finishes it with the merged result. Both call :meth:`OutputSet.finish` with a
:class:`~unetseg.inference.result.TiledResult`."""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.classes import ClassTable
from ..data.labels import map_dtype
from ..errors import UnetsegError
from ..inference.result import Band, TiledResult
from ..io.ome_zarr_labels import pyramid_levels
from ..io.source import ImageSource
from .kinds import KindWriter, check_formats
from .manifest import write_manifest
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
    """

    stem: Path
    source: ImageSource
    num_classes: int
    class_table: ClassTable
    style: MapStyle
    settings: dict[str, Any] = field(default_factory=dict)
    extra_settings: dict[str, Any] = field(default_factory=dict)
    chunks: tuple[int, int] = OME_ZARR_CHUNKS

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.source.shape[0]), int(self.source.shape[1])

    @property
    def streaming(self) -> bool:
        """Whether the input is read lazily (TIFF, zarr, slides): maps are then streamed into tiled TIFFs."""
        return not isinstance(self.source.array, np.ndarray)

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
        self.writers: list[KindWriter] = []
        self.written: list[Path] = []
        self._stack = ExitStack()
        self._finished = False

    @property
    def needs_probs(self) -> bool:
        """Whether a kind is made from probabilities (the prediction must keep them)."""
        return any(kind.needs == "probs" for kind in self.kinds)

    def __enter__(self) -> OutputSet:
        try:
            for kind in self.kinds:
                self.writers.append(self._stack.enter_context(kind.writer(self.spec, kind)))
        except BaseException:
            self._stack.close()
            raise
        return self

    def write_band(self, band: Band) -> None:
        """The sink protocol of :func:`unetseg.inference.run_tiles`: one finished band to every writer."""
        for writer in self.writers:
            writer.write_band(band)

    def chunk_target(self) -> Any:
        """The zarr array Dask workers write whole chunks into (the OME-Zarr labels' level 0)."""
        for writer in self.writers:
            if isinstance(writer, OmeZarrWriter):
                return writer.target
        raise UnetsegError("--dask writes its maps into OME-Zarr labels: add ome-zarr to --format")

    def finish(self, result: TiledResult) -> list[Path]:
        """Finish every kind with the run's result (whole-image maps are encoded, the summary written)."""
        for writer in self.writers:
            self.written += writer.finish(result)
        self._finished = True
        return self.written

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and not self._finished:
            exc = RuntimeError("OutputSet closed before finish(result)")
            self._stack.__exit__(type(exc), exc, None)
            raise exc
        self._stack.__exit__(exc_type, exc, tb)
        if exc_type is None and self.done is not None:
            write_manifest(self.spec.stem, self.done.input, self.done.key, self.written)
