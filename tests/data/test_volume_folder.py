"""Folders of NIfTI volumes for 3D training: read with their spacing (anisotropic, oblique affine), paired by stem,
checked with one-line errors naming the file, and split into whole volumes or z slabs with the context gap."""
import nibabel as nib
import numpy as np
import pytest

from unetseg.data.volume_folder import load_volume_folder, read_training_volume, volume_folder_splits
from unetseg.errors import UnetsegError

from .nifti_cases import SPACING, ct_case, oblique_affine, write_cases, write_volume


def test_read_training_volume_gives_zyx_voxels_and_spacing(tmp_path):
    image, _ = ct_case(0)
    path = write_volume(tmp_path / "ct.nii.gz", image, oblique_affine())
    array, spacing = read_training_volume(path)
    np.testing.assert_array_equal(array, image)  # (Z, Y, X): no voxel moved, whatever the affine
    assert array.dtype == np.int16
    np.testing.assert_allclose(spacing, SPACING, rtol=1e-6)
    stored = nib.load(path).get_fdata()  # nibabel's (x, y, z) view of the same bytes
    np.testing.assert_array_equal(stored.transpose(2, 1, 0), image)


def test_whole_volumes_split_as_files(tmp_path):
    images, masks = write_cases(tmp_path, n=3)
    train, val = volume_folder_splits(images, masks, val_fraction=0.34, seed=1)
    assert train.info["split"]["mode"] == "files"
    assert sorted(train.info["stems"] + val.info["stems"]) == ["case0", "case1", "case2"] and len(val) == 1
    stem = val.info["stems"][0]
    np.testing.assert_array_equal(val.masks[0], ct_case(int(stem[-1]))[1])
    np.testing.assert_allclose(train.info["spacing"], SPACING, rtol=1e-6)
    assert train.classes.num_classes == 3


def test_one_volume_splits_into_z_slabs_with_the_context_gap(tmp_path):
    images, masks = write_cases(tmp_path, n=1, shape=(20, 16, 16))
    train, val = volume_folder_splits(images, masks, val_fraction=0.25, seed=3, gap=2)
    record = train.info["split"]
    assert record["mode"] == "z-slabs" and record["gap"] == 2 and len(val) == 1
    (v0, v1), = [s["z"] for s in record["val"]["slabs"]]
    assert v1 - v0 == 5
    full_image, full_mask = ct_case(0, (20, 16, 16))
    np.testing.assert_array_equal(val.images[0], full_image[v0:v1])
    ignore = train.info["ignore_index"]
    assert ignore == 255
    for (z0, z1), image, mask in zip([s["z"] for s in record["train"]["slabs"]], train.images, train.masks,
                                     strict=True):
        assert z1 <= v0 or z0 >= v1  # no validation voxel in a training slab
        np.testing.assert_array_equal(image, full_image[z0:z1])
        for z in range(z0, z1):
            near = min(abs(z - v0), abs(z - (v1 - 1))) <= 2 and not v0 <= z < v1
            row = mask[z - z0]
            if near:
                assert (row == ignore).all()  # labels within the gap of the validation slab are ignored
            else:
                np.testing.assert_array_equal(row, full_mask[z])


@pytest.mark.parametrize("seed", range(6))
def test_a_volume_labelled_on_a_few_slices_validates_on_labelled_ones(tmp_path, seed):
    images, masks = write_cases(tmp_path, n=1, shape=(40, 16, 16))
    image, labels = ct_case(0, (40, 16, 16))
    sparse = np.full_like(labels, 255)
    for z in (6, 20, 33):  # painted slices; the rest unlabelled
        sparse[z] = labels[z]
    write_volume(masks / "case0.nii.gz", sparse, oblique_affine())
    train, val = volume_folder_splits(images, masks, val_fraction=0.1, seed=seed, gap=2, ignore_index=255)
    assert (val.masks[0] != 255).any()  # the validation slab holds painted voxels
    assert any((m != 255).any() for m in train.masks)  # and so does what trains


def test_a_volume_thinner_than_the_context_splits_with_the_widest_gap_that_leaves_labels(tmp_path):
    images, masks = write_cases(tmp_path, n=1, shape=(12, 16, 16))
    train, val = volume_folder_splits(images, masks, val_fraction=0.25, seed=0, gap=40)
    record = train.info["split"]
    assert record["context"] == 40 and 0 <= record["gap"] < 40 and len(val) == 1
    assert any((m != 255).any() for m in train.masks)
    wide, _ = volume_folder_splits(images, masks, val_fraction=0.25, seed=0, gap=2)
    assert wide.info["split"]["gap"] == 2 == wide.info["split"]["context"]  # the whole context when it fits


def _broken(tmp_path, case):
    images, masks = write_cases(tmp_path, n=2)
    target = masks / "case1.nii.gz"
    image, labels = ct_case(1)
    if case == "shape":
        write_volume(target, labels[:-1], oblique_affine())
    elif case == "non-integer":
        write_volume(target, labels.astype(np.float32) + 0.5 * (labels == 1), oblique_affine())
    elif case == "spacing":
        write_volume(target, labels, oblique_affine((1.0, 0.8, 0.8)))
    else:
        target.rename(masks / "other.nii.gz")
        target = masks / "other.nii.gz"
    return images, masks, target


@pytest.mark.parametrize("case, message", [("shape", "not on the voxel grid of case1.nii.gz: mask shape"),
                                           ("non-integer", "is not an integer"),
                                           ("spacing", "not on the voxel grid of case1.nii.gz: mask spacing 1x0.8x0.8"),
                                           ("stems", "unpaired volumes")])
def test_bad_masks_are_one_line_errors_naming_the_file(tmp_path, case, message):
    images, masks, target = _broken(tmp_path, case)
    with pytest.raises(UnetsegError) as err:
        load_volume_folder(images, masks)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert (target.name in text) if case != "stems" else ("case1" in text and "other" in text)


def test_class_values_map_mask_values_and_unknown_ones_are_refused(tmp_path):
    images, masks = write_cases(tmp_path, n=2)
    for i in range(2):  # masks stored as 0 / 100 / 200
        write_volume(masks / f"case{i}.nii.gz", ct_case(i)[1] * 100, oblique_affine())
    items, classes = load_volume_folder(images, masks, class_values=[0, 100, 200])
    np.testing.assert_array_equal(items[0].mask, ct_case(0)[1])
    assert classes.num_classes == 3
    with pytest.raises(UnetsegError, match=r"case0.nii.gz: mask value 100 is not one of data.class_values"):
        load_volume_folder(images, masks, class_values=[0, 200])
