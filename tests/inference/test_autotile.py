import pytest

import unetseg
from unetseg.inference.autotile import CANDIDATES, balanced_tile
from unetseg.inference.grid import Geometry, TileGrid

MODELS = {
    "valid": lambda: unetseg.UNet(in_channels=1, num_classes=2, padding="valid", base_channels=4, depth=3),
    "same": lambda: unetseg.UNet(in_channels=1, num_classes=2, padding="same", base_channels=4, depth=3),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
@pytest.mark.parametrize("shape", [(2048, 2048), (1000, 777), (37, 1500), (300, 300)])
def test_balanced_tile_is_the_smallest_with_as_few_tiles(kind, shape):
    geometry = Geometry.of(MODELS[kind]())
    for candidate in CANDIDATES:
        tile = balanced_tile(shape, candidate, geometry, "exact")
        count = TileGrid.build(shape, candidate, geometry, "exact").num_tiles
        assert tile <= candidate
        assert TileGrid.build(shape, tile, geometry, "exact").num_tiles <= count  # never more tiles
        assert TileGrid.build(shape, tile - geometry.stride, geometry, "exact").num_tiles > count  # none smaller


def test_balanced_tile_spares_the_work_past_the_image_end():
    geometry = Geometry.of(MODELS["same"]())
    halo = geometry.halo_for("exact")
    tile = balanced_tile((2048, 2048), 2048, geometry, "exact")
    grid = TileGrid.build((2048, 2048), tile, geometry, "exact")
    assert grid.num_tiles == 4 and tile < 2048
    assert 2 * (tile - 2 * halo) - 2048 < 2 * geometry.stride  # two tiles' cores cover the side, barely
