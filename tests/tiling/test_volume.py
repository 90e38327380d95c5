"""Volumes through the N-D tiler: tiled == one pass over the whole mirror-padded volume (fp32), per-axis geometry
of anisotropic 3D U-Nets, slab-wise streaming into a destination, probabilities, TTA, nodata, and one-line errors."""
import numpy as np
import pytest
import torch

import unetseg
from unetseg.errors import UnetsegError, UnetsegWarning
from unetseg.models.anisotropy import pooling_plan
from unetseg.models.geometry import Geometry
from unetseg.tiling import TileOptions, predict_tiled, tiled
from unetseg.tiling.grid import TileGrid

from ..conftest import randomized


def unet3d(padding: str, spacing=(1.0, 1.0, 1.0), depth: int = 2, in_channels: int = 1, num_classes: int = 3):
    torch.manual_seed(0)
    pooling, kernels = pooling_plan(spacing, depth)
    return randomized(unetseg.UNet(in_channels, num_classes, base_channels=2, depth=depth, padding=padding,
                                   spatial_dims=3, pooling=pooling, kernels=kernels), 0)


def whole_volume_probs(model, volume: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Reference: the model once, eagerly in fp32, over the np.pad-reflected volume, cropped. DxHxWxK."""
    geometries = Geometry.axes(model)
    pads = []
    for n, axis, g in zip(volume.shape[:3], grid.axes, geometries, strict=True):
        pads.append((axis.context, g.smallest_valid_at_least(n + 2 * axis.context) - n - axis.context))
    x = volume.astype(np.float32) / 255.0
    x = x[..., None] if x.ndim == 3 else x
    x = np.pad(x, (*pads, (0, 0)), mode="reflect")
    with torch.inference_mode():
        logits = model(torch.from_numpy(x).permute(3, 0, 1, 2)[None].contiguous()).float()
    probs = torch.softmax(logits, 1)[0].permute(1, 2, 3, 0).numpy()
    crop = tuple(slice(a.offset, a.offset + n) for a, n in zip(grid.axes, volume.shape[:3], strict=True))
    return probs[crop]


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 1.0, 1.0)])
def test_tiled_equals_whole_volume(rng, padding, spacing):
    model = unet3d(padding, spacing)
    # an anisotropic model's z halo is small, so its volume is deeper to span several slabs
    volume = rng.integers(0, 256, (23, 41, 37) if spacing[0] == 1 else (60, 30, 29), dtype=np.uint8)
    tile = 24 if padding == "valid" else 56  # same: the exact halo (20 voxels here) on both sides, 16 kept
    result = tiled(model, volume, TileOptions(tile_size=tile, output="probs", amp=False, halo="exact"))
    grid = TileGrid.build(volume.shape, result.report.tile_shape, Geometry.axes(model), "exact")
    assert grid.num_tiles > 4 and grid.axes[0].count > 1  # really tiled, over several slabs
    ref = whole_volume_probs(model, volume, grid)
    assert result.output.shape == (*volume.shape, 3) and result.output.dtype == np.float32
    np.testing.assert_allclose(result.output, ref, atol=1e-5)
    labels = predict_tiled(model, volume, tile_size=tile, amp=False, halo="exact")
    assert labels.shape == volume.shape and labels.dtype == np.uint8
    top2 = np.sort(ref, axis=-1)[..., -2:]
    decided = top2[..., 1] - top2[..., 0] > 1e-5
    np.testing.assert_array_equal(labels[decided], ref.argmax(-1)[decided])
    assert result.valid_pixels == volume.size


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_2_5d_network_tiled_equals_whole_volume(rng, padding):
    """Neighbouring slices as channels: the first convolution spans 5 slices unpadded, so z is a valid axis (2 slices
    of context per side, mirrored at the volume's ends) while the plane keeps the network's padding."""
    torch.manual_seed(0)
    model = randomized(unetseg.UNet(1, 3, base_channels=2, depth=2, padding=padding, spatial_dims=3,
                                    pooling=[[1, 2, 2]] * 2, kernels=[[1, 3, 3]] * 3, context_slices=2), 0)
    z, y, _ = Geometry.axes(model)
    assert (z.padding, z.margin, z.stride) == ("valid", 2, 1) and y.padding == padding
    volume = rng.integers(0, 256, (70, 41, 37), dtype=np.uint8)  # deep enough for several slabs of one tile size
    tile = 24 if padding == "valid" else 56
    result = tiled(model, volume, TileOptions(tile_size=tile, output="probs", amp=False, halo="exact"))
    grid = TileGrid.build(volume.shape, result.report.tile_shape, Geometry.axes(model), "exact")
    assert grid.axes[0].count > 1 and grid.axes[0].context == 2
    np.testing.assert_allclose(result.output, whole_volume_probs(model, volume, grid), atol=1e-5)
    labels = predict_tiled(model, volume, tile_size=tile, amp=False, halo="exact")
    assert labels.shape == volume.shape


def test_anisotropic_model_has_its_geometry_per_axis():
    pooling, kernels = pooling_plan((5.0, 1.0, 1.0), 4)
    assert pooling == [[1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert kernels[0] == [1, 3, 3] and kernels[-1] == [3, 3, 3]
    model = unetseg.UNet(1, 2, base_channels=2, depth=4, padding="same", spatial_dims=3, pooling=pooling,
                         kernels=kernels)
    z, y, x = Geometry.axes(model)
    assert (z.stride, y.stride, x.stride) == (4, 16, 16)
    assert z.field_radius < y.field_radius == x.field_radius  # 1-voxel kernels along z at the first levels
    grid = TileGrid.build((30, 100, 100), 64, Geometry.axes(model), "exact")
    assert all(a.step % g.stride == 0 and a.input_start(1) % g.stride == 0 for a, g in zip(grid.axes, (z, y, x), strict=True))


class SlabRecorder:
    """A destination that records the slabs written to it (a streaming writer's view)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype, self.slabs = shape, np.dtype(dtype), []
        self.data = np.zeros(shape, dtype)

    def __setitem__(self, key, value):
        assert isinstance(key, slice) and value.shape == (key.stop - key.start, *self.shape[1:])
        self.slabs.append((key.start, key.stop))
        self.data[key] = value


def test_slabs_stream_in_order_into_the_destination(rng):
    model = unet3d("same")
    volume = rng.integers(0, 256, (40, 20, 24), dtype=np.uint8)
    sink = SlabRecorder(volume.shape, np.uint8)
    assert predict_tiled(model, volume, tile_size=16, amp=False, halo=4, out=sink) is sink
    starts = [a for a, _ in sink.slabs]
    assert len(sink.slabs) > 2 and starts == sorted(starts) and sink.slabs[-1][1] == 40
    assert all(b == c for (_, b), (c, _) in zip(sink.slabs[:-1], sink.slabs[1:], strict=True))  # contiguous, each slab once
    np.testing.assert_array_equal(sink.data, predict_tiled(model, volume, tile_size=16, amp=False, halo=4))


def test_multichannel_volume_and_flip_tta(rng):
    model = unet3d("same", in_channels=2, num_classes=1)
    volume = rng.random((12, 17, 19, 2), dtype=np.float32)
    plain = predict_tiled(model, volume, tile_size=16, amp=False, halo=4, output="probs")
    assert plain.shape == (12, 17, 19, 1)
    flips = predict_tiled(model, volume, tile_size=16, amp=False, halo=4, output="probs", tta="flips")
    assert flips.shape == plain.shape and not np.allclose(flips, plain)
    labels = predict_tiled(model, volume, tile_size=16, amp=False, halo=4)
    np.testing.assert_array_equal(labels, (plain[..., 0] > 0.5).astype(np.uint8))


def test_nan_voxels_get_the_nodata_label(rng):
    model = unet3d("same")
    volume = rng.random((10, 16, 16), dtype=np.float32)
    volume[3, 4:9, 5] = np.nan
    labels = predict_tiled(model, volume, tile_size=16, amp=False)
    assert (labels[3, 4:9, 5] == 255).all() and (labels != 255).sum() == volume.size - 5


@pytest.mark.parametrize("kwargs, message", [
    (dict(blend="gaussian"), "crop blending"),
    (dict(engine="onnxruntime"), "torch or the OpenVINO engine"),
    (dict(output="uncertainty"), "output='labels' or 'probs'"),
    (dict(amp="int8"), "amp='int8'"),
])
def test_unsupported_volume_options_are_one_line_errors(kwargs, message):
    with pytest.raises(UnetsegError, match=message) as err:
        predict_tiled(unet3d("same"), np.zeros((8, 8, 8), np.uint8), **kwargs)
    assert "\n" not in str(err.value)


def test_openvino_runs_volumes_with_the_forward_stage_in_its_graph(rng):
    pytest.importorskip("openvino")
    model = unet3d("same", num_classes=3)
    volume = rng.integers(0, 256, (20, 30, 26), dtype=np.uint8)
    volume[2, 3:6, 4] = 7
    options = dict(tile_size=56, amp=False, halo="exact", nodata=7)
    ref = predict_tiled(model, volume, **options)
    result = tiled(model, volume, TileOptions(engine="openvino", **options))
    assert result.report.engine == "openvino" and result.output.shape == volume.shape and result.report.num_tiles > 1
    assert (result.output[2, 3:6, 4] == 255).all()  # nodata through the fused graph's invalid input
    assert (result.output == ref).mean() > 0.999  # fp32 in both; only float rounding differs
    probs = predict_tiled(model, volume, engine="openvino", output="probs", **options)
    np.testing.assert_allclose(probs, predict_tiled(model, volume, output="probs", **options), atol=1e-4)


@pytest.mark.parametrize("shape", [(143, 208, 176), (40, 300, 260), (9, 64, 64)])
def test_auto_tiles_compute_the_fewest_voxels_that_fit_the_budget(shape):
    from unetseg.tiling.volume import auto_volume_tile, axis_tilings

    model = unetseg.UNet(1, 3, base_channels=8, depth=3, padding="same", spatial_dims=3)
    geometries, budget = Geometry.axes(model), 4_000_000
    tile = auto_volume_tile(shape, geometries, 16, budget)
    grid = TileGrid.build(shape, tile, geometries, 16)
    assert grid.tile_shape == tile and np.prod(tile) <= budget

    def computed(g: TileGrid) -> int:
        return g.num_tiles * int(np.prod(g.tile_shape))

    # no grid of cubes (the old rule's shape) or of any per-axis tiling that fits computes fewer voxels
    for side in range(16, 400, 8):
        cube = TileGrid.build(shape, side, geometries, 16)
        assert np.prod(cube.tile_shape) > budget or computed(cube) >= computed(grid)
    for tiling in axis_tilings(shape[0], geometries[0], 16):
        assert tiling[0] % geometries[0].stride == 0
    assert axis_tilings(shape[0], geometries[0], 16)[-1][1] == 1  # one tile over the whole axis is a choice


def test_half_precision_activations_let_auto_tiles_hold_twice_the_voxels():
    """The activation budget counts bytes: under bf16 a tile may hold twice fp32's voxels, so the brain volume
    (143 x 208 x 176, halo 32) runs as 2 tiles (3.2x its voxels computed) instead of 8 (5.3x)."""
    from unetseg.tiling.options import TileOptions
    from unetseg.tiling.volume import plan_volume, tile_voxels

    model = unetseg.UNet(1, 3, base_channels=8, depth=3, padding="same", spatial_dims=3)
    assert tile_voxels(model, 1, 2) == 2 * tile_voxels(model, 1, 4)
    volume = np.zeros((143, 208, 176), np.uint8)
    plans = {amp: plan_volume(model, volume, TileOptions(amp=amp, halo=32, engine="torch")) for amp in ("bf16", False)}
    voxels = {amp: int(np.prod(plan.grid.tile_shape)) for amp, plan in plans.items()}
    assert voxels["bf16"] <= tile_voxels(model, 1, 2) and voxels[False] <= tile_voxels(model, 1, 4)
    assert plans["bf16"].grid.num_tiles == 2 and plans[False].grid.num_tiles == 8


def test_wrong_volume_shapes_are_one_line_errors():
    with pytest.raises(UnetsegError, match=r"DxHxW or DxHxWxC, got shape \(8, 8\)"):
        predict_tiled(unet3d("same"), np.zeros((8, 8), np.uint8))
    with pytest.raises(UnetsegError, match="has 3 channel"):
        predict_tiled(unet3d("same"), np.zeros((8, 8, 8, 3), np.uint8))


class FullJournal:
    """A journal that already records every slab (a run killed after its last slab, before the store finished)."""

    def __init__(self, starts, counts):
        self.starts, self.counts = starts, counts

    def done(self):
        return {(z0, 0): {"class_counts": self.counts} for z0 in self.starts}

    def record(self, *args):
        raise AssertionError("no slab is left to record")


def test_a_journal_holding_every_slab_builds_no_engine(rng, monkeypatch):
    from unetseg.tiling import volume as volume_module

    model = unet3d("same")
    volume = rng.integers(0, 256, (40, 20, 24), dtype=np.uint8)
    plan = volume_module.plan_volume(model, volume, TileOptions(tile_size=16, amp=False, halo=4, engine="torch"))
    starts = [plan.grid.axes[0].kept(i)[0] for i in range(plan.grid.axes[0].count)]
    monkeypatch.setattr(volume_module, "build_engine", lambda *a, **k: pytest.fail("an engine was built"))
    out = np.zeros(volume.shape, np.uint8)
    result = volume_module.run_volume(model, volume, plan, out=out, journal=FullJournal(starts, [1, 2, 3]))
    assert result.class_counts.tolist() == [len(starts), 2 * len(starts), 3 * len(starts)]


def test_a_halo_larger_than_any_fitting_tile_takes_the_grid_that_computes_least_within_free_memory(monkeypatch):
    """A depth-4 model's exact halo (96 voxels) around a 24 x 96 x 96 volume: no tile fits the preferred bound,
    and the smallest tiles (the old fallback: 72 tiles of 208^3, 2200x the volume) are the slowest choice; the
    grid that computes least within the memory bound is taken, and the plan warns that the halo is the cause."""
    from unetseg.tiling.options import TileOptions
    from unetseg.tiling.volume import auto_volume_tile, plan_volume

    model = unetseg.UNet(1, 3, base_channels=16, depth=4, padding="same", spatial_dims=3)
    geometries, shape = Geometry.axes(model), (24, 96, 96)
    smallest = TileGrid.build(shape, (208, 208, 208), geometries, "exact")  # the old rule's choice
    assert smallest.num_tiles == 72
    unbounded = auto_volume_tile(shape, geometries, "exact", 1000, most=None)
    assert unbounded == (224, 288, 288)  # one tile over the whole volume and its context computes least
    within = TileGrid.build(shape, auto_volume_tile(shape, geometries, "exact", 1000, most=15_000_000), geometries,
                            "exact")
    assert np.prod(within.tile_shape) <= 15_000_000 and within.computed_pixels < smallest.computed_pixels / 10
    # even the smallest tiles exceed free memory: at most twice their voxels, for 20x fewer computed
    over = TileGrid.build(shape, auto_volume_tile(shape, geometries, "exact", 1000, most=1000), geometries, "exact")
    assert np.prod(over.tile_shape) <= 2 * 208**3 and over.computed_pixels < smallest.computed_pixels / 20
    monkeypatch.setattr("unetseg.tiling.volume.memory_budget", lambda device: 6 * 2**30)  # this machine's free RAM
    with pytest.warns(UnetsegWarning, match=r"the halo \(96x96x96 voxels per side.*over the tile memory bound"):
        plan = plan_volume(model, np.zeros(shape, np.uint8), TileOptions(halo="exact", engine="torch", amp=False))
    assert plan.grid.computed_pixels < smallest.computed_pixels / 10
