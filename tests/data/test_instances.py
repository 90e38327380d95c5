"""Instance masks as training data: targets, per-object classes, and one-line errors for bad masks."""
import json

import numpy as np
import pytest
import tifffile

from unetseg.config.data import parse_data_config
from unetseg.data.folder import InstanceMasks, load_folder
from unetseg.data.instances import InstanceLayout, check_instances, read_instance_classes
from unetseg.errors import UnetsegError
from unetseg.training.datasets import load_splits


def test_targets_are_background_interior_and_a_boundary_of_the_chosen_width():
    inst = np.zeros((20, 30), np.int64)
    inst[2:12, 2:12] = 1
    inst[2:12, 12:22] = 2  # touching object 1
    inst[15:20, 25:30] = 3  # at the image's corner
    for width in (1, 2):
        targets = InstanceLayout(("cell",), width).targets(inst)
        assert set(np.unique(targets)) == {0, 1, 2}
        assert (targets[inst == 0] == 0).all()
        assert (targets[2:12, 12 - width : 12 + width] == 2).all()   # both rims where they touch
        assert (targets[6:8, 6:8] == 1).all() and (targets[2 + width : 12 - width, 2 + width] == 1).all()
        assert (targets[19, 29] == 1) and (targets[15 + width :, 29] == 1).all()  # the image edge is no boundary
    classes = InstanceLayout(("cell", "debris")).targets(inst, {2: 2})
    assert (classes[6, 17] == 2) and (classes[6, 6] == 1) and (classes[2, 14] == 3)  # boundary class is C + 1
    assert InstanceLayout(("cell", "debris")).classes().names == ("background", "cell", "debris", "boundary")


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 4), np.float32), "not float32 values"),
    (np.full((4, 4), -1, np.int16), "negative id -1"),
    (np.arange(256, dtype=np.uint8).reshape(16, 16), "id 255 is the largest value a uint8 holds"),
    (np.dstack([np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8)]), "one-band label image"),
])
def test_bad_instance_masks_are_one_line_naming_the_file(array, message):
    with pytest.raises(UnetsegError, match=message) as err:
        check_instances(array, "masks/a.tif")
    assert str(err.value).startswith("masks/a.tif: ") and "\n" not in str(err.value)


def test_instance_classes_from_csv_and_json(tmp_path):
    (tmp_path / "c.csv").write_text("image,id,class\na,1,debris\n,2,cell\n")
    assert read_instance_classes(tmp_path / "c.csv", ("cell", "debris")) == {"a": {1: 2}, None: {2: 1}}
    (tmp_path / "c.json").write_text(json.dumps({"b": {"3": "debris"}, "4": "cell"}))
    assert read_instance_classes(tmp_path / "c.json", ("cell", "debris")) == {"b": {3: 2}, None: {4: 1}}
    (tmp_path / "bad.csv").write_text("id,class\n1,tumour\n")
    with pytest.raises(UnetsegError, match="class 'tumour' of id 1 is not one of cell, debris"):
        read_instance_classes(tmp_path / "bad.csv", ("cell", "debris"))


def test_a_folder_of_instance_masks_trains_on_targets_and_keeps_the_instances(tmp_path, rng):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / "images" / f"{name}.tif", rng.integers(0, 255, (40, 50), dtype=np.uint8))
        inst = np.zeros((40, 50), np.uint16)
        inst[5:15, 5:15], inst[20:35, 10:30] = 1, 7
        tifffile.imwrite(tmp_path / "masks" / f"{name}.tif", inst)
    (tmp_path / "classes.csv").write_text("image,id,class\nb,7,debris\n")
    cfg = parse_data_config({"source": "folder", "images": str(tmp_path / "images"), "masks": str(tmp_path / "masks"),
                             "mask_mode": "instances", "classes": [{"name": "cell"}, {"name": "debris"}],
                             "instance_classes": str(tmp_path / "classes.csv"), "val_files": ["b"]})
    train, val = load_splits(cfg)
    assert train.classes.names == ("background", "cell", "debris", "boundary")
    assert train.instances[0].max() == 7 and train.masks[0][25, 20] == 1 and val.masks[0][25, 20] == 2
    assert train.masks[0][20, 20] == 3  # boundary
    items, table, _ = load_folder(tmp_path / "images", tmp_path / "masks",
                                  instance_masks=InstanceMasks(InstanceLayout(("cell",))))
    assert table.num_classes == 3 and items[0].instances is not None


@pytest.mark.parametrize("dtype", [np.int32, np.uint32, np.int64])
def test_32_and_64_bit_label_images_keep_their_ids(tmp_path, rng, dtype):
    """The label images cellpose, StarDist and scikit-image save (int32 and wider) are read with their dtype: ids
    stay exact above 2**24, where float32 would merge neighbours (2**24 + 1 -> 2**24)."""
    from unetseg.data.masks import read_mask
    from unetseg.io.images import read_labels

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", rng.integers(0, 255, (40, 50), dtype=np.uint8))
    inst = np.zeros((40, 50), dtype)
    inst[5:15, 5:15], inst[20:35, 10:30] = 2**24, 2**24 + 1
    tifffile.imwrite(tmp_path / "masks" / "a.tif", inst)
    read = read_labels(tmp_path / "masks" / "a.tif")
    assert read.dtype == dtype and np.array_equal(read, inst)
    items, _, _ = load_folder(tmp_path / "images", tmp_path / "masks",
                              instance_masks=InstanceMasks(InstanceLayout(("cell",))))
    assert set(np.unique(items[0].instances)) == {0, 2**24, 2**24 + 1}
    tifffile.imwrite(tmp_path / "masks" / "a.tif", (inst > 0).astype(dtype))  # an index mask in a wide dtype
    labels = read_mask(tmp_path / "masks" / "a.tif")
    assert labels.dtype == np.uint8 and labels.sum() == (inst > 0).sum()


def test_the_nuclei_sample_trains_on_instance_targets():
    cfg = parse_data_config({"source": "sample", "sample": "nuclei", "mask_mode": "instances", "boundary_width": 1})
    train, val = load_splits(cfg)
    assert train.classes.names == ("background", "nucleus", "boundary")
    assert set(np.unique(train.masks[0])) == {0, 1, 2} and val.instances[0].max() > 10
    with pytest.raises(UnetsegError, match="instances needs instance masks"):
        load_splits(parse_data_config({"source": "sample", "sample": "brain", "mask_mode": "instances"}))


def test_distance_targets_are_levels_monotone_in_the_distance_to_the_boundary():
    from scipy import ndimage

    yy, xx = np.indices((40, 64))
    inst = np.zeros((40, 64), np.int64)
    inst[(yy - 20) ** 2 + (xx - 20) ** 2 <= 144] = 1
    inst[((yy - 20) ** 2 + (xx - 42) ** 2 <= 144) & (inst == 0)] = 2  # touches object 1
    inst[30:, 56:] = 3  # at the image's corner
    layout = InstanceLayout(("cell",), target="distance", levels=5, bin=2)
    levels = layout.targets(inst)
    assert levels.dtype == np.uint8 and set(np.unique(levels)) == set(range(6))
    assert (levels[inst == 0] == 0).all() and (levels[inst > 0] >= 1).all()
    for k in (1, 2):  # within an object, a deeper pixel (own-object distance transform) never has a lower level
        own = ndimage.distance_transform_edt(inst == k)
        d, lv = own[inst == k], levels[inst == k]
        order = np.argsort(d, kind="stable")
        assert (np.diff(lv[order].astype(int))[np.diff(d[order]) > 0] >= 0).all()
        np.testing.assert_array_equal(lv, np.minimum(5, 1 + np.floor((d - 1) / 2)))
    meet = (inst[:, :-1] == 1) & (inst[:, 1:] == 2)
    assert (levels[:, :-1][meet] == 1).all() and (levels[:, 1:][meet] == 1).all()  # touching objects: a level-1 rim
    assert ndimage.label((levels >= 3) & (inst < 3))[1] == 2  # their deep parts are apart (connected components merge the two)
    assert (levels[39, 63], levels[32, 63], levels[30, 63]) == (4, 2, 1)  # the image edge is no boundary
    assert layout.num_classes == 6 and layout.classes().names[1:3] == ("cell", "cell d2")


def test_relative_distance_levels_give_every_object_all_levels_and_keep_a_shallow_neck():
    from scipy import ndimage

    yy, xx = np.indices((48, 80))
    inst = np.zeros((48, 80), np.int64)
    inst[(yy - 24) ** 2 + (xx - 20) ** 2 <= 225] = 1  # radius 15
    inst[((yy - 24) ** 2 + (xx - 45) ** 2 <= 121) & (inst == 0)] = 2  # radius 11, touching object 1
    inst[(yy - 10) ** 2 + (xx - 70) ** 2 <= 16] = 3  # radius 4
    layout = InstanceLayout(("cell",), target="distance", levels=4, bin=4, relative=True)
    levels = layout.targets(inst)
    assert (levels[inst == 0] == 0).all()
    for k in (1, 2, 3):  # small or large, each object has levels 1..4: (d - 1) / D in quarters
        d = ndimage.distance_transform_edt(inst == k)[inst == k]
        np.testing.assert_array_equal(levels[inst == k], 1 + np.floor(4 * (d - 1) / d.max()))
        assert set(np.unique(levels[inst == k])) == {1, 2, 3, 4}
    absolute = InstanceLayout(("cell",), target="distance", levels=4, bin=4).targets(inst)
    assert absolute[inst == 3].max() == 1  # in px bins the small object has no core level at all
    # the touching pair's deep halves are apart at level 3 already
    assert ndimage.label((levels >= 3) & (inst < 3))[1] == 2
    cut = np.zeros((20, 40), np.int64)
    cut[(yy[:20, :40] - 19) ** 2 + (xx[:20, :40] - 20) ** 2 <= 144] = 1  # a disk of radius 12 halved by the edge
    halved = layout.targets(cut)
    # the image edge is no boundary: the half disk's core is at the edge, with every level, as the whole disk's
    assert halved[19, 20] == 4 and set(np.unique(halved[cut > 0])) == {1, 2, 3, 4}
    with pytest.raises(UnetsegError, match=r"data.distance_bin 2: .* 15 px deep .* set data.distance_bin >= 3"):
        InstanceLayout(("cell",), target="distance", levels=4, bin=2, relative=True).targets(inst)


def test_distance_target_config_and_its_one_line_errors():
    cfg = parse_data_config({"mask_mode": "instances", "instance_target": "distance", "distance_levels": 4})
    layout = cfg.instance_layout()
    assert (layout.target, layout.levels, layout.bin, layout.relative) == ("distance", 4, 2, False)
    assert parse_data_config({"mask_mode": "instances", "instance_target": "distance",
                              "distance_relative": True}).instance_layout().relative
    assert parse_data_config({"mask_mode": "instances"}).instance_layout().target == "three_class"
    for data, message in [({"instance_target": "distance"}, "applies to mask_mode='instances' only"),
                          ({"mask_mode": "instances", "instance_target": "stars"}, "instance_target"),
                          ({"mask_mode": "instances", "instance_target": "distance", "distance_levels": 1},
                           "distance_levels")]:
        with pytest.raises(UnetsegError, match=message) as err:
            parse_data_config(data)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="one object class"):
        InstanceLayout(("a", "b"), target="distance")


def test_the_nuclei_sample_trains_on_distance_levels():
    cfg = parse_data_config({"mask_mode": "instances", "instance_target": "distance"})
    train, val = load_splits(cfg)
    assert train.classes.num_classes == 7 and int(train.masks[0].max()) == 6
    assert val.instances is not None and (train.masks[0] > 0).sum() == (train.instances[0] > 0).sum()
