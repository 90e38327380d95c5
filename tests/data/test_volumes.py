"""3D training patches: shapes per axis with the model's margins, image and mask moved together by every
augmentation, z flipped only for nearly isotropic voxels, and reproducible crops."""
import numpy as np
import pytest

from unetseg.config.data import AugmentConfig
from unetseg.data.normalization import Normalization
from unetseg.data.volumes import VolumePatches


def coded_volume(rng, shape=(20, 30, 30)):
    mask = rng.integers(0, 4, shape, dtype=np.uint8)
    return (mask * 50).astype(np.uint8), mask  # the image encodes its own label


@pytest.mark.parametrize("spacing, z_flips", [((1.0, 1.0, 1.0), True), ((4.0, 1.0, 1.0), False)])
def test_augmented_crops_keep_image_and_mask_aligned(rng, spacing, z_flips):
    image, mask = coded_volume(rng)
    norm = Normalization(mean=(0.0,), std=(1.0,), scale=1.0)
    patches = VolumePatches([image], [mask], None, input_shape=(8, 16, 16), margins=(0, 0, 0), normalization=norm,
                            spacing=spacing, augment=AugmentConfig(brightness_contrast=False, gamma=False, elastic=False),
                            patches_per_epoch=16, seed=3)
    assert (0 in patches.flip_axes) is z_flips
    for i in range(len(patches)):
        item = patches[i]
        assert item["image"].shape == (1, 8, 16, 16) and item["mask"].shape == (8, 16, 16)
        np.testing.assert_array_equal(item["image"][0].numpy(), item["mask"].numpy() * 50)
    a, b = patches.sample(5), patches.sample(5)
    np.testing.assert_array_equal(a["image"], b["image"])


def test_valid_padding_targets_are_the_centre_and_reach_the_borders(rng):
    image, mask = coded_volume(rng, (6, 10, 12))
    norm = Normalization(mean=(0.0,), std=(1.0,), scale=1.0)
    patches = VolumePatches([image], [mask], None, input_shape=(12, 20, 20), margins=(4, 6, 6), normalization=norm,
                            augment=None, patches_per_epoch=4, ignore_index=255)
    item = patches.sample(0)
    assert item["image"].shape == (12, 20, 20, 1) and item["mask"].shape == (4, 8, 8)
    # the target shows real labels (mirrored context only around it), aligned with the input's centre
    np.testing.assert_array_equal(item["image"][4:8, 6:14, 6:14, 0], item["mask"] * 50)
