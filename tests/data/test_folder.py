from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from unetseg.data.classes import ClassTable
from unetseg.data.folder import find_pairs, folder_splits, load_folder, read_mask, split_items
from unetseg.errors import UnetsegError
from unetseg.io import read_image

CLASSES = ClassTable(("background", "cell", "debris"), ((0, 0, 0), (255, 0, 0), (0, 0, 255)))


def make_folder(root: Path, n=3, size=(24, 32), rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"im{i}.png"), rng.integers(0, 255, size, dtype=np.uint8))
        cv2.imwrite(str(root / "masks" / f"im{i}.png"), rng.integers(0, 3, size, dtype=np.uint8))
    return root / "images", root / "masks"


def write_rgb(path: Path, rgb: np.ndarray):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_index_masks_and_default_classes(tmp_path):
    images, masks = make_folder(tmp_path)
    items, classes, _ = load_folder(images, masks)
    assert [it.stem for it in items] == ["im0", "im1", "im2"]
    assert classes.num_classes == 3 and classes.names[0] == "background"
    assert items[0].image.dtype == np.uint8 and items[0].image.shape == (24, 32)
    assert items[0].mask.dtype == np.uint8 and items[0].mask.max() <= 2


def test_image_formats(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 0] = 200  # red
    write_rgb(tmp_path / "rgb.png", rgb)
    assert np.array_equal(read_image(tmp_path / "rgb.png"), rgb)  # BGR -> RGB
    deep = (np.arange(120).reshape(10, 12) * 500).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    assert read_image(tmp_path / "deep.png").dtype == np.uint16
    bands = np.random.default_rng(0).random((5, 10, 12)).astype(np.float32)
    tifffile.imwrite(tmp_path / "bands.tif", bands, metadata={"axes": "CYX"})
    got = read_image(tmp_path / "bands.tif")
    assert got.shape == (10, 12, 5) and np.array_equal(got[..., 3], bands[3])
    tifffile.imwrite(tmp_path / "hwc.tiff", rgb, photometric="rgb")
    assert np.array_equal(read_image(tmp_path / "hwc.tiff"), rgb)
    cv2.imwrite(str(tmp_path / "photo.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert read_image(tmp_path / "photo.jpg").shape == (10, 12, 3)
    tifffile.imwrite(tmp_path / "f64.tif", np.ones((4, 4)))
    assert read_image(tmp_path / "f64.tif").dtype == np.float32


def test_colour_masks_and_ignore_colour(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((8, 8), np.uint8))
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:2] = (255, 0, 0)
    rgb[2:4] = (0, 0, 255)
    rgb[7, 7] = (255, 255, 255)
    write_rgb(masks / "a.png", rgb)
    items, classes, _ = load_folder(images, masks, classes=CLASSES, mask_mode="color", ignore_index=255,
                                 ignore_color=(255, 255, 255))
    mask = items[0].mask
    assert classes is CLASSES
    assert (mask[:2] == 1).all() and (mask[2:4] == 2).all() and mask[7, 7] == 255 and mask[5, 0] == 0

    rgb[5, 3] = (12, 34, 56)
    write_rgb(masks / "a.png", rgb)
    with pytest.raises(UnetsegError, match=r"a\.png.*colour \(12, 34, 56\)"):
        load_folder(images, masks, classes=CLASSES, mask_mode="color", ignore_index=255, ignore_color=(255, 255, 255))


def test_gray_colour_mask_and_colour_mode_needs_classes(tmp_path):
    path = tmp_path / "m.png"
    cv2.imwrite(str(path), np.array([[0, 255], [255, 0]], np.uint8))
    table = ClassTable(("bg", "fg"), ((0, 0, 0), (255, 255, 255)))
    assert read_mask(path, mask_mode="color", classes=table).tolist() == [[0, 1], [1, 0]]
    with pytest.raises(UnetsegError, match="class table"):
        read_mask(path, mask_mode="color")


def test_index_mask_saved_as_rgb(tmp_path):
    path = tmp_path / "m.png"
    labels = np.array([[0, 1], [2, 1]], np.uint8)
    cv2.imwrite(str(path), np.repeat(labels[..., None], 3, axis=2))
    assert np.array_equal(read_mask(path), labels)
    write_rgb(path, np.array([[[1, 0, 0], [0, 0, 0]]], np.uint8))
    with pytest.raises(UnetsegError, match="m.png.*mask_mode='color'"):
        read_mask(path)


def test_ignore_label_passes_but_other_out_of_range_values_fail(tmp_path):
    images, masks = make_folder(tmp_path, n=2)
    m = cv2.imread(str(masks / "im1.png"), cv2.IMREAD_UNCHANGED)
    m[0, :5] = 255
    cv2.imwrite(str(masks / "im1.png"), m)
    items, classes, _ = load_folder(images, masks, classes=CLASSES, ignore_index=255)
    assert (items[1].mask == 255).sum() == 5 and classes.num_classes == 3
    with pytest.raises(UnetsegError, match=r"im1\.png.*mask value 255.*3"):
        load_folder(images, masks, classes=CLASSES)
    m[0, :5] = 7
    cv2.imwrite(str(masks / "im1.png"), m)
    with pytest.raises(UnetsegError, match=r"im1\.png.*mask value 7 .*not the ignore label 255"):
        load_folder(images, masks, classes=CLASSES, ignore_index=255)
    with pytest.raises(UnetsegError, match="ignore_index 2 is a class id"):
        load_folder(images, masks, classes=CLASSES, ignore_index=2)


def test_size_mismatch(tmp_path):
    images, masks = make_folder(tmp_path, n=2)
    cv2.imwrite(str(masks / "im1.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(UnetsegError, match=r"im1\.png.*10x10.*im1\.png.*32x24"):
        load_folder(images, masks)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    with pytest.raises(UnetsegError, match="images folder .* holds no images"):
        load_folder(tmp_path / "images", tmp_path / "masks")
    with pytest.raises(UnetsegError, match="does not exist"):
        load_folder(tmp_path / "nope", tmp_path / "masks")


def test_unpaired_files_listed(tmp_path):
    images, masks = make_folder(tmp_path, n=3)
    (masks / "im0.png").unlink()
    cv2.imwrite(str(masks / "stray.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(UnetsegError, match=r"unpaired.*1 image\(s\) without a mask.*im0.*1 mask\(s\) without an image.*stray"):
        find_pairs(images, masks)
    cv2.imwrite(str(images / "im1.jpg"), np.zeros((4, 4), np.uint8))
    with pytest.raises(UnetsegError, match="two files with stem 'im1'"):
        find_pairs(images, masks)


@pytest.mark.parametrize("suffix", ["_mask", "_cp_masks", "-label", "_GT"])
def test_masks_named_with_a_common_suffix_pair_with_their_images(tmp_path, suffix):
    images, masks = make_folder(tmp_path, n=3)
    for path in sorted(masks.iterdir()):
        path.rename(path.with_name(f"{path.stem}{suffix}.png"))
    assert [(stem, i.name, m.name) for stem, i, m in find_pairs(images, masks)] == [
        (f"im{k}", f"im{k}.png", f"im{k}{suffix}.png") for k in range(3)]
    (masks / f"im2{suffix}.png").rename(masks / "im2.png")  # one named otherwise: listed, not guessed
    with pytest.raises(UnetsegError, match=r"unpaired.*without a mask.*im0, im1"):
        find_pairs(images, masks)


def test_corrupt_files(tmp_path):
    images, masks = make_folder(tmp_path, n=2)
    (images / "im1.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(UnetsegError, match=r"im1\.png: cannot read"):
        load_folder(images, masks)
    (images / "im1.png").unlink()
    (images / "im1.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(UnetsegError, match=r"im1\.tif: cannot read"):
        load_folder(images, masks)


def test_inconsistent_channels_and_dtypes(tmp_path):
    images, masks = make_folder(tmp_path, n=2)
    cv2.imwrite(str(images / "im1.png"), np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(UnetsegError, match=r"im1\.png: 3 channel\(s\), but im0\.png has 1"):
        load_folder(images, masks)
    cv2.imwrite(str(images / "im1.png"), np.zeros((24, 32), np.uint16))
    with pytest.raises(UnetsegError, match=r"im1\.png: dtype uint16, but im0\.png is uint8"):
        load_folder(images, masks)


def test_split_by_fraction_and_by_files(tmp_path):
    stems = [f"s{i}" for i in range(10)]
    train, val = split_items(stems, val_fraction=0.3, seed=1)
    assert len(val) == 3 and sorted(train + val) == sorted(stems) and not set(train) & set(val)
    assert split_items(stems, val_fraction=0.3, seed=1) == (train, val)
    assert split_items(stems, val_fraction=0.3, seed=2) != (train, val)
    assert split_items(stems, val_fraction=0.0) == (stems, [])
    train, val = split_items(stems, val_files=["s2", "s5.png"])
    assert val == ["s2", "s5"] and len(train) == 8
    with pytest.raises(UnetsegError, match="val_files.*nope"):
        split_items(stems, val_files=["nope"])
    with pytest.raises(UnetsegError, match="leaves no training images"):
        split_items(["only"], val_fraction=0.2)


def test_folder_splits_return_sample_splits(tmp_path):
    images, masks = make_folder(tmp_path, n=5)
    train, val = folder_splits(images, masks, val_files=["im3"])
    assert len(train) == 4 and len(val) == 1 and val.info["stems"] == ["im3"]
    assert train.instances is None and train.classes.num_classes == 3
    assert train.images[0].shape == train.masks[0].shape


def test_jpeg_masks_are_refused_in_one_line(tmp_path):
    """A binary mask saved as JPEG holds ~30 values near its edges, which a plan took for 34 classes."""
    images, masks = make_folder(tmp_path, n=2)
    mask = cv2.imread(str(masks / "im1.png"), cv2.IMREAD_UNCHANGED)
    (masks / "im1.png").unlink()
    cv2.imwrite(str(masks / "im1.jpg"), mask)
    with pytest.raises(UnetsegError, match=r"im1\.jpg: a JPEG mask: .* save masks as PNG or TIFF \(1 JPEG mask"):
        find_pairs(images, masks)
