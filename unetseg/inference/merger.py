"""The merger: tile outputs -> finished row bands of labels (and probabilities), handed to a sink in order.

Under ``blend="crop"`` each tile contributes only its kept centre (tiles abut; labels are computed on the
device, so one byte per pixel crosses back). Under ``blend="gaussian"`` overlapping outputs are averaged with
a Gaussian importance map. Rows are released as soon as every tile touching them is done, so only about
one tile row of results is ever held, whatever the image size. Each finished band's labels are counted here,
once, for the run's :class:`~unetseg.inference.result.TiledResult`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data.labels import label_counts, map_dtype, nodata_label, num_labels
from ..errors import UnetsegError
from .forward import entropy
from .grid import AxisPlan, TileGrid
from .result import Band, BandSink
from .splitter import TileIndex


def to_labels(probs: torch.Tensor) -> torch.Tensor:
    """NKHW probabilities -> NHW class indices, on the tensor's device (uint8 for K <= 256, else int32; a map
    takes :func:`unetseg.data.labels.map_dtype`); K == 1 means sigmoid > 0.5.

    Ties go to the lower class index, as with argmax.
    """
    k = probs.shape[1]
    if k == 1:
        return (probs[:, 0] > 0.5).to(torch.uint8)
    if k > 32:
        return probs.argmax(1).to(torch.uint8 if k <= 256 else torch.int32)
    # A running maximum over the classes: argmax over a short channel axis of a (channels_last) tile crop is
    # several times slower on CPU (18 ms vs ~2 ms for 2 x 324^2).
    best, labels = probs[:, 0], torch.zeros(probs[:, 0].shape, dtype=torch.uint8, device=probs.device)
    for c in range(1, k):
        better = probs[:, c] > best
        labels.masked_fill_(better, c)
        best = torch.where(better, probs[:, c], best)
    return labels


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
    """Stitched results of the rows ``[top, top + len)`` not yet handed out: HxW[xK] of ``dtype``.

    Holds probabilities (HxWxK float32, optionally with blend weights) or, for crop blending to labels,
    class indices (HxW).
    """

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


class Merger:
    """Takes probability batches of the grid's tiles (row-major order) and hands finished row bands to ``sink``.

    ``sink``: None (a numpy array of the result's shape is made on the first batch), a row sink
    (:class:`unetseg.io.RowSink`: ``sink[r0:r1] = rows`` of labels HxW or probs HxWxK float32, cast to its
    dtype), or a :class:`~unetseg.inference.result.BandSink` (whole :class:`~unetseg.inference.result.Band`
    objects: labels, and probabilities when ``output="probs"``). With ``invalid`` (the input may hold invalid
    pixels), :meth:`add` takes each tile's invalid-pixel mask and those pixels get the nodata label
    (``nodata``, default :func:`unetseg.data.labels.nodata_label`) and probabilities 0.
    """

    def __init__(self, grid: TileGrid, blend: str, output: str, sink: Any = None, *, invalid: bool = False,
                 nodata: int | None = None, spread: bool = False) -> None:
        self.grid, self.output, self.out = grid, output, sink
        self.keep_probs, self.uncertainty = "probs" in output, "uncertainty" in output
        self.spread = spread  # the batches carry one more channel: the views' mean entropy
        self.uncertainty_sums = np.zeros(2, np.float64)
        self.bands = isinstance(sink, BandSink)
        self.track_invalid, self.nodata_arg = invalid, nodata
        self.nodata: int | None = None
        self.invalid: RowAccumulator | None = None
        rows = grid.rows
        self.weights = gaussian_weights(rows.out_size, grid.cols.out_size) if blend == "gaussian" else None
        self.labels_on_device = output == "labels" and self.weights is None
        self.acc: RowAccumulator | None = None
        self.done_in_row = [0] * rows.count
        self.next_row = 0
        self.num_classes = 0
        self.dtype = np.dtype(np.uint8)
        self.counts = np.zeros(0, np.int64)

    def _start(self, channels: int) -> None:
        rows, cols = self.grid.rows, self.grid.cols
        k = channels - self.spread
        self.num_classes, self.counts = k, np.zeros(num_labels(k), np.int64)
        if self.track_invalid:
            self.nodata = nodata_label(k, self.nodata_arg)
            self.invalid = RowAccumulator(cols.length, (), np.dtype(bool), weighted=False)
        self.dtype = map_dtype(k, self.nodata)
        if self.labels_on_device:
            self.acc = RowAccumulator(cols.length, (), self.dtype, weighted=False)
        else:
            self.acc = RowAccumulator(cols.length, (channels,), np.dtype(np.float32),
                                      weighted=self.weights is not None)
        if self.bands:
            return
        if self.output == "probs+uncertainty":
            raise UnetsegError("output='probs+uncertainty' writes into a band sink (an OutputSet); ask for 'probs' or "
                               "'uncertainty'")
        trailing = {"labels": (), "probs": (k,), "uncertainty": (2,)}[self.output]
        shape = (rows.length, cols.length, *trailing)
        if self.out is None:
            self.out = np.zeros(shape, self.dtype if self.output == "labels" else np.float32)
        got = getattr(self.out, "shape", None)
        if got is not None and tuple(got) != shape:
            raise UnetsegError(f"out has shape {tuple(got)}, expected {shape}")
    def add(self, probs: torch.Tensor, index: list[TileIndex], invalid: list[np.ndarray | None] | None = None) -> None:
        """Stitch one batch: ``probs`` NKHW (the model output size) of the tiles ``index``; ``invalid``: per tile
        None or its input-sized bool mask of invalid pixels (with ``invalid=True`` only)."""
        rows, cols = self.grid.rows, self.grid.cols
        if probs.shape[-2:] != (rows.out_size, cols.out_size):
            raise RuntimeError(f"model output {tuple(probs.shape[-2:])} for input {self.grid.tile_shape}, expected "
                               f"{(rows.out_size, cols.out_size)}: the model's geometry attributes are wrong")
        if self.acc is None:
            self._start(probs.shape[1])
        acc = self.acc
        if self.weights is None:  # crop: keep each tile's centre, cut on the device before the copy back
            for n, (i, j) in enumerate(index):
                (a, b), (c, d) = rows.kept(i), cols.kept(j)
                pa, pc = a - rows.output_range(i)[0], c - cols.output_range(j)[0]
                kept = probs[n : n + 1, :, pa : pa + b - a, pc : pc + d - c]
                kept = to_labels(kept)[0] if self.labels_on_device else kept[0].permute(1, 2, 0)
                acc.put((a, b), (c, d), kept.cpu().numpy())
                self._put_invalid(invalid, n, (i, j), (a, b), (c, d))
                self.done_in_row[i] += 1
        else:
            w = self.weights
            for n, ((i, j), p) in enumerate(zip(index, probs.permute(0, 2, 3, 1).cpu().numpy(), strict=True)):
                (a, b), (c, d) = _clip(rows, i), _clip(cols, j)
                pa, pc = a - rows.output_range(i)[0], c - cols.output_range(j)[0]
                acc.add((a, b), (c, d), p[pa : pa + b - a, pc : pc + d - c], w[pa : pa + b - a, pc : pc + d - c])
                self._put_invalid(invalid, n, (i, j), (a, b), (c, d))
                self.done_in_row[i] += 1
        self._release_finished_rows()

    def _put_invalid(self, invalid: list[np.ndarray | None] | None, n: int, ij: TileIndex, rows: tuple[int, int],
                     cols: tuple[int, int]) -> None:
        """Record the invalid pixels of image rows/cols ``[a, b) x [c, d)`` from tile ``n``'s input mask."""
        if invalid is None or invalid[n] is None or self.invalid is None:
            return
        r0, c0 = _input_origin(self.grid.rows, ij[0]), _input_origin(self.grid.cols, ij[1])
        (a, b), (c, d) = rows, cols
        self.invalid.put(rows, cols, invalid[n][a - r0 : b - r0, c - c0 : d - c0])

    def _release_finished_rows(self) -> None:
        rows, acc = self.grid.rows, self.acc
        while self.next_row < rows.count and self.done_in_row[self.next_row] == self.grid.cols.count:
            if self.next_row == rows.count - 1:
                upto = rows.length
            elif self.weights is None:
                upto = rows.kept(self.next_row + 1)[0]
            else:
                upto = min(max(rows.output_range(self.next_row + 1)[0], acc.top), rows.length)
            top = acc.top
            self._write(acc.flush(upto), top, None if self.invalid is None else self.invalid.flush(upto))
            self.next_row += 1

    def _write(self, band: np.ndarray, r0: int, invalid: np.ndarray | None) -> None:
        if band.shape[0] == 0:
            return
        probs = None if self.labels_on_device else band[..., : self.num_classes]
        labels = band if probs is None else probs_to_labels(probs).astype(self.dtype, copy=False)
        spread = None
        if self.uncertainty:
            spread = uncertainty_band(probs, band[..., self.num_classes] if self.spread else None)
        if invalid is not None and invalid.any():
            labels[invalid] = self.nodata
            for values in (probs, spread):
                if values is not None:
                    values[invalid] = 0
        else:
            invalid = None
        self.counts += label_counts(labels, self.num_classes)
        if spread is not None:
            self.uncertainty_sums += spread.reshape(-1, 2).sum(0, dtype=np.float64)
        if self.bands:
            self.out.write_band(Band(r0, labels, probs if self.keep_probs else None, invalid, spread))
            return
        rows = {"labels": labels, "probs": probs, "uncertainty": spread}[self.output]
        dtype = getattr(self.out, "dtype", None)
        self.out[r0 : r0 + rows.shape[0]] = rows if dtype is None else rows.astype(dtype, copy=False)
