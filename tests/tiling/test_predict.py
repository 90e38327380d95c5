import numpy as np
import pytest
import torch
import zarr

import unetseg
from unetseg.engines.tta import tta_transforms
from unetseg.errors import UnetsegError
from unetseg.models.geometry import Geometry
from unetseg.tiling import predict_tiled
from unetseg.tiling.autotile import auto_batch_size
from unetseg.tiling.grid import TileGrid

from ..conftest import tiny_unet, whole_image_probs


def check_tiled_equals_whole(model, image, tile, **kw):
    probs = predict_tiled(model, image, tile_size=tile, output="probs", amp=False, **kw)
    grid = TileGrid.build(image.shape[:2], tile, Geometry.of(model))
    ref = whole_image_probs(model, image, grid.rows.context)
    assert probs.shape == (*image.shape[:2], model.num_classes) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, ref, atol=1e-4)
    if image.size > 100_000:
        return grid
    labels = predict_tiled(model, image, tile_size=tile, amp=False, **kw)
    assert labels.dtype == np.uint8 and labels.shape == image.shape[:2]
    top2 = np.sort(ref, axis=-1)[..., -2:]
    decided = top2[..., 1] - top2[..., 0] > 1e-4  # exact ties may go either way
    np.testing.assert_array_equal(labels[decided], ref.argmax(-1)[decided])
    return grid


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("shape", [(1000, 777), (37, 1500), (1, 300), (50, 41)])
def test_tiled_equals_whole_image_prediction(rng, padding, shape):
    model = tiny_unet(padding, depth=3)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    grid = check_tiled_equals_whole(model, image, 256)
    if shape == (1000, 777):
        assert grid.num_tiles > 4  # really tiled
    if shape == (50, 41):
        assert grid.num_tiles == 1 and max(grid.tile_shape) < 256  # the tile shrank to what the image needs


def test_paper_geometry_depth4_valid_grid_is_stride_aligned():
    model = unetseg.UNet(1, 2, base_channels=2, depth=4, padding="valid")
    grid = TileGrid.build((5000, 5000), 572, Geometry.of(model))
    assert grid.tile_shape == (572, 572) and grid.rows.context == 92 and grid.rows.out_size == 388
    assert grid.rows.step % 16 == 0 and grid.rows.step <= 388


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_rows_read_in_several_windows_give_the_same_result(rng, monkeypatch, padding):
    model = tiny_unet(padding, depth=2)
    image = rng.integers(0, 256, (300, 777), dtype=np.uint8)
    expected = predict_tiled(model, image, tile_size=64, output="probs", amp=False)
    monkeypatch.setattr(unetseg.tiling.splitter, "READ_COLUMNS", 100)  # 2-3 tiles per window read
    np.testing.assert_array_equal(predict_tiled(model, image, tile_size=64, output="probs", amp=False), expected)


def test_same_unet_halo_is_the_receptive_field_rounded_to_the_stride():
    grid = TileGrid.build((2000, 2000), 512, Geometry.of(unetseg.UNet(1, 2, base_channels=2, depth=4, padding="same")))
    assert grid.halo == 96  # margin 92 of the valid twin, rounded up to 16


@pytest.mark.parametrize("tile", [256, 512, 1024])
def test_models_of_unknown_receptive_field_get_two_strides_of_halo_at_any_tile_size(tile):
    geometry = Geometry.of(torch.nn.Conv2d(3, 2, 1))  # like smp: same padding, stride 32, no known field
    grid = TileGrid.build((5000, 5000), tile, geometry)
    assert grid.halo == 64 and grid.rows.keep == tile - 128
    assert TileGrid.build((5000, 5000), tile, geometry, halo=20).halo == 32  # explicit halos round up to the stride


def test_mirror_padding_happens_at_borders_only(rng):
    model = tiny_unet("valid", depth=2)
    image = rng.integers(0, 256, (120, 130), dtype=np.uint8)
    mirrored = predict_tiled(model, image, tile_size=64, output="probs", amp=False, pad_mode="reflect")
    zeros = predict_tiled(model, image, tile_size=64, output="probs", amp=False, pad_mode="constant")
    m = model.margin
    np.testing.assert_allclose(mirrored[m:-m, m:-m], zeros[m:-m, m:-m], atol=1e-5)
    assert np.abs(mirrored[:m] - zeros[:m]).max() > 1e-3


def test_gaussian_blend_agrees_with_crop(rng):
    model = tiny_unet("same", depth=2)
    image = rng.integers(0, 256, (150, 170), dtype=np.uint8)
    crop = predict_tiled(model, image, tile_size=64, output="probs", amp=False)
    gauss = predict_tiled(model, image, tile_size=64, output="probs", amp=False, blend="gaussian")
    np.testing.assert_allclose(gauss.sum(-1), 1, atol=1e-5)
    # with an exact halo every tile's centre is exact; the outer halo pixels see zero padding, weighted low
    assert np.abs(gauss - crop).mean() < 0.02


def test_d4_probs_are_the_average_of_the_eight_transformed_predictions(rng):
    model = tiny_unet("same", depth=2)
    image = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    probs = predict_tiled(model, image, tile_size=64, output="probs", amp=False, tta="d4", pad_mode="constant")
    # a single 64x64 tile: zero-pad by the halo (20 -> 20) and the rest, average the 8 views by hand
    x = torch.from_numpy(np.pad(image / 255.0, ((20, 24), (20, 24))).astype(np.float32))[None, None]
    views = []
    with torch.inference_mode():
        for forward, inverse in tta_transforms("d4"):
            views.append(inverse(torch.softmax(model(forward(x)), 1)))
    expected = torch.stack(views).mean(0)[0].permute(1, 2, 0).numpy()[20:60, 20:60]
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert len(tta_transforms("d4")) == 8 and len(tta_transforms("flips")) == 4
    plain = predict_tiled(model, image, tile_size=64, output="probs", amp=False, pad_mode="constant")
    assert np.abs(plain - probs).max() > 1e-4  # the model is not flip-invariant: TTA really ran


def test_multichannel_input_and_channel_mismatch(rng):
    model = tiny_unet("same", depth=2, in_channels=4)
    image = rng.random((70, 90, 4), dtype=np.float32)
    probs = predict_tiled(model, image, tile_size=64, output="probs", amp=False)
    grid = TileGrid.build(image.shape[:2], 64, Geometry.of(model))
    np.testing.assert_allclose(probs, whole_image_probs(model, image, grid.rows.context), atol=1e-4)
    with pytest.raises(UnetsegError, match="3 channel.*expects 4"):
        predict_tiled(model, image[..., :3])


def test_uint16_is_scaled_like_float(rng):
    model = tiny_unet("same", depth=2)
    image16 = rng.integers(0, 65536, (60, 50), dtype=np.uint16)
    a = predict_tiled(model, image16, tile_size=64, output="probs", amp=False)
    b = predict_tiled(model, image16.astype(np.float32) / 65535, tile_size=64, output="probs", amp=False)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_lazy_input_out_array_and_model_state(rng):
    model = tiny_unet("valid", depth=2).train()
    image = rng.integers(0, 256, (150, 120, 1), dtype=np.uint8)
    expected = predict_tiled(model, image[..., 0], tile_size=64, amp=False)  # fp32: exact on any CPU
    assert model.training  # the caller's mode is restored
    out = zarr.zeros((150, 120), chunks=(32, 32), dtype=np.uint8)
    result = predict_tiled(model, zarr.array(image, chunks=(40, 40, 1)), tile_size=64, out=out, batch_size=3,
                           amp=False)
    assert result is out
    np.testing.assert_array_equal(out[:], expected)


def test_single_class_model_gives_binary_labels(rng):
    torch.manual_seed(1)
    model = unetseg.UNet(1, 1, base_channels=4, depth=2, padding="same").eval()
    image = rng.integers(0, 256, (30, 30), dtype=np.uint8)
    probs = predict_tiled(model, image, tile_size=64, output="probs", amp=False)
    labels = predict_tiled(model, image, tile_size=64, amp=False)
    assert probs.shape == (30, 30, 1) and set(np.unique(labels)) <= {0, 1}
    np.testing.assert_array_equal(labels, probs[..., 0] > 0.5)


def test_auto_tile_size_runs_and_bad_arguments_are_user_errors(rng):
    model = tiny_unet("same", depth=2)
    image = rng.integers(0, 256, (300, 280), dtype=np.uint8)
    labels = predict_tiled(model, image, tile_size="auto", amp=False)
    assert labels.shape == image.shape
    for kwargs in ({"blend": "mean"}, {"output": "logits"}, {"tta": "d8"}, {"tile_size": "big"}, {"amp": "int4"}):
        with pytest.raises(UnetsegError):
            predict_tiled(model, image, **kwargs)


def test_batch_size_auto_is_one_tile_on_cpu_and_any_batch_gives_the_same_labels(rng):
    assert auto_batch_size(torch.device("cpu")) == 1
    assert auto_batch_size(torch.device("cuda")) == 4
    model = tiny_unet("same", depth=2)
    image = rng.integers(0, 256, (200, 170), dtype=np.uint8)
    expected = predict_tiled(model, image, tile_size=64, amp=False)  # default batch_size="auto"
    for batch_size in (3, np.int64(16)):
        np.testing.assert_array_equal(predict_tiled(model, image, tile_size=64, batch_size=batch_size, amp=False),
                                      expected)
    for bad in (0, -2, 2.5, "four", None, True):
        with pytest.raises(UnetsegError, match=f"batch_size={bad!r} must be a positive integer or 'auto'"):
            predict_tiled(model, image, tile_size=64, batch_size=bad)


def test_a_progress_callback_sees_every_tile_and_can_stop_the_run(trained_same_unet):
    import threading

    image = np.random.default_rng(0).integers(0, 255, (300, 700), dtype=np.uint8)
    seen = []
    unetseg.predict_tiled(trained_same_unet, image, tile_size=128, progress=lambda d, t: seen.append((d, t)))
    total = seen[-1][1]
    assert seen[-1] == (total, total) and total > 4 and [d for d, _ in seen] == sorted(d for d, _ in seen)

    class Stop(Exception):
        pass

    def stop(done, total):
        if done >= 2:
            raise Stop

    with pytest.raises(Stop):
        unetseg.predict_tiled(trained_same_unet, image, tile_size=128, progress=stop)
    assert not any(t.name == "unetseg-tile-reader" and t.is_alive() for t in threading.enumerate())


def test_a_tile_size_that_leaves_the_tiles_little_core_warns_once_in_one_line(rng, tmp_path, capsys):
    """A tile barely above twice the halo keeps one stride of each tile (here 300 tiles for a 160 x 120 image): the
    result is right but slow, so the user hears why; tile_size="auto" and tiles with room say nothing."""
    import warnings

    from unetseg.cli import main
    from unetseg.errors import UnetsegWarning

    model = tiny_unet("same", depth=3)
    image = rng.random((160, 120)).astype(np.float32)
    with pytest.warns(UnetsegWarning, match=r"tile_size=64 keeps 8 px of each \d+ px tile .* tile_size=\d+ or more"):
        small = predict_tiled(model, image, tile_size=64, halo="exact", amp=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnetsegWarning)
        np.testing.assert_array_equal(small, predict_tiled(model, image, tile_size=256, halo="exact", amp=False))
        predict_tiled(model, image, halo="exact", amp=False)
    ckpt = unetseg.save_checkpoint(model, tmp_path / "m.pt")
    np.save(tmp_path / "x.npy", image)
    import tifffile

    tifffile.imwrite(tmp_path / "x.tif", image)
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "x.tif"), "--output",
                 str(tmp_path / "o"), "--tile-size", "64", "--halo", "exact", "--amp", "off"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(lines) == 1 and lines[0].startswith("unetseg predict: warning: tile_size=64 keeps 8 px"), lines
