import types

import numpy as np
import pytest
import torch

import unetseg
from unetseg.data.normalization import Normalization
from unetseg.engines.contract import ForwardSpec
from unetseg.models.geometry import Geometry
from unetseg.tiling import autotile
from unetseg.tiling.autotile import CANDIDATES, balanced_tile, seconds_per_tile
from unetseg.tiling.grid import TileGrid

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


class FirstCallSlowGraph:
    """A stand-in inference graph whose first call at each shape takes 0.3 s of a fake clock and later ones
    0.01 s, as oneDNN's first call is slow while it JITs kernels. No real time passes."""

    name = "torch"

    def __init__(self) -> None:
        self.device, self.precision, self.compiled = torch.device("cpu"), "bf16", False
        self.net = torch.nn.Identity()
        self.seen: set = set()
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def __call__(self, x):
        self.now += 0.01 if x.shape in self.seen else 0.3
        self.seen.add(x.shape)
        return x


@pytest.mark.parametrize("shape", [(64, 64), (96, 96)])
def test_tiles_are_timed_after_a_warm_up_at_their_shape(shape, monkeypatch):
    graph = FirstCallSlowGraph()
    monkeypatch.setattr(autotile, "time", types.SimpleNamespace(perf_counter=graph.clock))
    spec = ForwardSpec.of(Normalization(), np.uint8, np.dtype(np.uint8), 1, labels=True)
    seconds_per_tile(graph, f"first-call-slow-{shape}", (32, 32), spec=spec, batch_size=1)  # the base key's first
    assert seconds_per_tile(graph, f"first-call-slow-{shape}", shape, spec=spec, batch_size=1) == pytest.approx(0.01)


def test_a_tile_over_the_memory_budget_is_refused_without_making_probe_tiles(monkeypatch):
    """Every plan asks again for a candidate over the budget (None is not kept): it must cost nothing, not a batch of
    random tiles of its size (80 ms for 4096^2)."""
    graph = FirstCallSlowGraph()
    monkeypatch.setattr(autotile, "time", types.SimpleNamespace(perf_counter=graph.clock))
    spec = ForwardSpec.of(Normalization(), np.uint8, np.dtype(np.uint8), 1, labels=True)
    seconds_per_tile(graph, "over-budget", (32, 32), spec=spec, batch_size=1)  # the bytes per pixel, measured once
    made = []
    real = autotile.probe_tiles
    monkeypatch.setattr(autotile, "probe_tiles", lambda *a, **k: made.append(a) or real(*a, **k))
    monkeypatch.setattr(autotile, "memory_budget", lambda device: -1)  # (the stand-in has no activations)
    for _ in range(3):
        assert seconds_per_tile(graph, "over-budget", (256, 256), spec=spec, batch_size=1) is None
    assert made == []
