"""The invalid-pixel rule, normalisation from valid pixels, value-coded and nodata masks, region splits."""
import numpy as np
import pytest
import tifffile

from unetseg import Normalization
from unetseg.config.data import parse_data_config
from unetseg.data.folder import PixelRules, folder_splits, load_folder
from unetseg.data.nodata import Nodata, needs_check, resolve_nodata, valid_mask
from unetseg.errors import UnetsegError
from unetseg.training.datasets import build_datasets

ND = -99999.0
NODATA_TAG = [(42113, "s", 0, "-99999", True)]


def write_pair(root, stem, image, mask, image_tags=NODATA_TAG, mask_tags=NODATA_TAG):
    """A float image (bands x H x W on disk, tifffile's default layout) and its float mask, with nodata tags."""
    (root / "images").mkdir(exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    planes = image.transpose(2, 0, 1) if image.ndim == 3 else image
    tifffile.imwrite(root / "images" / f"{stem}.tif", planes, extratags=image_tags)
    tifffile.imwrite(root / "masks" / f"{stem}.tif", mask, extratags=mask_tags)
    return root / "images", root / "masks"


def scene(rng, h=40, w=48):
    """3-band float32 image and a mask coded 1..3, with nodata in the image (rows 0-4) and the mask (cols 0-2)."""
    image = rng.normal(100, 10, (h, w, 3)).astype(np.float32)
    image[:5, :, 1] = ND  # one band nodata: invalid under rule "any", valid under "all"
    image[6, 7] = np.nan
    mask = rng.integers(1, 4, (h, w)).astype(np.float32)
    mask[:, :3] = ND
    return image, mask


def test_valid_mask_any_all_and_non_finite():
    image = np.ones((3, 4, 2), np.float32)
    image[0, 0, 0] = -5
    image[1, 1] = -5
    image[2, 2, 1] = np.inf
    assert valid_mask(image, -5).sum() == 12 - 3
    assert valid_mask(image, -5, "all").tolist()[1][1] is False and valid_mask(image, -5, "all")[0, 0]
    assert not valid_mask(image, None, "all")[2, 2]  # +-Inf/NaN in any band: invalid whatever the rule
    assert valid_mask(image, None).sum() == 11
    # integer images without a nodata value they can hold need no pass at all
    assert not needs_check(np.uint8, None) and not needs_check(np.uint8, -99999) and needs_check(np.uint16, 0)
    assert needs_check(np.float32, None)


def test_resolve_nodata_auto_uses_the_file_then_the_checkpoint():
    trained = Nodata("auto", -7.0, "any")
    assert resolve_nodata("auto", -1.0, trained) == -1.0
    assert resolve_nodata("auto", None, trained) == -7.0
    assert resolve_nodata("auto", -1.0, Nodata(None)) is None  # trained with nodata switched off
    assert resolve_nodata(3, -1.0, trained) == 3.0 and resolve_nodata(None, -1.0, trained) is None


def test_normalisation_from_valid_pixels_only(rng):
    image = rng.normal(50, 5, (30, 30, 2)).astype(np.float32)
    image[:10] = ND
    valid = valid_mask(image, ND)
    polluted = Normalization.from_images([image])
    clean = Normalization.from_images([image], valid=[valid])
    assert polluted.mean[0] < -10000  # what the issue saw
    np.testing.assert_allclose(clean.mean, image[10:].reshape(-1, 2).mean(0), rtol=1e-5)
    np.testing.assert_allclose(clean.std, image[10:].reshape(-1, 2).std(0), rtol=1e-4)
    pct = Normalization.from_images([image], valid=[valid], method="percentile")
    low, high = np.percentile(image[10:].reshape(-1, 2), [1, 99], axis=0)
    np.testing.assert_allclose(pct.apply(np.stack([low, high])[None]).reshape(2, 2), [[-1, -1], [1, 1]], atol=1e-4)


def test_float_masks_with_class_values_and_nodata_become_ignored_labels(tmp_path, rng):
    image, mask = scene(rng)
    images, masks = write_pair(tmp_path, "a", image, mask)
    items, classes, ignore = load_folder(images, masks, rules=PixelRules(class_values=(1, 2, 3)))
    labels = items[0].mask
    assert ignore == 255 and classes.names == ("value1", "value2", "value3")
    assert (labels[:, :3] == 255).all() and (labels[:5] == 255).all() and labels[6, 7] == 255
    inside = labels[5:, 3:]
    ok = inside != 255
    np.testing.assert_array_equal(inside[ok], mask[5:, 3:][ok].astype(int) - 1)
    # rule "all": rows 0-4 have two valid bands, so their labels stay
    items, _, _ = load_folder(images, masks, rules=PixelRules(nodata_rule="all", class_values=(1, 2, 3)))
    assert (items[0].mask[:5, 3:] != 255).all()
    # nodata switched off for the image: -99999 is a value (NaN stays invalid); the mask's own tag still applies
    items, _, _ = load_folder(images, masks, rules=PixelRules(nodata=None, class_values=(1, 2, 3)))
    assert (items[0].mask[:5, 3:] != 255).all() and items[0].mask[6, 7] == 255 and (items[0].mask[:, :3] == 255).all()


def test_unlisted_mask_value_and_non_integral_values_are_one_line_errors(tmp_path, rng):
    image, mask = scene(rng)
    mask[10:12, 10:13] = 9
    images, masks = write_pair(tmp_path, "a", image, mask)
    with pytest.raises(UnetsegError, match=r"a\.tif: mask value 9 \(6 pixel\(s\)\) is not in class_values"):
        load_folder(images, masks, rules=PixelRules(class_values=(1, 2, 3)))
    mask[10:12, 10:13] = 1.5
    write_pair(tmp_path, "a", image, mask)
    with pytest.raises(UnetsegError, match=r"a\.tif: index mask holds non-integral value 1\.5"):
        load_folder(images, masks)
    mask[10:12, 10:13] = 2.0  # float masks holding integral values are fine
    write_pair(tmp_path, "a", image, mask)
    items, classes, _ = load_folder(images, masks)
    assert classes.num_classes == 4 and items[0].mask.dtype == np.uint8  # ids 0..3: 0 is a class here


def test_image_without_a_valid_pixel_is_an_error_naming_it(tmp_path, rng):
    image, mask = scene(rng)
    image[:] = ND
    images, masks = write_pair(tmp_path, "empty", image, mask)
    with pytest.raises(UnetsegError, match=r"empty\.tif: no valid pixel"):
        load_folder(images, masks)


def folder_cfg(images, masks, **extra):
    return parse_data_config({"source": "folder", "images": str(images), "masks": str(masks), "patch_size": 32,
                              "patches_per_epoch": 4, "weight_map": False, "augment": False, **extra})


def test_training_data_ignores_invalid_pixels_and_fills_them_with_the_mean(tmp_path, rng):
    for stem in ("a", "b", "c"):
        write_pair(tmp_path, stem, *scene(rng))
    cfg = folder_cfg(tmp_path / "images", tmp_path / "masks", class_values=[1, 2, 3], val_files=["c"])
    train, val, classes, norm = build_datasets(cfg, input_size=32, margin=0)
    assert 95 < min(norm.mean) and max(norm.mean) < 105 and max(norm.std) < 12  # nodata excluded
    assert train.ignore_index == 255 and classes.num_classes == 3
    padded = train.images[0]
    assert np.isfinite(padded).all() and padded.min() > 0  # filled with the band means
    np.testing.assert_allclose(norm.apply(padded[:5, :, :])[..., 1], 0, atol=1e-4)  # 0 once normalised
    assert train.report.split == {"mode": "files", "train": {"files": ["a", "b"]}, "val": {"files": ["c"]}}
    assert train.report.nodata.to_dict() == {"setting": "auto", "value": ND, "rule": "any"}
    assert np.isnan(val.images[0][6, 7]).all()  # validation images stay as read; prediction applies the rule
    augmented, *_ = build_datasets(folder_cfg(tmp_path / "images", tmp_path / "masks", class_values=[1, 2, 3],
                                              val_files=["c"], augment=True), input_size=32, margin=0)
    low, high = augmented.augmenter.value_range
    assert low.min() > 0 and high.max() < 200  # the augmenter's range is that of the valid pixels


def test_warnings_for_0_255_masks_and_classes_without_pixels(tmp_path, rng):
    image = rng.normal(0, 1, (32, 32)).astype(np.float32)
    mask = np.where(rng.random((32, 32)) > 0.5, 255, 0).astype(np.uint8)
    write_pair(tmp_path, "a", image, mask, image_tags=[], mask_tags=[])
    write_pair(tmp_path, "b", image, mask, image_tags=[], mask_tags=[])
    cfg = folder_cfg(tmp_path / "images", tmp_path / "masks", ignore_index=255, val_fraction=0.5)
    train, *_ = build_datasets(cfg, input_size=32, margin=0)
    assert any("class_values: [0, 255]" in w for w in train.report.warnings)
    assert any("no pixel in the training set: class1" in w for w in train.report.warnings)
    cfg = folder_cfg(tmp_path / "images", tmp_path / "masks", class_values=[0, 255], val_fraction=0.5)
    train, _, classes, _ = build_datasets(cfg, input_size=32, margin=0)
    assert classes.num_classes == 2 and train.report.warnings == []


def test_region_split_holds_out_blocks_with_a_gap(tmp_path, rng):
    image, mask = scene(rng, 64, 64)
    images, masks = write_pair(tmp_path, "one", image, mask)
    train, val = folder_splits(images, masks, rules=PixelRules(class_values=(1, 2, 3)), split="regions",
                               split_grid=(2, 2), val_fraction=0.25, seed=3, gap=5)
    record = train.info["split"]
    assert record["mode"] == "regions" and len(record["val"]["regions"]) == 1 and len(record["train"]["regions"]) == 3
    block = record["val"]["regions"][0]
    (r0, r1), (c0, c1) = block["rows"], block["cols"]
    assert val.info["stems"] == [f"one@r{block['block'][0]}c{block['block'][1]}"]
    np.testing.assert_array_equal(val.images[0], image[r0:r1, c0:c1])  # validation sees its block as read
    valid, labels = train.info["valid"][0], train.masks[0]
    assert not valid[r0:r1, c0:c1].any()  # training never sees validation pixels (they are filled)...
    grown = (slice(max(r0 - 5, 0), r1 + 5), slice(max(c0 - 5, 0), c1 + 5))
    assert (labels[grown] == 255).all()  # ...nor learns a label within the gap around them
    outside = np.ones(labels.shape, bool)
    outside[grown] = False
    outside[:, :3] = False  # the mask's own nodata
    assert (labels[outside & valid] != 255).all()
    with pytest.raises(UnetsegError, match="takes all 4 region block"):
        folder_splits(images, masks, rules=PixelRules(class_values=(1, 2, 3)), split="regions", split_grid=(2, 2),
                      val_fraction=0.9)


def test_config_checks_class_values_and_split_keys(tmp_path):
    with pytest.raises(UnetsegError, match="class_values must be distinct integral"):
        parse_data_config({"source": "folder", "images": "i", "masks": "m", "class_values": [1, 1.5]})
    with pytest.raises(UnetsegError, match="ignore_index=2 is a class id"):
        parse_data_config({"source": "folder", "images": "i", "masks": "m", "class_values": [1, 2, 3],
                           "ignore_index": 2})
    with pytest.raises(UnetsegError, match="split_grid"):
        parse_data_config({"source": "folder", "images": "i", "masks": "m", "split_grid": [1, 1]})
    cfg = parse_data_config({"source": "folder", "images": "i", "masks": "m", "nodata": -5, "nodata_rule": "all"})
    assert cfg.nodata == -5 and cfg.nodata_rule == "all" and parse_data_config({}).nodata == "auto"
