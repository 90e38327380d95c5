"""3D augmentation: the elastic deformation moves image and labels together (labels stay integer), is the identity
at strength 0 and deforms at strength > 0 with per-axis strength from the spacing; through-plane flips and turns only
for isotropic spacing."""
import numpy as np
import pytest

from unetseg.config.data import AugmentConfig
from unetseg.data.augment3d import deform, elastic_coordinates, isotropic, rotation_planes
from unetseg.data.normalization import Normalization
from unetseg.data.volumes import VolumePatches

from .nifti_cases import ct_case

SHAPE = (12, 20, 24)


def test_strength_zero_is_the_identity():
    image, labels = ct_case(0, SHAPE)
    where = elastic_coordinates(SHAPE, np.random.default_rng(0), sigma=0.0, spacing=(3.0, 0.8, 0.8))
    np.testing.assert_array_equal(where, np.indices(SHAPE))
    np.testing.assert_array_equal(deform(image.astype(np.float32), where, 1), image)
    np.testing.assert_array_equal(deform(labels, where, 0), labels)


def test_image_and_labels_deformed_by_one_field_stay_aligned():
    _, labels = ct_case(1, SHAPE)
    where = elastic_coordinates(SHAPE, np.random.default_rng(5), sigma=4.0, grid=3)
    # a voxel-id image resampled like the labels: each output label is the label of the voxel the field points to
    ids = np.arange(labels.size, dtype=np.float64).reshape(SHAPE)
    moved_ids = deform(ids, where, 0).astype(np.int64)
    moved = deform(labels, where, 0)
    assert moved.dtype == labels.dtype and set(np.unique(moved)) <= set(np.unique(labels))
    np.testing.assert_array_equal(moved, labels.reshape(-1)[moved_ids])
    assert (moved != labels).mean() > 0.02  # strength > 0 changes the volume
    # the image (linear) follows: away from label edges its value is its label's
    coded = labels.astype(np.float32) * 100
    moved_image = deform(coded, where, 1)
    assert moved_image.dtype == np.float32
    assert (np.rint(moved_image / 100) == moved).mean() > 0.95


def test_displacements_are_scaled_per_axis_by_the_spacing():
    spread = np.zeros(3)
    for seed in range(8):
        where = elastic_coordinates((16, 16, 16), np.random.default_rng(seed), sigma=6.0, spacing=(4.0, 1.0, 1.0))
        spread += (where - np.indices((16, 16, 16))).reshape(3, -1).std(1)
    assert spread[0] < 0.5 * spread[1] and spread[0] < 0.5 * spread[2]  # z is 4x coarser: 1/4 the voxels
    assert 0.5 < spread[1] / spread[2] < 2


@pytest.mark.parametrize("spacing, through_plane", [((1.0, 1.0, 1.0), True), ((2.9, 1.0, 1.0), True),
                                                    ((3.0, 0.8, 0.8), False), ((0.5, 0.5, 2.0), False)])
def test_through_plane_flips_and_turns_only_for_isotropic_spacing(spacing, through_plane):
    assert isotropic(spacing) is through_plane
    planes = rotation_planes((16, 16, 16), (0, 0, 0), spacing)
    assert planes == ([(1, 2), (0, 1), (0, 2)] if through_plane else [(1, 2)])
    assert rotation_planes((8, 16, 16), (0, 0, 0), spacing) == [(1, 2)]  # turns keep the crop's shape
    patches = VolumePatches([np.zeros((16, 16, 16), np.uint8)], [np.zeros((16, 16, 16), np.uint8)], None,
                            input_shape=(16, 16, 16), margins=(0, 0, 0), normalization=Normalization(),
                            spacing=spacing, augment=AugmentConfig())
    assert patches.flip_axes == ((0, 1, 2) if through_plane else (1, 2))
    assert patches.rotation_planes == planes


def test_single_slice_patches_of_a_2d_network_flip_in_plane_only():
    """A 2D network's volume patches are single slices: z is never flipped (its copy would keep negative strides,
    which torch cannot take), every item is a tensor of the patch's shape."""
    image, labels = ct_case(1, (6, 24, 24))
    augment = AugmentConfig(flips={"p": 1.0}, rot90={"p": 1.0}, elastic=False)
    patches = VolumePatches([image], [labels], None, input_shape=(1, 16, 16), margins=(0, 0, 0),
                            normalization=Normalization(), spacing=(1.0, 1.0, 1.0), augment=augment,
                            patches_per_epoch=4)
    assert patches.flip_axes == (1, 2) and patches.rotation_planes == [(1, 2)]
    for i in range(len(patches)):
        item = patches[i]
        assert item["image"].shape == (1, 1, 16, 16) and item["mask"].shape == (1, 16, 16)


def test_training_crops_with_elastic_keep_labels_integer_and_aligned():
    image, labels = ct_case(2, (16, 24, 24))
    coded = labels.astype(np.float32) * 100
    augment = AugmentConfig(brightness_contrast=False, gamma=False, elastic={"p": 1.0, "sigma": 3.0})
    patches = VolumePatches([coded], [labels], None, input_shape=(12, 16, 16), margins=(0, 0, 0),
                            normalization=Normalization(scale=1.0), spacing=(1.0, 1.0, 1.0), augment=augment,
                            patches_per_epoch=6, seed=2)
    plain = VolumePatches([coded], [labels], None, input_shape=(12, 16, 16), margins=(0, 0, 0),
                          normalization=Normalization(scale=1.0), spacing=(1.0, 1.0, 1.0),
                          augment=AugmentConfig(brightness_contrast=False, gamma=False, elastic=False),
                          patches_per_epoch=6, seed=2)
    changed = 0
    for i in range(len(patches)):
        item = patches.sample(i)
        assert set(np.unique(item["mask"])) <= {0, 1, 2}
        assert (np.rint(item["image"][..., 0] / 100) == item["mask"]).mean() > 0.95
        changed += int(not np.array_equal(item["mask"], plain.sample(i)["mask"]))
    assert changed >= 3


def test_a_2_5d_stack_is_deformed_in_plane_only():
    """A 2.5D network's patch is its centre slice and the slices above and below it sees: the elastic deformation
    leaves z alone (each patch slice is one volume slice, none blended nor shuffled by a z displacement)."""
    slices = np.arange(30, dtype=np.float32)[:, None, None] * 100
    image = np.ascontiguousarray(np.broadcast_to(slices, (30, 24, 24)))
    augment = AugmentConfig(flips=False, rot90=False, brightness_contrast=False, gamma=False,
                            elastic={"p": 1.0, "sigma": 6.0})
    patches = VolumePatches([image], [np.zeros(image.shape, np.uint8)], None, input_shape=(5, 16, 16),
                            margins=(2, 0, 0), normalization=Normalization(scale=1.0), spacing=(1.0, 1.0, 1.0),
                            augment=augment, patches_per_epoch=6, seed=3)
    assert patches.elastic_axes == (1, 2)
    for i in range(len(patches)):
        stack = patches.sample(i)["image"][..., 0]
        np.testing.assert_allclose(stack, stack[:, :1, :1] * np.ones_like(stack), atol=1e-3)  # each slice: one value
        assert np.allclose(np.abs(np.diff(stack[:, 0, 0])), 100, atol=1e-3)  # neighbouring slices, in order
    whole = VolumePatches([image], [np.zeros(image.shape, np.uint8)], None, input_shape=(8, 16, 16),
                          margins=(0, 0, 0), normalization=Normalization(), augment=augment)
    assert whole.elastic_axes == (0, 1, 2)
