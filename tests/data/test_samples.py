"""Built-in sample datasets and class tables."""
from __future__ import annotations

import numpy as np
import pytest

from unetseg.data.classes import ClassTable
from unetseg.data.sample_split import load_npz
from unetseg.data.samples import (
    FashionScenes,
    border_between_instances,
    list_samples,
    load_sample,
)

# ---------------------------------------------------------------------------- registry / errors


def test_list_samples() -> None:
    assert list_samples() == ["nuclei", "brain", "fashion-scenes"]


def test_unknown_sample_names_it_and_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        load_sample("cityscapes")
    msg = str(err.value)
    assert "'cityscapes'" in msg and "\n" not in msg
    for name in list_samples():
        assert name in msg


def test_unknown_split_and_option_rejected() -> None:
    with pytest.raises(ValueError, match="split"):
        load_sample("nuclei", "test")
    with pytest.raises(ValueError, match="touching_boarder"):
        load_sample("nuclei", touching_boarder=True)


# ---------------------------------------------------------------------------- nuclei


def _check_instances(inst: np.ndarray) -> int:
    assert inst.dtype == np.int32
    ids = np.unique(inst)
    n = int(ids.max())
    np.testing.assert_array_equal(ids, np.arange(n + 1))  # 0 plus consecutive 1..n
    return n


def test_nuclei_shapes_and_classes() -> None:
    for split, width in (("train", 384), ("val", 128)):
        s = load_sample("nuclei", split)
        assert len(s) == 1 and s.instances is not None
        img, mask, inst = s.images[0], s.masks[0], s.instances[0]
        assert img.shape == mask.shape == inst.shape == (512, width)
        assert img.dtype == np.uint8 and mask.dtype == np.uint8
        assert s.classes.names == ("background", "nucleus")
        np.testing.assert_array_equal(mask, (inst > 0).astype(np.uint8))
        assert _check_instances(inst) > 0


def test_nuclei_regions_disjoint_and_cover_the_image() -> None:
    train, val = load_sample("nuclei", "train"), load_sample("nuclei", "val")
    (a0, a1), (b0, b1) = train.info["columns"], val.info["columns"]
    assert a1 <= b0 or b1 <= a0
    raw = load_npz("nuclei.npz")
    np.testing.assert_array_equal(np.hstack([train.images[0], val.images[0]]), raw["image"])
    n_raw = len(np.unique(raw["instances"])) - 1
    assert n_raw == 125
    n_split = int(train.instances[0].max()) + int(val.instances[0].max())
    # Nuclei cut by the split line count once per side.
    assert n_raw <= n_split <= n_raw + 15


def test_nuclei_touching_border_definition() -> None:
    s = load_sample("nuclei", "train", touching_border=True)
    assert s.classes.names == ("background", "nucleus", "border")
    raw = load_npz("nuclei.npz")["instances"].astype(np.int64)
    # Reference: count distinct non-zero ids in each 3x3 window, the slow obvious way.
    padded = np.pad(raw, 1)
    win = np.lib.stride_tricks.sliding_window_view(padded, (3, 3)).reshape(512, 512, 9)
    big = np.iinfo(np.int64).max
    lo = np.where(win > 0, win, big).min(axis=-1)
    hi = win.max(axis=-1)
    ref = (lo != big) & (lo != hi)
    np.testing.assert_array_equal(border_between_instances(raw), ref)
    assert ref.sum() > 100  # the image does have touching nuclei
    mask = s.masks[0]
    ref_train = ref[:, :384]
    np.testing.assert_array_equal(mask == 2, ref_train)
    np.testing.assert_array_equal(mask == 1, (raw[:, :384] > 0) & ~ref_train)


def test_border_between_instances_small_cases() -> None:
    touching = np.zeros((5, 6), np.int32)
    touching[1:4, 1:3] = 1
    touching[1:4, 3:5] = 2
    b = border_between_instances(touching)
    np.testing.assert_array_equal(np.nonzero(b.any(axis=0))[0], [2, 3])  # the two facing rims
    assert b[1:4, 2].all() and b[1:4, 3].all() and not b[:, [0, 1, 4, 5]].any()

    gap1 = np.zeros((5, 7), np.int32)
    gap1[1:4, 1:3] = 1
    gap1[1:4, 4:6] = 2
    np.testing.assert_array_equal(np.nonzero(border_between_instances(gap1).any(axis=0))[0], [3])

    gap2 = np.zeros((5, 8), np.int32)
    gap2[1:4, 1:3] = 1
    gap2[1:4, 5:7] = 2
    assert not border_between_instances(gap2).any()

    single = np.zeros((5, 5), np.int32)
    single[1:4, 1:4] = 7
    assert not border_between_instances(single).any()


# ---------------------------------------------------------------------------- brain


def test_brain_shapes_and_classes() -> None:
    for split in ("train", "val"):
        s = load_sample("brain", split)
        assert s.instances is None
        assert s.classes.names == ("background", "grey matter", "white matter")
        assert len(s.images) == len(s.masks) == len(s.info["z"]) > 10
        for img, mask in zip(s.images, s.masks, strict=True):
            assert img.shape == mask.shape == (208, 176)
            assert img.dtype == np.uint8 and mask.dtype == np.uint8
            assert mask.max() <= 2 and (mask > 0).sum() >= 600
        labels = np.stack(s.masks)
        assert set(np.unique(labels)) == {0, 1, 2}


def test_brain_val_slab_is_contiguous_and_separated_by_a_gap() -> None:
    train, val = load_sample("brain", "train"), load_sample("brain", "val")
    zt, zv = np.asarray(train.info["z"]), np.asarray(val.info["z"])
    assert len(zt) == 108 and len(zv) == 29
    np.testing.assert_array_equal(np.diff(zv), 1)  # one contiguous slab
    assert not set(zt) & set(zv)
    assert np.abs(zt[:, None] - zv[None, :]).min() > 3  # gap of 3 slices on each side
    assert (zt < zv.min()).any() and (zt > zv.max()).any()  # the slab sits in the middle
    # The arrays really are those slices: no val image appears in train.
    train_keys = {img.tobytes() for img in train.images}
    assert not any(img.tobytes() in train_keys for img in val.images)


def test_brain_orientation_anterior_up() -> None:
    # In the template's axial slices the frontal lobes are longer (front-to-back) than wide, and the
    # cerebellum sits posterior: at the lowest slices, tissue lies in the lower half of the image.
    s = load_sample("brain", "train")
    lowest = s.masks[int(np.argmin(s.info["z"]))]
    rows = np.nonzero(lowest.any(axis=1))[0]
    assert rows.mean() > lowest.shape[0] / 2


# ---------------------------------------------------------------------------- fashion scenes


def test_fashion_scenes_sample_shapes_and_disjoint_items() -> None:
    train = load_sample("fashion-scenes", "train")
    val = load_sample("fashion-scenes", "val")
    assert (len(train), len(val)) == (8, 4)
    assert train.classes.num_classes == 11 and train.classes.names[0] == "background"
    for s in (train, val):
        for img, lab, inst in zip(s.images, s.masks, s.instances, strict=True):
            assert img.shape == lab.shape == inst.shape == (256, 256)
            assert img.dtype == np.uint8 and lab.dtype == np.uint8 and inst.dtype == np.int32
            assert lab.max() <= 10
    ti, vi = set(train.info["item_ids"].tolist()), set(val.info["item_ids"].tolist())
    assert not ti & vi and len(ti) == 1600 and len(vi) == 400
    assert not np.array_equal(train.images[0], val.images[0])


def test_fashion_scenes_sample_deterministic_and_seeded() -> None:
    a = load_sample("fashion-scenes", "val", seed=5, size=(64, 96), n_scenes=2)
    b = load_sample("fashion-scenes", "val", seed=5, size=(64, 96), n_scenes=2)
    c = load_sample("fashion-scenes", "val", seed=6, size=(64, 96), n_scenes=2)
    assert a.images[0].shape == (64, 96) and len(a) == 2
    for x, y in zip(a.images + a.masks + a.instances, b.images + b.masks + b.instances, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.images[0], c.images[0])


def test_fashion_scenes_generator_deterministic() -> None:
    s1 = FashionScenes(seed=3).scene(128, 160)
    s2 = FashionScenes(seed=3).scene(128, 160)
    for x, y in zip(s1, s2, strict=True):
        np.testing.assert_array_equal(x, y)
    g = FashionScenes(seed=3)
    g.scene(128, 160)
    assert not np.array_equal(g.scene(128, 160)[0], s1[0])  # the stream moves on
    assert not np.array_equal(FashionScenes(seed=4).scene(128, 160)[0], s1[0])


@pytest.mark.parametrize("background", ["noise", "texture", "black"])
def test_fashion_labels_zero_exactly_where_no_ink(background: str) -> None:
    img, lab, inst = FashionScenes(seed=1, background=background).scene(300, 200, density=1.0)
    assert img.shape == lab.shape == inst.shape == (300, 200)
    assert lab.max() <= 10 and (lab > 0).mean() > 0.2
    np.testing.assert_array_equal(lab == 0, inst == 0)
    assert (img[lab > 0] > 50).all()  # labelled pixels show item ink
    if background == "black":
        np.testing.assert_array_equal(lab > 0, img > 50)
    if background == "noise":
        assert img[lab == 0].max() <= 40
    # One class per instance.
    ids = inst[inst > 0]
    per_id = np.zeros(ids.max() + 1, np.int64)
    per_id[ids] = lab[inst > 0]
    np.testing.assert_array_equal(per_id[ids], lab[inst > 0])


def test_fashion_later_item_wins_in_pixels_and_labels() -> None:
    # Two solid items whose intensity identifies their class: wherever items overlap, the pixel
    # and the label must come from the same (the later) item.
    items = np.stack([np.full((28, 28), 200, np.uint8), np.full((28, 28), 120, np.uint8)])
    gen = FashionScenes(seed=0, background="black", items=items, item_labels=np.array([4, 7]), flip=False)
    img, lab, inst = gen.scene(200, 200, density=3.0)
    assert set(np.unique(lab)) == {0, 5, 8}
    np.testing.assert_array_equal(lab == 5, img == 200)
    np.testing.assert_array_equal(lab == 8, img == 120)
    # Heavy overlap really happened: many drawn items are hidden entirely by later ones.
    assert len(np.unique(inst)) - 1 < inst.max()


def test_fashion_4096_scene_builds() -> None:
    img, lab, inst = FashionScenes(seed=0).scene(4096, 4096)
    assert img.shape == lab.shape == inst.shape == (4096, 4096)
    assert img.dtype == np.uint8 and lab.dtype == np.uint8 and inst.dtype == np.int32
    assert 0.1 < (lab > 0).mean() < 0.6 and lab.max() == 10


def test_fashion_bad_arguments() -> None:
    with pytest.raises(ValueError, match="background"):
        FashionScenes(background="plaid")
    with pytest.raises(ValueError, match="size"):
        FashionScenes().scene(0, 10)


# ---------------------------------------------------------------------------- ClassTable


def test_class_table_round_trip_and_palette() -> None:
    t = ClassTable(["background", "cell"], [[0, 0, 0], (255, 10, 3)])
    assert t.names == ("background", "cell") and t.colors == ((0, 0, 0), (255, 10, 3))
    assert t.num_classes == 2
    assert ClassTable.from_dict(t.to_dict()) == t
    pal = t.palette()
    assert pal.shape == (2, 3) and pal.dtype == np.uint8
    np.testing.assert_array_equal(pal[np.array([[1, 0]])], [[[255, 10, 3], [0, 0, 0]]])


@pytest.mark.parametrize(
    ("names", "colors", "match"),
    [
        (("a", "b"), ((0, 0, 0),), "2 names but 1 colours"),
        (("a", "a"), ((0, 0, 0), (1, 1, 1)), "unique"),
        (("a", "b"), ((0, 0, 0), (1, 1, 256)), "0..255"),
        (("a", "b"), ((0, 0, 0), (1, 1)), "three integers"),
        (("a", ""), ((0, 0, 0), (1, 1, 1)), "non-empty"),
        ((), (), "at least one"),
    ],
)
def test_class_table_validation(names: tuple, colors: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        ClassTable(names, colors)
    assert "\n" not in str(err.value)


def test_class_table_from_dict_errors() -> None:
    with pytest.raises(ValueError, match="names"):
        ClassTable.from_dict({"colors": [[0, 0, 0]]})


def test_class_table_default() -> None:
    t = ClassTable.default(60)
    assert t.num_classes == 60 and t.names[0] == "background" and t.colors[0] == (0, 0, 0)
    assert len(set(t.colors)) == 60 and len(set(t.names)) == 60
    assert ClassTable.default(3, names=["bg", "x", "y"]).names == ("bg", "x", "y")
    assert ClassTable.from_dict({"names": ["a", "b"]}).colors == ClassTable.default(2).colors


def test_brain_volume_is_the_slices_with_the_templates_geometry(tmp_path) -> None:
    import nibabel as nib

    from unetseg.data.samples import brain_volume, load_sample

    volume = brain_volume()
    assert volume.image.shape == volume.labels.shape == (143, 208, 176) and volume.spacing == (1.0, 1.0, 1.0)
    val = load_sample("brain", "val")
    z0 = int(val.info["z"][0]) - int(load_npz("brain.npz")["z"][0])
    np.testing.assert_array_equal(volume.image[z0], val.images[0])
    # the symmetric template's tissue is centred on x = 0 mm (the midline) in world coordinates
    zz, yy, xx = np.nonzero(volume.labels > 0)
    centre = volume.affine @ np.array([xx.mean(), yy.mean(), zz.mean(), 1.0])
    assert abs(centre[0]) < 1.0 and -40 < centre[1] < 0 and 0 < centre[2] < 30
    volume.to_nifti(tmp_path / "brain.nii.gz", tmp_path / "labels.nii.gz")
    image = nib.load(tmp_path / "brain.nii.gz")
    assert image.shape == (176, 208, 143) and nib.aff2axcodes(image.affine) == ("R", "P", "S")
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "labels.nii.gz").dataobj).transpose(2, 1, 0),
                                  volume.labels)

