import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI version check on import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from unetseg.config.data import AugmentConfig  # noqa: E402
from unetseg.data.augment import (  # noqa: E402
    Augmenter,
    PaperElasticDeform,
    _Affine,
    build_augmentation,
    remap_channels,
    seed_pipeline,
)


def blobs(shape=(64, 64), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return np.kron(rng.integers(0, classes, size=(shape[0] // 8, shape[1] // 8)), np.ones((8, 8))).astype(np.uint8)


def all_on(**overrides):
    cfg = {name: {"p": 1.0} for name in AugmentConfig.model_fields}
    cfg.update(overrides)
    return AugmentConfig.model_validate(cfg)


@pytest.mark.parametrize("dtype,channels", [(np.uint8, None), (np.uint16, 1), (np.float32, 3), (np.uint16, 5),
                                            (np.float32, 7)])
def test_pipeline_keeps_dtype_shape_and_integer_masks(dtype, channels):
    rng = np.random.default_rng(1)
    shape = (64, 64) if channels is None else (64, 64, channels)
    top = {np.uint8: 255, np.uint16: 4095, np.float32: 1.0}[dtype]
    image = (rng.random(shape) * top).astype(dtype)
    mask = blobs()
    weight = rng.random((64, 64)).astype(np.float32)
    aug = Augmenter(all_on(), ignore_index=255)
    for seed in range(4):
        out = aug(image, mask, weight=weight, seed=seed)
        assert out["image"].dtype == image.dtype and out["image"].shape == image.shape
        assert np.isfinite(out["image"].astype(np.float64)).all()
        assert out["mask"].dtype == mask.dtype and out["mask"].shape == mask.shape
        assert set(np.unique(out["mask"])) <= set(range(4)) | {255}
        # nearest interpolation: every weight is an input weight or the fill
        assert np.isin(out["weight"], np.append(weight, 255)).all()


def test_elastic_masks_stay_labels_and_image_is_smooth():
    mask = blobs(classes=5)
    instances = np.arange(64 * 64, dtype=np.int32).reshape(64, 64)
    pipeline = A.Compose([PaperElasticDeform(sigma=10, grid=3, p=1.0)], additional_targets={"instances": "mask"},
                         seed=0)
    out = pipeline(image=mask.astype(np.float32), mask=mask, instances=instances)
    assert set(np.unique(out["mask"])) <= set(range(5))
    assert np.isin(out["instances"], instances).all()
    assert not np.array_equal(out["mask"], mask)
    # image (bicubic) and mask (nearest) follow the same field
    assert np.mean(np.abs(out["image"] - out["mask"]) < 0.5) > 0.9


def test_elastic_displacements_follow_the_paper():
    """Grid vectors ~ N(0, sigma); cv2.resize puts grid node (i, j) at the centre of cell (i, j)."""
    sigma, grid, size = 10.0, 3, 90
    t = PaperElasticDeform(sigma=sigma, grid=grid, p=1.0)
    t.set_random_seed(123)
    xs = np.arange(size, dtype=np.float32)
    nodes = []
    for _ in range(300):
        p = t.get_params_dependent_on_data({"shape": (size, size)}, {})
        dx = p["map_x"] - xs[None, :]
        dy = p["map_y"] - xs[:, None]
        centres = [15, 45, 75]
        nodes.append(np.stack([dx[np.ix_(centres, centres)], dy[np.ix_(centres, centres)]]))
        # smooth: neighbouring pixels move almost alike
        assert np.abs(np.diff(dx, axis=1)).max() < 3
    nodes = np.stack(nodes)
    assert abs(nodes.mean()) < 1.0
    assert nodes.std() == pytest.approx(sigma, rel=0.1)


def test_elastic_identity_with_zero_sigma_and_ignore_fill():
    ys, xs = np.mgrid[0:32, 0:40]
    image = np.stack([500 + 10 * ys + c * xs for c in range(5)], axis=2).astype(np.uint16)
    mask = blobs((32, 40))
    t = PaperElasticDeform(sigma=0.0, p=1.0)
    out = A.Compose([t])(image=image, mask=mask)
    assert np.array_equal(out["image"], image) and np.array_equal(out["mask"], mask)
    # large displacements pull pixels from outside: masks get the fill, images are mirrored
    out = A.Compose([PaperElasticDeform(sigma=40.0, mask_fill=255, p=1.0)], seed=1)(image=image, mask=mask)
    assert (out["mask"] == 255).any()
    assert (out["image"] >= 400).all()  # smooth ramp, mirrored: no zero fill


def test_affine_padding_fills_masks_with_ignore_else_mirrors():
    cfg = AugmentConfig.model_validate({"flips": False, "rot90": False, "gamma": False, "brightness_contrast": False,
                                        "elastic": False, "affine": {"p": 1.0, "scale": 0.5, "rotate": 45}})
    image = (np.random.default_rng(0).random((64, 64)) * 200 + 20).astype(np.uint8)
    mask = blobs(classes=3)
    with_ignore = Augmenter(cfg, ignore_index=255)
    without = Augmenter(cfg)
    seen_ignore = False
    for seed in range(5):
        a = with_ignore(image, mask, seed=seed)
        b = without(image, mask, seed=seed)
        seen_ignore |= bool((a["mask"] == 255).any())
        assert set(np.unique(b["mask"])) <= {0, 1, 2}
        assert a["image"].min() >= 15  # mirrored, never a black fill
        assert np.array_equal(a["image"], b["image"])
    assert seen_ignore


def test_seeded_pipeline_is_reproducible_and_transforms_independent():
    cfg = all_on(flips={"p": 0.5}, rot90=False)
    aug = Augmenter(cfg)
    image = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    mask = blobs((32, 32))
    a = aug(image, mask, seed=7)
    b = aug(image, mask, seed=7)
    c = aug(image, mask, seed=8)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["mask"], b["mask"])
    assert not np.array_equal(a["image"], c["image"])
    # albumentations' Compose.set_random_seed gives every transform the same seed, so two flips with
    # p=0.5 would always fire together; seed_pipeline gives each its own.
    flips = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)])
    grid = np.arange(16, dtype=np.uint8).reshape(4, 4)
    outcomes = set()
    for seed in range(40):
        seed_pipeline(flips, seed)
        outcomes.add(int(flips(image=grid)["image"][0, 0]))
    assert outcomes == {0, 3, 12, 15}


def test_disabled_augmentation_is_identity():
    aug = Augmenter(AugmentConfig.model_validate(False))
    assert len(aug.pipeline.transforms) == 0
    image = np.random.default_rng(0).random((16, 16, 2)).astype(np.float32)
    out = aug(image, blobs((16, 16)), seed=0)
    assert np.allclose(out["image"], image)


def test_build_augmentation_composition():
    names = [type(t).__name__ for t in build_augmentation(AugmentConfig()).transforms]
    assert names == ["RandomBrightnessContrast", "RandomGamma", "D4", "Affine", "PaperElasticDeform"]
    names = [type(t).__name__ for t in build_augmentation(AugmentConfig(rot90=False)).transforms]
    assert "HorizontalFlip" in names and "VerticalFlip" in names


def test_remap_channels_many_bands():
    image = np.random.default_rng(0).random((20, 24, 9)).astype(np.float32)
    ys, xs = np.mgrid[0:20, 0:24].astype(np.float32)
    out = remap_channels(image, xs + 0.0, ys, cv2.INTER_NEAREST, cv2.BORDER_REFLECT_101)
    assert np.array_equal(out, image)


def test_ignore_filling_affine_matches_albumentations_geometry():
    mask = blobs(classes=3)
    kwargs = dict(scale=(0.6, 0.8), rotate=(-30, 30), translate_percent=(-0.1, 0.1), p=1.0,
                  border_mode=cv2.BORDER_CONSTANT, fill_mask=255)
    for seed in range(3):
        a = A.Compose([_Affine(**kwargs)], seed=seed)(image=mask, mask=mask)["mask"]
        b = A.Compose([A.Affine(**kwargs)], seed=seed)(image=mask, mask=mask)["mask"]
        assert np.array_equal(a, b) and (a == 255).any()
