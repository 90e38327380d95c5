"""What tiled inference hands out: finished row bands (:class:`Band`) while it runs, a :class:`TiledResult` at
the end. Results are return values; nothing is filled in for the caller."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import UnetsegError


@dataclass(frozen=True)
class Band:
    """Finished image rows ``[start, start + len(labels))`` of a tiled prediction, all columns.

    Attributes:
        start: first image row.
        labels: rows x W labels, of :func:`unetseg.data.labels.map_dtype`; invalid pixels hold the nodata label.
        probs: rows x W x K float32 class probabilities (0 on invalid pixels) when the plan's output is
            "probs", else None; for a sink with ``probability_planes``, the rows x W x P planes it keeps of them.
        invalid: rows x W bool, True on invalid input pixels; None when the band has none.
        uncertainty: rows x W x 2 float32 when the plan's output asks for it: the predictive entropy (nats, 0 to
            log K) and the disagreement of the views (ensemble members, TTA; mutual information, 0 for one view);
            0 on invalid pixels.
    """

    start: int
    labels: np.ndarray
    probs: np.ndarray | None = None
    invalid: np.ndarray | None = None
    uncertainty: np.ndarray | None = None

    @property
    def stop(self) -> int:
        return self.start + len(self.labels)


@runtime_checkable
class BandSink(Protocol):
    """A destination that takes whole :class:`Band` objects in increasing, contiguous row order (the outputs
    layer's :class:`unetseg.outputs.OutputSet`). Plain arrays and row writers take ``out[r0:r1] = rows``.

    A sink may also have a ``probability_planes`` attribute: None, or a function of a band's rows x W labels and
    rows x W x K probabilities returning the rows x W x P float32 planes it needs of them (P < K: e.g. one object
    probability per object rule). Its bands then carry those planes as ``probs``, so the bands queued behind the
    merger hold P channels, not K."""

    def write_band(self, band: Band) -> None: ...


@runtime_checkable
class BlockSink(Protocol):
    """A destination Dask tasks write whole blocks into: ``chunks`` (its block sides), ``shape`` and
    ``write_block(rows, cols, labels, probs)`` (probs None unless the plan keeps them)."""

    chunks: tuple[int, ...]
    shape: tuple[int, ...]

    def write_block(self, rows: slice, cols: slice, labels: np.ndarray, probs: np.ndarray | None) -> None: ...


@dataclass(frozen=True)
class TileReport:
    """The settings a tiled prediction ran with, resolved: tile shape [h, w], context (margin or halo, px per
    side), tile count, batch size, precision ("fp32" | "bf16" | "fp16" | "int8"), device, whether the graph ran
    compiled, the nodata value applied (None: only NaN/Inf were invalid, or no pixel could be), the engine
    that ran the model (:mod:`unetseg.engines.registry`) and the test-time augmentation (None, "flips", "d4")."""

    tile_shape: tuple[int, int]
    context: int
    num_tiles: int
    batch_size: int
    precision: str
    device: str
    compiled: bool
    nodata: float | None
    engine: str = "torch"
    tta: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, in the order a summary lists them."""
        return dict(tile_shape=list(self.tile_shape), context=self.context, num_tiles=self.num_tiles,
                    batch_size=self.batch_size, precision=self.precision, device=self.device,
                    compiled=self.compiled, nodata=self.nodata, engine=self.engine, tta=self.tta)


class NoValidPixel(UnetsegError):
    def __init__(self, nodata: Any) -> None:
        super().__init__(f"no valid pixel in the image (every pixel is nodata {nodata}, NaN or Inf)")


@dataclass(frozen=True)
class TiledResult:
    """The outcome of one tiled prediction (or the merge of a Dask run's blocks).

    Attributes:
        output: the destination given as ``out=``, else the numpy result (labels HxW or probs HxWxK).
        report: the resolved settings (:class:`TileReport`).
        pixels: pixels predicted (H x W).
        class_counts: valid pixels per label value (int64, :func:`unetseg.data.labels.label_counts`).
        uncertainty_sums: the sums of the entropy and of the disagreement over the valid pixels (float64 (2,)),
            when the output held uncertainty, else None.
    """

    output: Any
    report: TileReport
    pixels: int
    class_counts: np.ndarray
    uncertainty_sums: np.ndarray | None = None

    @property
    def mean_uncertainty(self) -> tuple[float, float] | None:
        """``(mean entropy, mean disagreement)`` over the valid pixels, or None when not computed."""
        if self.uncertainty_sums is None or self.valid_pixels == 0:
            return None
        entropy, spread = self.uncertainty_sums / self.valid_pixels
        return float(entropy), float(spread)

    @property
    def valid_pixels(self) -> int:
        return int(self.class_counts.sum())

    @property
    def invalid_pixels(self) -> int:
        return self.pixels - self.valid_pixels

    def check_valid(self) -> TiledResult:
        """``self``, or NoValidPixel (one line) when no pixel held data."""
        if self.valid_pixels == 0 and self.pixels > 0:
            raise NoValidPixel(self.report.nodata)
        return self

    @classmethod
    def merged(cls, parts: list[TiledResult], output: Any, report: TileReport) -> TiledResult:
        """One result of the disjoint ``parts`` of an image (Dask blocks): pixels and counts summed."""
        counts = np.zeros(max(len(p.class_counts) for p in parts), np.int64)
        for part in parts:
            counts[: len(part.class_counts)] += part.class_counts
        sums = [p.uncertainty_sums for p in parts]
        total = None if any(s is None for s in sums) else np.sum(sums, axis=0)
        return cls(output, report, sum(p.pixels for p in parts), counts, total)
