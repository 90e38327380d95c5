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
    """A window of the border-extrapolated image (or volume) as one read of the source plus the index maps that
    extrapolate it.

    Attributes:
        block: the bounding box of the source pixels the window shows (``source[r0:r1, c0:c1]``; for a volume
            ``source[z0:z1, r0:r1, c0:c1]``), in its own dtype.
        index: per spatial axis, the block position each window position shows (int64), or None where the window
            shows the block's positions as they are; -1 marks a zero plane (``mode="constant"``).
    """

    block: np.ndarray
    index: tuple[np.ndarray | None, ...]

    @property
    def rows(self) -> np.ndarray | None:
        return self.index[-2]

    @property
    def cols(self) -> np.ndarray | None:
        return self.index[-1]

    def numpy(self) -> np.ndarray:
        """The window as a C-contiguous numpy array (*spatial[, C]) of the block's dtype."""
        out = self.block
        # np.take per axis keeps C order (chained fancy indexing leaves a transposed layout that slows every later
        # copy and the model 1.5x) and skips an axis that needs no mirroring, so a wide band is copied once.
        for axis, index in enumerate(self.index):
            if index is not None:
                out = np.take(out, np.clip(index, 0, None), axis=axis)
        out = np.ascontiguousarray(out)  # no copy unless it is still a strided view of the source
        for axis, index in enumerate(self.index):
            if index is not None and (index < 0).any():
                out[(slice(None),) * axis + (index < 0,)] = 0
        return out

    def tensor(self, block: torch.Tensor) -> torch.Tensor:
        """The window from ``block`` (this read's block as a tensor, on any device): the same values as
        :meth:`numpy`, extrapolated where the tensor lives."""
        out = block
        for axis, index in enumerate(self.index):
            if index is not None:
                at = torch.from_numpy(index).to(block.device, non_blocking=True)
                out = out.index_select(axis, at.clamp_min(0))
                if (index < 0).any():
                    keep = (at >= 0).view((-1,) + (1,) * (out.dim() - axis - 1))
                    out = out * keep.to(out.dtype)
        return out


def read_window(source: Any, rows: tuple[int, int], cols: tuple[int, int], mode: str = "reflect") -> WindowRead:
    """One read of ``source`` (HxW or HxWxC, numpy or lazy) for the window ``[rows) x [cols)`` of the
    border-extrapolated image: :func:`read_box` in 2D."""
    return read_box(source, (rows, cols), mode)


def read_box(source: Any, box: tuple[tuple[int, int], ...], mode: str = "reflect") -> WindowRead:
    """One read of ``source`` for the window ``box`` (one half-open ``(start, stop)`` per spatial axis) of the
    border-extrapolated image or volume.

    Args:
        source: array of ``len(box)`` spatial axes and optionally a trailing channel axis (HxW[xC], DxHxW[xC]),
            numpy or lazy (anything with ``.shape`` and numpy slicing: zarr, a memory-mapped NIfTI).
        box: window bounds in source coordinates; may be negative or past the end.
        mode: one of PAD_MODES (see :func:`source_indices`).

    Exactly one bounding-box read hits ``source``; the extrapolation is left to :meth:`WindowRead.numpy` (the
    host) or :meth:`WindowRead.tensor` (the device the tiles run on).
    """
    idx = [source_indices(a, b, int(n), mode) for (a, b), n in zip(box, source.shape, strict=False)]
    ok = [i >= 0 for i in idx]
    if not all(o.any() for o in ok):  # window entirely outside (constant mode only)
        block = np.zeros((1,) * len(box) + tuple(source.shape[len(box):]), dtype=source.dtype)
        return WindowRead(block, tuple(np.full(len(i), -1, np.int64) for i in idx))
    starts = [int(i[o].min()) for i, o in zip(idx, ok, strict=True)]
    block = np.asarray(source[tuple(slice(a, int(i.max()) + 1) for a, i in zip(starts, idx, strict=True))])
    return WindowRead(block, tuple(_relative(i, a) for i, a in zip(idx, starts, strict=True)))


def _relative(index: np.ndarray, start: int) -> np.ndarray | None:
    """``index`` relative to the block's first position (-1 kept), or None when it is the identity."""
    rel = np.where(index >= 0, index - start, -1)
    if rel[0] == 0 and (np.diff(rel) == 1).all():
        return None
    return rel


def gather_window(source: Any, rows: tuple[int, int], cols: tuple[int, int], mode: str = "reflect") -> np.ndarray:
    """``source[rows[0]:rows[1], cols[0]:cols[1]]`` of the border-extrapolated image as a C-contiguous numpy array
    (rows, cols[, C]) in the source dtype: :func:`read_window` extrapolated on the host."""
    return read_window(source, rows, cols, mode).numpy()
