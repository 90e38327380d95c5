"""The merger: tile outputs -> finished row bands of labels (and probabilities), in order.

Under ``blend="crop"`` each tile contributes only its kept centre (tiles abut). When labels are all the plan keeps,
the crop, the invalid pixels' nodata label and the class counts happen on the device and one byte per pixel
comes back (:meth:`Merger.stage`); each tile row's kept rows are one band. Under ``blend="gaussian"`` overlapping
probabilities are averaged on the host with a Gaussian importance map. Rows are handed out as soon as every tile
touching them is done, so about one tile row of results is held, whatever the image size.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.labels import label_counts, map_dtype, nodata_label, num_labels
from ..engines.allocator import mapped_empty
from ..engines.contract import Started, TileOutput
from ..errors import UnetsegError
from .forward import entropy, to_labels
from .grid import AxisPlan, TileGrid
from .result import Band, BandSink
from .splitter import TileIndex

__all__ = ["Destination", "Merger", "probs_to_labels", "to_labels", "uncertainty_band"]


def probs_to_labels(probs: np.ndarray, nodata: int | None = None) -> np.ndarray:
    """HxWxK probabilities (numpy) -> HxW labels of :func:`unetseg.data.labels.map_dtype` (the rule of
    :func:`to_labels`).

    With a ``nodata`` label, pixels whose probabilities are all 0 (invalid input pixels) get that label."""
    k = probs.shape[-1]
    labels = to_labels(torch.from_numpy(np.ascontiguousarray(probs, np.float32)).permute(2, 0, 1)[None])[0]
    labels = labels.numpy().astype(map_dtype(k, nodata), copy=False)
    if nodata is not None and k > 1:
        labels[~probs.any(axis=-1)] = nodata
    return labels


def uncertainty_band(probs: np.ndarray, expected_entropy: np.ndarray | None) -> np.ndarray:
    """rows x W x 2 float32: the predictive entropy of ``probs`` (rows x W x K; nats, 0..log K) and the views'
    disagreement, that entropy minus their mean entropy ``expected_entropy`` (the mutual information; 0 for one
    view)."""
    tensor = torch.from_numpy(np.ascontiguousarray(probs, np.float32)).permute(2, 0, 1)[None]
    h = entropy(tensor)[0, 0].numpy()
    out = np.zeros((*h.shape, 2), np.float32)
    out[..., 0] = h
    if expected_entropy is not None:
        out[..., 1] = np.maximum(h - expected_entropy, 0)
    return out


def gaussian_weights(height: int, width: int) -> np.ndarray:
    """Separable Gaussian importance map (float32 HxW, max 1, sigma = side/8 as in MONAI and nnU-Net)."""
    def axis(n: int) -> np.ndarray:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        return np.exp(-0.5 * (x / max(n / 8, 1e-6)) ** 2)
    w = np.outer(axis(height), axis(width)).astype(np.float32)
    return np.maximum(w, 1e-6)  # every pixel keeps a positive weight, so no division by zero at borders


class RowAccumulator:
    """Gaussian-blended probabilities of the rows ``[top, top + len)`` not yet handed out (HxWxK float32 with
    their blend weights), and optionally an invalid-pixel mask alongside."""

    def __init__(self, width: int, trailing: tuple[int, ...], dtype: np.dtype, weighted: bool) -> None:
        self.top = 0
        self.acc = np.zeros((0, width, *trailing), dtype)
        self.wsum = np.zeros((0, width), np.float32) if weighted else None

    def _reserve(self, stop: int) -> None:
        extra = stop - self.top - len(self.acc)
        if extra > 0:
            self.acc = np.concatenate([self.acc, np.zeros((extra, *self.acc.shape[1:]), self.acc.dtype)])
            if self.wsum is not None:
                self.wsum = np.concatenate([self.wsum, np.zeros((extra, self.wsum.shape[1]), np.float32)])

    def put(self, rows: tuple[int, int], cols: tuple[int, int], values: np.ndarray) -> None:
        self._reserve(rows[1])
        self.acc[rows[0] - self.top : rows[1] - self.top, cols[0] : cols[1]] = values

    def add(self, rows: tuple[int, int], cols: tuple[int, int], probs: np.ndarray, weight: np.ndarray) -> None:
        if self.wsum is None:
            raise RuntimeError("RowAccumulator.add needs weighted=True")
        self._reserve(rows[1])
        r = slice(rows[0] - self.top, rows[1] - self.top)
        self.acc[r, cols[0] : cols[1]] += probs * weight[..., None]
        self.wsum[r, cols[0] : cols[1]] += weight

    def flush(self, upto: int) -> np.ndarray:
        """Hand out the finished rows ``[top, upto)`` (normalised by the blend weights) and forget them."""
        n = upto - self.top
        self._reserve(upto)
        done, self.acc = self.acc[:n], self.acc[n:].copy()
        if self.wsum is not None:
            weight, self.wsum = self.wsum[:n], self.wsum[n:].copy()
            done = done / weight[..., None]
        self.top = upto
        return done


def _input_origin(plan: AxisPlan, i: int) -> int:
    """The image coordinate of tile ``i``'s first input pixel, from its output's position: the output is centred
    in the input (valid padding loses ``margin`` per side). Unlike ``input_start`` it holds in the coordinates of
    a Dask block's sub-plan too, whose context is held by its window."""
    return plan.output_range(i)[0] - (plan.tile - plan.out_size) // 2


def _clip(plan: AxisPlan, i: int) -> tuple[int, int]:
    a, b = plan.output_range(i)
    return max(a, 0), min(b, plan.length)


@dataclass
class _Piece:
    """One tile's share of the image, on the host: rows ``rows`` x cols ``cols`` of labels or probabilities
    (rows x cols [x K]) and the invalid mask over them (None: none invalid)."""

    tile: TileIndex
    rows: tuple[int, int]
    cols: tuple[int, int]
    values: torch.Tensor
    invalid: torch.Tensor | None


class Merger:
    """Takes the grid's tile outputs (row-major order) and hands finished :class:`Band` objects to ``emit``.

    Args:
        grid: the tile grid.
        blend: "crop" or "gaussian".
        output: the plan's output ("labels", "probs", "uncertainty", "probs+uncertainty").
        emit: receives each finished band, in row order.
        nodata: label of invalid pixels (default :func:`unetseg.data.labels.nodata_label`).
        spread: the outputs carry one more channel, the views' mean entropy.
        device: where the outputs live; on CUDA the device half of a merge is queued right behind the batch.
        prepare: called once, with the model's output channels and the label map's dtype, before the first band.
        planes: what the bands keep of their probabilities (a sink's ``probability_planes``,
            :class:`~unetseg.tiling.result.BandSink`), or None to keep all K.
    """

    def __init__(self, grid: TileGrid, blend: str, output: str, emit: Callable[[Band], None], *,
                 nodata: int | None = None, spread: bool = False, device: torch.device | None = None,
                 prepare: Callable[[int, np.dtype], None] | None = None,
                 planes: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> None:
        self.grid, self.output, self.emit, self.prepare, self.planes = grid, output, emit, prepare, planes
        self.keep_probs, self.uncertainty = "probs" in output, "uncertainty" in output
        self.spread = spread
        self.uncertainty_sums = np.zeros(2, np.float64)
        self.nodata_arg = nodata
        self.queued = device is not None and device.type == "cuda"
        self.weights = gaussian_weights(grid.rows.out_size, grid.cols.out_size) if blend == "gaussian" else None
        self.labels_on_device = output == "labels" and self.weights is None
        self.num_classes = 0
        self.nodata = 0
        self.dtype = np.dtype(np.uint8)
        self.counts = np.zeros(0, np.int64)
        self._device_counts: torch.Tensor | None = None
        self._rows: dict[int, dict[str, Any]] = {}  # crop: tile row -> its band under construction
        self._done_in_row = [0] * grid.rows.count
        self._next_row = 0
        self._probs: RowAccumulator | None = None  # gaussian
        self._invalid: RowAccumulator | None = None

    # ------------------------------------------------------------------------------------------------ device half
    def stage(self, started: Started, index: list[TileIndex]) -> Callable[[], None]:
        """Take a started batch of the tiles ``index``; returns the function that finishes merging it. On CUDA the
        crops, nodata labels, counts and copies back are queued now, behind the batch, and the function waits for
        them; elsewhere everything waits for the function (an asynchronous engine computes meanwhile)."""
        if self.queued:
            pieces, ready = self._pieces(started(), index)
            return lambda: self._place(pieces, ready)
        return lambda: self._place(*self._pieces(started(), index))

    def _start(self, out: TileOutput) -> None:
        k = out.classes
        self.num_classes, self.counts = k, np.zeros(num_labels(k), np.int64)
        self.nodata = nodata_label(k, self.nodata_arg) if out.invalid is not None else 0
        self.dtype = map_dtype(k, self.nodata if out.invalid is not None else None)
        if self.prepare is not None:
            self.prepare(k, self.dtype)
        if self.weights is not None:
            width, channels = self.grid.cols.length, k + self.spread
            self._probs = RowAccumulator(width, (channels,), np.dtype(np.float32), weighted=True)
            self._invalid = RowAccumulator(width, (), np.dtype(bool), weighted=False)

    def _pieces(self, out: TileOutput, index: list[TileIndex]) -> tuple[list[_Piece], Any]:
        """Cut each tile's share out of the batch on its device and start copying it back."""
        rows, cols = self.grid.rows, self.grid.cols
        values = out.labels if out.labels is not None else out.probs
        assert values is not None
        if tuple(values.shape[-2:]) != (rows.out_size, cols.out_size):
            raise RuntimeError(f"model output {tuple(values.shape[-2:])} for input {self.grid.tile_shape}, expected "
                               f"{(rows.out_size, cols.out_size)}: the model's geometry attributes are wrong")
        if self.num_classes == 0:
            self._start(out)
        pieces = []
        for n, (i, j) in enumerate(index):
            (a, b), (c, d) = ((rows.kept(i), cols.kept(j)) if self.weights is None else (_clip(rows, i), _clip(cols, j)))
            pa, pc = a - rows.output_range(i)[0], c - cols.output_range(j)[0]
            invalid = None
            if out.invalid is not None:
                r0, c0 = _input_origin(rows, i), _input_origin(cols, j)
                invalid = out.invalid[n, a - r0 : b - r0, c - c0 : d - c0]
            if out.labels is not None:
                kept = self._labels(out.labels[n, pa : pa + b - a, pc : pc + d - c], invalid)
            else:
                kept = out.probs[n, :, pa : pa + b - a, pc : pc + d - c].permute(1, 2, 0)  # type: ignore[index]
            pieces.append(_Piece((i, j), (a, b), (c, d), _to_host(kept), None if invalid is None else _to_host(invalid)))
        ready = None
        if self.queued:
            ready = torch.cuda.Event()
            ready.record()
        return pieces, ready

    def _labels(self, labels: torch.Tensor, invalid: torch.Tensor | None) -> torch.Tensor:
        """A tile's kept labels with the nodata label on invalid pixels, counted (valid pixels only) where they are."""
        n = num_labels(self.num_classes)
        counted = labels if invalid is None else torch.where(invalid, n, labels.to(torch.int32))
        counts = torch.bincount(counted.reshape(-1).to(torch.int64), minlength=n + 1)[:n]
        self._device_counts = counts if self._device_counts is None else self._device_counts + counts
        if invalid is None:
            return labels
        return torch.where(invalid, self.nodata, labels.to(torch.int32))

    # -------------------------------------------------------------------------------------------------- host half
    def _place(self, pieces: list[_Piece], ready: Any) -> None:
        if ready is not None:
            ready.synchronize()
        for piece in pieces:
            if self.weights is None:
                self._put(piece)
            else:
                self._blend(piece)
        self._release_finished_rows()

    def _put(self, piece: _Piece) -> None:
        i = piece.tile[0]
        a, b = self.grid.rows.kept(i)
        band = self._rows.get(i)
        if band is None:
            width = self.grid.cols.length
            trailing = () if self.labels_on_device else (piece.values.shape[-1],)
            dtype = self.dtype if self.labels_on_device else np.float32
            band = self._rows[i] = {"values": mapped_empty((b - a, width, *trailing), dtype), "invalid": None}
        (c, d) = piece.cols
        band["values"][:, c:d] = piece.values.numpy()
        if piece.invalid is not None:
            mask = piece.invalid.numpy()
            if band["invalid"] is None and mask.any():
                band["invalid"] = mapped_empty((b - a, self.grid.cols.length), bool)
                band["invalid"][:] = False
            if band["invalid"] is not None:
                band["invalid"][:, c:d] = mask
        self._done_in_row[i] += 1

    def _blend(self, piece: _Piece) -> None:
        assert self._probs is not None and self._invalid is not None and self.weights is not None
        rows, cols = self.grid.rows, self.grid.cols
        (i, j), (a, b), (c, d) = piece.tile, piece.rows, piece.cols
        pa, pc = a - rows.output_range(i)[0], c - cols.output_range(j)[0]
        self._probs.add((a, b), (c, d), piece.values.numpy(), self.weights[pa : pa + b - a, pc : pc + d - c])
        if piece.invalid is not None:
            self._invalid.put((a, b), (c, d), piece.invalid.numpy())
        self._done_in_row[i] += 1

    def _release_finished_rows(self) -> None:
        rows = self.grid.rows
        while self._next_row < rows.count and self._done_in_row[self._next_row] == self.grid.cols.count:
            i = self._next_row
            if self.weights is None:
                band = self._rows.pop(i)
                self._write(band["values"], rows.kept(i)[0], band["invalid"])
            else:
                assert self._probs is not None and self._invalid is not None
                top = self._probs.top
                upto = rows.length if i == rows.count - 1 else min(max(rows.output_range(i + 1)[0], top), rows.length)
                invalid = self._invalid.flush(upto)
                self._write(self._probs.flush(upto), top, invalid if invalid.any() else None)
            self._next_row += 1

    def _write(self, values: np.ndarray, r0: int, invalid: np.ndarray | None) -> None:
        """Finish one band (labels from probabilities, nodata, counts, uncertainty) and emit it."""
        if values.shape[0] == 0:
            return
        if self.labels_on_device:
            self.emit(Band(r0, values, None, invalid, None))
            return
        probs = values[..., : self.num_classes]
        labels = probs_to_labels(probs).astype(self.dtype, copy=False)
        spread = None
        if self.uncertainty:
            spread = uncertainty_band(probs, values[..., self.num_classes] if self.spread else None)
        if invalid is not None:
            labels[invalid] = self.nodata
            for kept in (probs, spread):
                if kept is not None:
                    kept[invalid] = 0
        self.counts += label_counts(labels, self.num_classes)
        if spread is not None:
            self.uncertainty_sums += spread.reshape(-1, 2).sum(0, dtype=np.float64)
        kept = None
        if self.keep_probs:
            kept = probs if self.planes is None else self.planes(labels, probs)
        self.emit(Band(r0, labels, kept, invalid, spread))

    def finish(self) -> np.ndarray:
        """The class counts of everything merged (valid pixels per label value), once every batch is placed."""
        if self._device_counts is not None:
            self.counts += self._device_counts.cpu().numpy()
            self._device_counts = None
        return self.counts


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` on the host: itself on CPUs; from CUDA an asynchronous copy into pinned memory (wait for the
    merger's event before reading it)."""
    if tensor.device.type == "cpu":
        return tensor
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host


class Destination:
    """Where finished bands go: a :class:`~unetseg.tiling.result.BandSink` (whole bands), or ``out`` taking the
    output's rows (``out[r0:r1] = rows``: a numpy or zarr array, a streaming row writer), made as a numpy array of
    the result's shape when None."""

    def __init__(self, out: Any, output: str, shape: tuple[int, int]) -> None:
        self.out, self.output, self.shape = out, output, shape
        self.bands = isinstance(out, BandSink)
        self.planes = getattr(out, "probability_planes", None) if self.bands else None
        if not self.bands and output == "probs+uncertainty":
            raise UnetsegError("output='probs+uncertainty' writes into a band sink (an OutputSet); ask for 'probs' or "
                               "'uncertainty'")

    def prepare(self, classes: int, dtype: np.dtype) -> None:
        """Make (or check) the array of the result for a ``classes``-class output with labels of ``dtype``."""
        if self.bands:
            return
        trailing = {"labels": (), "probs": (classes,), "uncertainty": (2,)}[self.output]
        shape = (*self.shape, *trailing)
        if self.out is None:
            self.out = np.zeros(shape, dtype if self.output == "labels" else np.float32)
        got = getattr(self.out, "shape", None)
        if got is not None and tuple(got) != shape:
            raise UnetsegError(f"out has shape {tuple(got)}, expected {shape}")

    def write(self, band: Band) -> None:
        if self.bands:
            self.out.write_band(band)
            return
        rows = {"labels": band.labels, "probs": band.probs, "uncertainty": band.uncertainty}[self.output]
        dtype = getattr(self.out, "dtype", None)
        self.out[band.start : band.stop] = rows if dtype is None else rows.astype(dtype, copy=False)
