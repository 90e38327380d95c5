"""Border extrapolation as index maps: where a window reaches past the image, which source pixel it sees.

An index map turns "pad the image, then cut a window" into "compute the window's source indices,
read their bounding box once, fancy-index it". That works identically for numpy arrays and lazy
arrays (zarr, tifffile-backed readers) and for windows that extend beyond the image by more than
the image's own size (a 37 px high strip under a 92 px margin).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import UnetsegError

PAD_MODES = ("reflect", "symmetric", "edge", "constant")


def check_pad_mode(mode: str) -> None:
    if mode not in PAD_MODES:
        raise UnetsegError(f"pad_mode={mode!r} is not one of {', '.join(PAD_MODES)}")


def source_indices(start: int, stop: int, n: int, mode: str = "reflect") -> np.ndarray:
    """Source indices (int64, length ``stop - start``) of positions ``start..stop-1`` on an axis of length ``n``.

    Modes follow ``np.pad``: "reflect" mirrors without repeating the edge (OpenCV's REFLECT_101; the
    paper's mirroring), "symmetric" mirrors repeating it, "edge" repeats the edge pixel, "constant"
    marks outside positions with -1 (the caller fills them with 0). Pads of any length are allowed;
    mirroring continues periodically exactly as ``np.pad`` does.
    """
    idx = np.arange(start, stop, dtype=np.int64)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(idx)
        period = 2 * (n - 1)
        idx = np.mod(idx, period)
        return np.where(idx >= n, period - idx, idx)
    if mode == "symmetric":
        period = 2 * n
        idx = np.mod(idx, period)
        return np.where(idx >= n, period - 1 - idx, idx)
    if mode == "edge":
        return np.clip(idx, 0, n - 1)
    if mode == "constant":
        return np.where((idx >= 0) & (idx < n), idx, -1)
    check_pad_mode(mode)
    raise AssertionError  # unreachable: check_pad_mode raised


@dataclass(frozen=True)
class WindowRead:
    """A window of the border-extrapolated image as one read of the source plus the index maps that extrapolate it.

    Attributes:
        block: ``source[r0:r1, c0:c1]``, the bounding box of the source pixels the window shows (its own dtype).
        rows, cols: per window row/column, the block row/column it shows (int64), or None where the window shows
            the block's rows/columns as they are; -1 marks a zero row/column (``mode="constant"``).
    """

    block: np.ndarray
    rows: np.ndarray | None
    cols: np.ndarray | None

    def numpy(self) -> np.ndarray:
        """The window as a C-contiguous numpy array (rows, cols[, C]) of the block's dtype."""
        out = self.block
        # np.take per axis keeps C order (chained fancy indexing leaves a transposed layout that slows every later
        # copy and the model 1.5x) and skips an axis that needs no mirroring, so a wide band is copied once.
        for axis, index in enumerate((self.rows, self.cols)):
            if index is not None:
                out = np.take(out, np.clip(index, 0, None), axis=axis)
        out = np.ascontiguousarray(out)  # no copy unless it is still a strided view of the source
        for axis, index in enumerate((self.rows, self.cols)):
            if index is not None and (index < 0).any():
                out[(slice(None),) * axis + (index < 0,)] = 0
        return out

    def tensor(self, block: torch.Tensor) -> torch.Tensor:
        """The window from ``block`` (this read's block as a tensor, on any device): the same values as
        :meth:`numpy`, extrapolated where the tensor lives."""
        out = block
        for axis, index in enumerate((self.rows, self.cols)):
            if index is not None:
                at = torch.from_numpy(index).to(block.device, non_blocking=True)
                out = out.index_select(axis, at.clamp_min(0))
                if (index < 0).any():
                    keep = (at >= 0).view((-1,) + (1,) * (out.dim() - axis - 1))
                    out = out * keep.to(out.dtype)
        return out


def read_window(source: Any, rows: tuple[int, int], cols: tuple[int, int], mode: str = "reflect") -> WindowRead:
    """One read of ``source`` for the window ``[rows) x [cols)`` of the border-extrapolated image.

    Args:
        source: HxW or HxWxC array, numpy or lazy (anything with ``.shape`` and numpy slicing).
        rows, cols: half-open window bounds in image coordinates; may be negative or past the end.
        mode: one of PAD_MODES (see :func:`source_indices`).

    Exactly one bounding-box read hits ``source``; the extrapolation is left to :meth:`WindowRead.numpy` (the
    host) or :meth:`WindowRead.tensor` (the device the tiles run on).
    """
    height, width = int(source.shape[0]), int(source.shape[1])
    ri = source_indices(rows[0], rows[1], height, mode)
    ci = source_indices(cols[0], cols[1], width, mode)
    r_ok, c_ok = ri >= 0, ci >= 0
    if not r_ok.any() or not c_ok.any():  # window entirely outside (constant mode only)
        block = np.zeros((1, 1, *tuple(source.shape[2:])), dtype=source.dtype)
        return WindowRead(block, np.full(len(ri), -1, np.int64), np.full(len(ci), -1, np.int64))
    r0, r1 = int(ri[r_ok].min()), int(ri.max()) + 1
    c0, c1 = int(ci[c_ok].min()), int(ci.max()) + 1
    block = np.asarray(source[r0:r1, c0:c1])
    return WindowRead(block, _relative(ri, r0), _relative(ci, c0))


def _relative(index: np.ndarray, start: int) -> np.ndarray | None:
    """``index`` relative to the block's first row/column (-1 kept), or None when it is the identity."""
    rel = np.where(index >= 0, index - start, -1)
    if rel[0] == 0 and (np.diff(rel) == 1).all():
        return None
    return rel


def gather_window(source: Any, rows: tuple[int, int], cols: tuple[int, int], mode: str = "reflect") -> np.ndarray:
    """``source[rows[0]:rows[1], cols[0]:cols[1]]`` of the border-extrapolated image as a C-contiguous numpy array
    (rows, cols[, C]) in the source dtype: :func:`read_window` extrapolated on the host."""
    return read_window(source, rows, cols, mode).numpy()
