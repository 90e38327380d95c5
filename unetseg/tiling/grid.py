"""Tile geometry: how big the tiles are, where they start, and which part of each output is kept.

Coordinates are image pixels. A tile row ``i`` reads input rows ``[i*step - context, i*step - context + tile)``
(mirrored where that leaves the image) and contributes output rows ``[i*step, i*step + step)`` (the last
row: up to the image end). ``step`` and every tile origin are multiples of the model's stride, so each
tile sees the same pooling grid as a single pass over the whole padded image: tiled == whole-image.

* valid padding (the paper): ``context = margin``; the model's output *is* the kept region plus, for
  step < output size, a strip that the next tile recomputes.
* same padding: ``context = halo``; the model's output has the tile's size and its centre
  ``[halo, tile - halo)`` is kept. With ``halo >= receptive-field radius`` no kept pixel ever sees
  the zero padding of the convolutions, so the result is again exactly the whole-image prediction.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from ..errors import UnetsegWarning
from ..models.geometry import Geometry, round_up


@dataclass(frozen=True)
class AxisPlan:
    """Tiling of one image axis of ``length`` pixels."""

    length: int
    tile: int       # model input size along this axis
    context: int    # input pixels before the first kept output pixel (margin or halo)
    offset: int     # model-output index of the first kept pixel (0 valid, halo same)
    out_size: int   # model output size along this axis
    keep: int       # kept output pixels of a tile (out_size for valid; tile - 2*halo for same)
    step: int       # distance between tile origins (multiple of the stride, <= keep)
    count: int      # number of tiles

    def input_start(self, i: int) -> int:
        return i * self.step - self.context

    def kept(self, i: int) -> tuple[int, int]:
        """Image range [a, b) tile ``i`` contributes under crop blending (abutting, covering the axis)."""
        a = i * self.step
        b = self.length if i == self.count - 1 else a + self.step
        return a, b

    def output_range(self, i: int) -> tuple[int, int]:
        """Image range covered by tile ``i``'s whole model output (may exceed the image)."""
        a = i * self.step - self.offset
        return a, a + self.out_size


def plan_axis(length: int, tile: int, geometry: Geometry, halo: int) -> AxisPlan:
    """Tile one axis with tiles of (at most) ``tile`` input pixels; smaller if the axis needs less."""
    stride = geometry.stride
    if geometry.padding == "valid":
        margin = geometry.margin
        tile = geometry.nearest_valid(tile)
        while tile - 2 * margin < stride:  # every step must advance by at least one stride
            tile = geometry.smallest_valid_at_least(tile + 1)
        single = geometry.smallest_valid_at_least(length + 2 * margin)
        tile = min(tile, single)
        out_size = tile - 2 * margin
        keep, context, offset = out_size, margin, 0
    else:
        tile = max(round_up(tile, stride), 2 * halo + stride)
        tile = min(tile, round_up(length + 2 * halo, stride))
        out_size, keep, context, offset = tile, tile - 2 * halo, halo, halo
    step = max(stride, keep // stride * stride)
    count = 1 if length <= keep else 1 + math.ceil((length - keep) / step)
    return AxisPlan(length, tile, context, offset, out_size, keep, step, count)


@dataclass(frozen=True)
class TileGrid:
    """The axis plans of an image (rows, columns) or a volume (slices, rows, columns); tiles are batched in C order
    (the last axis fastest), so finished bands (2D) or slabs (3D) follow one another along the first axis."""

    axes: tuple[AxisPlan, ...]

    @classmethod
    def build(cls, shape: tuple[int, ...], tile: int | tuple[int, ...], geometry: Geometry | tuple[Geometry, ...],
              halo: int | str = "auto") -> TileGrid:
        """The grid of an image of ``shape`` (its spatial axes) at ``tile`` (one size, or one per axis), for a
        model of ``geometry`` (one for every axis, or one per axis: :meth:`Geometry.axes`)."""
        dims = len(shape)
        tiles = (tile,) * dims if isinstance(tile, int) else tuple(tile)
        geometries = (geometry,) * dims if isinstance(geometry, Geometry) else tuple(geometry)
        return cls(tuple(plan_axis(n, t, g, g.halo_for(halo))
                         for n, t, g in zip(shape, tiles, geometries, strict=True)))

    @property
    def rows(self) -> AxisPlan:
        return self.axes[-2]

    @property
    def cols(self) -> AxisPlan:
        return self.axes[-1]

    @property
    def shape(self) -> tuple[int, ...]:
        """The image's spatial shape."""
        return tuple(a.length for a in self.axes)

    @property
    def tile_shape(self) -> tuple[int, ...]:
        return tuple(a.tile for a in self.axes)

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(a.count for a in self.axes)

    @property
    def num_tiles(self) -> int:
        return math.prod(self.counts)

    @property
    def computed_pixels(self) -> int:
        """Input pixels (voxels) the tiles compute, their context included."""
        return self.num_tiles * math.prod(self.tile_shape)

    @property
    def halo(self) -> int:
        """The in-plane halo (px per side) of same-padding tiles; 0 for valid padding."""
        return self.cols.offset


def input_pixels(shape: tuple[int, ...], tile: int, geometry: Geometry | tuple[Geometry, ...],
                 halo: int | str = "auto") -> int:
    """Input pixels overlap-tile prediction computes over an image of ``shape``: its tiles, with their context,
    at ``tile`` px tiles and ``halo`` (what a prediction costs, for time budgets)."""
    return TileGrid.build(shape, tile, geometry, halo).computed_pixels


def wasteful_tiles(grid: TileGrid, tile_size: int) -> str | None:
    """A one-line warning when a requested ``tile_size`` leaves the tiles of an axis that needs several of them a
    core (the part each keeps) under a quarter of their side: they compute over 4x the pixels they keep along that
    axis (a small tile barely above twice the halo or margin runs tens of times slower than one with room); None
    otherwise."""
    tight = [(n, a) for n, a in enumerate(grid.axes) if a.count > 1 and 4 * a.step < a.tile]
    if not tight:
        return None
    computed = grid.computed_pixels / math.prod(grid.shape)
    n, axis = tight[0]
    name = ("slices", "rows", "columns")[n + 3 - len(grid.axes)]
    roomy = round_up(2 * (axis.tile - axis.step), 16)  # the context then takes at most half of each tile
    return (f"tile_size={tile_size} keeps {axis.step} px of each {axis.tile} px tile along the {name} "
            f"({axis.tile - axis.step} px of context): {grid.num_tiles} tiles computing {computed:.0f}x the "
            f"{'volume' if len(grid.axes) == 3 else 'image'}'s pixels; tile_size={roomy} or more keeps at least "
            "half of each tile")


def warn_wasteful(grid: TileGrid, tile_size: int | str) -> None:
    """Warn (:class:`~unetseg.errors.UnetsegWarning`, :func:`wasteful_tiles`) when a requested tile size leaves
    the tiles little room; tile_size="auto" never does."""
    message = None if tile_size == "auto" else wasteful_tiles(grid, int(tile_size))
    if message:
        warnings.warn(message, UnetsegWarning, stacklevel=4)

