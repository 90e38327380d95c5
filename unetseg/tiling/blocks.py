"""Output blocks of one tile grid: a rectangle of whole tiles that one worker predicts on its own, bit for bit.

A pixel's value depends on the tile that computed it (that tile's input window), so a block is cut from the
*global* :class:`~unetseg.tiling.grid.TileGrid` of the whole image: its sides are multiples of the grid's
step, each of its tiles reads exactly the window it reads in a single-process run (mirrored at the image
border by :func:`~unetseg.tiling.padding.gather_window`), and the block's result equals the same rows and
columns of :func:`unetseg.predict_tiled` (same blend, precision, halo and batch composition).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import UnetsegError
from .grid import AxisPlan, TileGrid
from .padding import gather_window


def block_sides(grid: TileGrid, chunk: int | tuple[int, int]) -> tuple[int, int]:
    """Block (= output chunk) sides near ``chunk`` px: whole multiples of the grid's step per axis, at least one step."""
    ch, cw = (chunk, chunk) if isinstance(chunk, int) else chunk
    if min(ch, cw) < 1:
        raise UnetsegError(f"chunk={chunk!r} must be a positive number of pixels")
    return tuple(max(1, round(c / p.step)) * p.step for c, p in ((ch, grid.rows), (cw, grid.cols)))  # type: ignore[return-value]


def check_block_sides(grid: TileGrid, sides: tuple[int, ...]) -> None:
    """Raise a one-line UnetsegError unless each side is a multiple of the step or covers its whole axis."""
    for side, plan, axis in zip(sides, (grid.rows, grid.cols), ("rows", "columns"), strict=True):
        if side % plan.step and side < plan.length:
            raise UnetsegError(f"output chunks of {side} {axis} are not a multiple of the tile step {plan.step}: "
                               "make them with unetseg.tiling.blocks.block_sides")


@dataclass(frozen=True)
class AxisBlock:
    """The part ``[start, stop)`` of one axis that a block outputs; the tiles ``first..last`` that compute it, whose
    outputs (as the stitcher keeps them) span ``[origin, end)`` of the image."""

    start: int
    stop: int
    first: int
    last: int
    origin: int
    end: int

    @classmethod
    def of(cls, plan: AxisPlan, start: int, side: int, blend: str = "crop") -> "AxisBlock":
        """Under "crop" a pixel comes from the one tile keeping it; under "gaussian" from every tile whose output
        covers it (all of them are in the block, in the same order, so the weighted sums are the same floats)."""
        stop = min(start + side, plan.length)
        step = plan.step
        if blend == "crop":
            first = min(start // step, plan.count - 1)  # a block past the last tile's origin: the last tile
            last = min((stop - 1) // step, plan.count - 1)
            end = plan.length if last == plan.count - 1 else (last + 1) * step
            return cls(start, stop, first, last, first * step, end)
        first = max(0, (start + plan.offset - plan.out_size) // step + 1)
        last = min(plan.count - 1, -(-(stop + plan.offset) // step) - 1)
        return cls(start, stop, first, last, plan.output_range(first)[0], min(plan.output_range(last)[1], plan.length))

    def sub_plan(self, plan: AxisPlan) -> AxisPlan:
        """The tiles ``first..last`` as a plan of their own, in coordinates starting at :attr:`origin`, reading a
        window that starts ``plan.context`` before tile ``first`` (hence context 0: the window holds it)."""
        offset = plan.offset - (self.first * plan.step - self.origin)
        return replace(plan, length=self.end - self.origin, context=0, offset=offset, count=self.last - self.first + 1)

    def window(self, plan: AxisPlan) -> tuple[int, int]:
        """Image range the block's tiles read (may reach past the image; mirrored there)."""
        return plan.input_start(self.first), plan.input_start(self.last) + plan.tile


def blocks(grid: TileGrid, sides: tuple[int, int], blend: str = "crop") -> list[tuple[AxisBlock, AxisBlock]]:
    """The blocks of sides ``sides`` covering the image, in row-major order."""
    rows = [AxisBlock.of(grid.rows, r, sides[0], blend) for r in range(0, grid.rows.length, sides[0])]
    cols = [AxisBlock.of(grid.cols, c, sides[1], blend) for c in range(0, grid.cols.length, sides[1])]
    return [(r, c) for r in rows for c in cols]


def block_input(image: Any, grid: TileGrid, block: tuple[AxisBlock, AxisBlock], pad_mode: str
                ) -> tuple[np.ndarray, TileGrid]:
    """The block's input window (mirrored as in one process) and the grid of its tiles over that window."""
    rb, cb = block
    window = gather_window(image, rb.window(grid.rows), cb.window(grid.cols), pad_mode)
    return window, TileGrid((rb.sub_plan(grid.rows), cb.sub_plan(grid.cols)))


def crop_block(result: np.ndarray, block: tuple[AxisBlock, AxisBlock]) -> np.ndarray:
    """The block's own rows and columns of the result of its tiles (which may start before them)."""
    rb, cb = block
    r0, c0 = rb.start - rb.origin, cb.start - cb.origin
    return result[r0 : r0 + rb.stop - rb.start, c0 : c0 + cb.stop - cb.start]
