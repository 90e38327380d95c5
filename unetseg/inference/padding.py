"""Border extrapolation as index maps: where a window reaches past the image, which source pixel it sees.

An index map turns "pad the image, then cut a window" into "compute the window's source indices,
read their bounding box once, fancy-index it". That works identically for numpy arrays and lazy
arrays (zarr, tifffile-backed readers) and for windows that extend beyond the image by more than
the image's own size (a 37 px high strip under a 92 px margin).
"""
from __future__ import annotations

from typing import Any

import numpy as np

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


def gather_window(source: Any, rows: tuple[int, int], cols: tuple[int, int], mode: str = "reflect") -> np.ndarray:
    """Read ``source[rows[0]:rows[1], cols[0]:cols[1]]`` of the border-extrapolated image.

    Args:
        source: HxW or HxWxC array, numpy or lazy (anything with ``.shape`` and numpy slicing).
        rows, cols: half-open window bounds in image coordinates; may be negative or past the end.
        mode: one of PAD_MODES (see :func:`source_indices`).

    Returns:
        C-contiguous numpy array (rows, cols[, C]) in the source dtype. Exactly one bounding-box read hits
        ``source``.
    """
    height, width = int(source.shape[0]), int(source.shape[1])
    ri = source_indices(rows[0], rows[1], height, mode)
    ci = source_indices(cols[0], cols[1], width, mode)
    r_ok, c_ok = ri >= 0, ci >= 0
    if not r_ok.any() or not c_ok.any():  # window entirely outside (constant mode only)
        shape = (len(ri), len(ci), *tuple(source.shape[2:]))
        return np.zeros(shape, dtype=source.dtype)
    r0, r1 = int(ri[r_ok].min()), int(ri.max()) + 1
    c0, c1 = int(ci[c_ok].min()), int(ci.max()) + 1
    block = np.asarray(source[r0:r1, c0:c1])
    # np.take per axis keeps C order (chained fancy indexing leaves a transposed layout that slows every later
    # copy and the model 1.5x) and skips an axis that needs no mirroring, so a wide band is copied once.
    out = block
    for axis, (index, start) in enumerate(((ri, r0), (ci, c0))):
        index = np.clip(index - start, 0, None)
        if not (len(index) == out.shape[axis] and (index == np.arange(len(index))).all()):
            out = np.take(out, index, axis=axis)
    out = np.ascontiguousarray(out)  # no copy unless it is still a strided view of the source
    if mode == "constant":
        out[~r_ok] = 0
        out[:, ~c_ok] = 0
    return out
