"""nnU-Net's normalisation per modality: CT statistics from the foreground voxels only (clip to their 0.5/99.5
percentiles, z-score with their mean/std), the same arithmetic on the host and in the tile pipeline, a checkpoint
round trip; per-volume z-score resolved on each image."""
import numpy as np
import pytest
import torch

from unetseg.data.normalization import Normalization
from unetseg.data.volumes import VolumePatches, volume_bands
from unetseg.engines.contract import ForwardSpec
from unetseg.tiling.forward import normalise

from .nifti_cases import ct_case


def ct_stats(images, masks):
    return Normalization.from_images([volume_bands(v) for v in images], method="ct", foreground=masks,
                                     ignore_index=255)


def test_ct_statistics_come_from_foreground_voxels_only():
    cases = [ct_case(i) for i in range(3)]
    images, masks = [c[0] for c in cases], [c[1] for c in cases]
    norm = ct_stats(images, masks)
    fg = np.concatenate([im[m > 0] for im, m in zip(images, masks, strict=True)]).astype(np.float64)
    scale = 32767.0  # int16 volumes are scaled by their dtype's maximum, as every integer image
    assert norm.mean[0] * scale == pytest.approx(fg.mean(), rel=1e-9)
    assert norm.std[0] * scale == pytest.approx(fg.std(), rel=1e-9)
    low, high = np.percentile(fg, [0.5, 99.5])
    assert norm.clip is not None
    assert norm.clip[0][0] * scale == pytest.approx(low) and norm.clip[1][0] * scale == pytest.approx(high)
    # background voxels (air, metal outside the body) and ignored voxels change nothing
    other = [np.where(m > 0, im, np.int16(-3000)) for im, m in zip(images, masks, strict=True)]
    ignored = [np.where(m > 0, m, 255).astype(np.uint8) for m in masks]
    assert ct_stats(other, ignored) == norm
    shifted = [np.where(m > 0, im + np.int16(100), im) for im, m in zip(images, masks, strict=True)]
    assert ct_stats(shifted, masks).mean[0] * scale == pytest.approx(fg.mean() + 100)


def test_ct_clip_then_zscore_on_host_and_in_the_tile_pipeline_alike():
    image, labels = ct_case(0)
    norm = ct_stats([image], [labels])
    out = norm.apply(image[..., None])  # (Z, Y, X, C)
    lo, hi = norm.bounds(image.dtype)
    expected = (np.clip(image.astype(np.float64), lo[0], hi[0]) / 32767.0 - norm.mean[0]) / norm.std[0]
    np.testing.assert_allclose(out[..., 0], expected, atol=1e-4)
    assert out.max() == pytest.approx((norm.clip[1][0] - norm.mean[0]) / norm.std[0], rel=1e-5)  # metal is clipped
    spec = ForwardSpec.of(norm, image.dtype, np.dtype(np.float32), 1, dims=3)
    tiles = torch.from_numpy(image.astype(np.float32)[None, ..., None])
    tiled = normalise(tiles, spec, None).numpy()[0, 0]
    np.testing.assert_array_equal(tiled, out[..., 0])  # bit for bit


def test_normalisation_round_trips_through_its_record():
    for norm in (Normalization(mean=(0.1,), std=(0.2,), clip=((-0.5,), (0.9,))),
                 Normalization(mean=(0.0, 0.0), std=(1.0, 1.0), scale=1.0, per_image=True), Normalization()):
        assert Normalization.from_dict(norm.to_dict()) == norm
    assert "clip" not in Normalization().to_dict()  # older records unchanged


def test_zscore_is_each_volumes_own():
    a, b = ct_case(0)[0], (ct_case(1)[0].astype(np.float32) * 3 + 500)
    norm = Normalization.from_images([volume_bands(a)], method="zscore", scale=1.0)
    assert norm.per_image
    for volume in (a, b):
        out = norm.resolve(volume, 3).apply(volume)
        assert out.mean() == pytest.approx(0, abs=1e-4) and out.std() == pytest.approx(1, abs=1e-4)
    patches = VolumePatches([a, b], [np.zeros(a.shape, np.uint8)] * 2, None, input_shape=(12, 20, 24),
                            margins=(0, 0, 0), normalization=norm, augment=None, patches_per_epoch=8)
    for i in range(8):
        item = patches.sample(i)
        assert item["image"].mean() == pytest.approx(0, abs=1e-4)  # the crop is the whole volume here


def test_ct_needs_the_masks():
    with pytest.raises(ValueError, match="needs the training masks"):
        Normalization.from_images([np.zeros((4, 4), np.int16)], method="ct")


@pytest.mark.parametrize("engine", ["torch", "openvino"])
def test_predict_clips_as_the_checkpoint_says(engine):
    """Tiled prediction with a CT normalisation == prediction of the volume clipped beforehand (torch: exactly)."""
    if engine == "openvino":
        pytest.importorskip("openvino")
    import unetseg

    torch.manual_seed(0)
    model = unetseg.UNet(1, 3, base_channels=2, depth=2, padding="same", spatial_dims=3).eval()
    image, labels = ct_case(0, (12, 24, 24))
    norm = ct_stats([image], [labels])
    low, high = norm.bounds(image.dtype)
    clipped = np.clip(image.astype(np.float32), low[0], high[0])
    unclipped = Normalization(mean=norm.mean, std=norm.std, scale=32767.0)
    options = dict(tile_size=48, amp=False, halo="exact", output="probs")  # 18 tiles (a 4-voxel core: 108)
    reference = unetseg.predict_tiled(model, clipped, normalization=unclipped, engine="torch", **options)
    probs = unetseg.predict_tiled(model, image, normalization=norm, engine=engine, **options)
    if engine == "torch":
        np.testing.assert_array_equal(probs, reference)
    else:
        np.testing.assert_allclose(probs, reference, atol=1e-4)
    plain = unetseg.predict_tiled(model, image, normalization=unclipped, engine="torch", **options)
    assert not np.allclose(plain, reference, atol=1e-4)  # the clip matters on this volume (air, metal)


def test_predict_resolves_zscore_on_each_volume():
    import unetseg

    torch.manual_seed(0)
    model = unetseg.UNet(1, 3, base_channels=2, depth=2, padding="same", spatial_dims=3).eval()
    zscore = Normalization(mean=(0.0,), std=(1.0,), per_image=True)
    options = dict(tile_size=48, amp=False, halo="exact", output="probs", engine="torch")
    for seed in (0, 1):
        image = ct_case(seed, (12, 24, 24))[0]
        own = zscore.resolve(image, 3)
        assert own.mean[0] * 32767 == pytest.approx(image.mean()) and not own.per_image
        np.testing.assert_array_equal(unetseg.predict_tiled(model, image, normalization=zscore, **options),
                                      unetseg.predict_tiled(model, image, normalization=own, **options))
