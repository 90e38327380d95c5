import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from unetseg.config.data import DataConfig, parse_data_config
from unetseg.data.dataset import TrainPatches, component_instances
from unetseg.data.normalization import Normalization
from unetseg.data.samples import load_sample
from unetseg.errors import UnetsegError
from unetseg.models.sizes import SizeRule
from unetseg.training.datasets import build_datasets, training_weights

PAPER = SizeRule(depth=4, padding="valid")


def sample_cfg(name, **kw):
    return DataConfig(source="sample", sample=name, patches_per_epoch=kw.pop("patches_per_epoch", 4), **kw)


def test_valid_model_shapes_and_nuclei_weight_map():
    size = PAPER.valid_input_size(572)
    assert (size, PAPER.margin, PAPER.output_size(size)) == (572, 92, 388)
    train, val, classes, norm = build_datasets(sample_cfg("nuclei"), input_size=size, margin=PAPER.margin)
    item = train[0]
    assert item["image"].shape == (1, 572, 572) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (388, 388) and item["mask"].dtype == torch.int64
    assert item["weight"].shape == (388, 388) and item["weight"].dtype == torch.float32
    assert classes.names == ("background", "nucleus")
    assert len(val) == 1 and val[0][0].shape == (512, 128) and val[0][0].dtype == np.uint8
    assert isinstance(norm, Normalization)
    assert norm.mean[0] == pytest.approx(load_sample("nuclei", "train").images[0].mean() / 255, rel=1e-6)
    # the paper's border weights exist between nuclei (w0 = 10 on top of w_c = 1)
    assert max(float(train[i]["weight"].max()) for i in range(4)) > 5
    assert abs(float(item["image"].mean())) < 3


def test_same_model_shapes_and_ones_without_instances():
    train, val, classes, _ = build_datasets(sample_cfg("brain"), input_size=128, margin=0)
    item = train[1]
    assert item["image"].shape == (1, 128, 128)
    assert item["mask"].shape == (128, 128) and item["weight"].shape == (128, 128)
    assert torch.all(item["weight"] == 1.0)
    assert classes.num_classes == 3 and len(val) > 10


def test_balanced_class_weights_without_instances():
    cfg = sample_cfg("brain", weight_map={"class_weights": "balanced"})
    train, *_ = build_datasets(cfg, input_size=128, margin=0)
    item = train[0]
    assert len(torch.unique(item["weight"])) > 1
    assert torch.all(item["weight"] > 0)


def test_masks_integer_and_in_range_after_augmentation():
    aug = {name: {"p": 1.0} for name in ("flips", "rot90", "affine", "brightness_contrast", "gamma", "elastic")}
    cfg = sample_cfg("fashion-scenes", augment=aug, patches_per_epoch=6, ignore_index=255,
                     sample_options={"size": 96, "n_scenes": 2})
    train, _, classes, _ = build_datasets(cfg, input_size=92 + 2 * 30, margin=30)
    for i in range(len(train)):
        item = train[i]
        assert item["mask"].shape == (92, 92)
        values = set(torch.unique(item["mask"]).tolist())
        assert values <= set(range(classes.num_classes)) | {255}
        assert torch.all(item["weight"][item["mask"] == 255] == 0)
        assert torch.isfinite(item["image"]).all()


def test_small_images_padded_up_with_ignore_label():
    # brain slices are 208x176: 572 - 2*92 = 388 > 176 -> padded; the invented part is ignored
    cfg = sample_cfg("brain", ignore_index=255, augment=False)
    train, *_ = build_datasets(cfg, input_size=572, margin=92)
    item = train[0]
    assert item["mask"].shape == (388, 388)
    assert (item["mask"] == 255).any() and (item["mask"] < 3).any()
    assert torch.all(item["weight"][item["mask"] == 255] == 0)


def test_reproducible_for_seed_epoch_index():
    cfg = sample_cfg("nuclei", patches_per_epoch=3)
    a, *_ = build_datasets(cfg, input_size=188, margin=92, seed=5)
    b, *_ = build_datasets(cfg, input_size=188, margin=92, seed=5)
    c, *_ = build_datasets(cfg, input_size=188, margin=92, seed=6)
    for i in range(3):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["mask"], b[i]["mask"])
        assert torch.equal(a[i]["weight"], b[i]["weight"])
    assert not torch.equal(a[0]["image"], c[0]["image"])
    first = a[0]["image"]
    a.set_epoch(1)
    assert not torch.equal(a[0]["image"], first)
    a.set_epoch(0)
    assert torch.equal(a[0]["image"], first)
    # DataLoader workers see the same items as the main process
    loaded = next(iter(DataLoader(a, batch_size=3, num_workers=2)))
    assert torch.equal(loaded["image"], torch.stack([a[i]["image"] for i in range(3)]))


def test_folder_source_end_to_end(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        tile = rng.integers(0, 65535, (40, 48, 3), dtype=np.uint16)
        cv2.imwrite(str(images / f"t{i}.png"), tile)
        rgb = np.zeros((40, 48, 3), np.uint8)
        rgb[:, 20:] = (0, 200, 0)
        rgb[0, 0] = (9, 9, 9)
        cv2.imwrite(str(masks / f"t{i}.png"), rgb[..., ::-1])
    cfg = parse_data_config({
        "source": "folder", "images": str(images), "masks": str(masks), "mask_mode": "color",
        "classes": [{"name": "bg", "color": [0, 0, 0]}, {"name": "leaf", "color": [0, 200, 0]}],
        "ignore_index": 255, "ignore_color": [9, 9, 9], "val_files": ["t2"], "patches_per_epoch": 2,
    })
    train, val, classes, norm = build_datasets(cfg, input_size=32, margin=0)
    assert classes.names == ("bg", "leaf") and len(norm.mean) == 3
    assert val.names == ["t2"] and val[0][0].shape == (40, 48, 3) and val[0][0].dtype == np.uint16
    assert set(np.unique(val[0][1])) == {0, 1, 255}
    item = train[0]
    assert item["image"].shape == (3, 32, 32)
    assert set(torch.unique(item["mask"]).tolist()) <= {0, 1, 255}


def test_config_errors_name_the_key():
    with pytest.raises(UnetsegError, match=r"'data\.augment\.flipz': unknown key"):
        parse_data_config({"sample": "nuclei", "augment": {"flipz": True}})
    with pytest.raises(UnetsegError, match=r"'data\.patch_sise': unknown key"):
        parse_data_config({"sample": "nuclei", "patch_sise": 3})
    with pytest.raises(UnetsegError, match="source='folder' requires images and masks"):
        parse_data_config({"source": "folder"})
    with pytest.raises(UnetsegError, match="mask_mode='color' requires classes"):
        parse_data_config({"source": "folder", "images": "a", "masks": "b", "mask_mode": "color"})
    with pytest.raises(UnetsegError, match=r"'data\.val_fraction': .*less than 1 \(got 1\.5\)"):
        parse_data_config({"sample": "brain", "val_fraction": 1.5})
    with pytest.raises(UnetsegError, match="sample='mnist' is not a built-in sample"):
        parse_data_config({"sample": "mnist"})
    with pytest.raises(UnetsegError, match="ignore_index=1 is a class id"):
        parse_data_config({"source": "folder", "images": "a", "masks": "b", "ignore_index": 1,
                           "classes": [{"name": "a"}, {"name": "b"}]})
    cfg = parse_data_config({"sample": "nuclei", "augment": {"elastic": False, "gamma": {"p": 0.1}}})
    assert not cfg.augment.elastic.enabled and cfg.augment.gamma.p == 0.1 and cfg.augment.flips.enabled
    assert parse_data_config(None).sample == "nuclei"


def test_bad_sample_option_and_tiny_input():
    with pytest.raises(UnetsegError, match="sample_options"):
        build_datasets(sample_cfg("nuclei", sample_options={"colour": 1}), input_size=188, margin=92)
    split = load_sample("nuclei", "train")
    with pytest.raises(UnetsegError, match="leaves no output"):
        TrainPatches(split.images, split.masks, None, input_size=100, margin=60, normalization=Normalization())


def test_weights_from_connected_components_for_data_without_instances():
    mask = np.zeros((40, 60), np.uint8)
    mask[5:35, 5:28] = 1
    mask[5:35, 30:55] = 1   # 2-px background gap between two class-1 objects
    mask[0, 0] = 255
    inst = component_instances(mask, ignore_index=255)
    assert inst.max() == 2 and inst[0, 0] == 0
    split = load_sample("brain", "val")
    split.masks, split.images, split.instances = [mask], [mask], None
    on = DataConfig(sample="brain", ignore_index=255, weight_map={"from_components": True})
    weights = training_weights(split, on)[0]
    assert weights[20, 28] > 5 and weights[0, 0] == 0
    assert training_weights(split, DataConfig(sample="brain", ignore_index=255)) is None
