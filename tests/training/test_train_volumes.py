"""Training a 3D U-Net on the user's volumes: a folder of NIfTI files (anisotropic, oblique) trains for a few steps
and writes a checkpoint whose normalisation is CT's; one volume splits into z slabs; per-volume z-score."""
import json

import numpy as np
import pytest

import unetseg
from unetseg.config import validate_config
from unetseg.data.normalization import Normalization
from unetseg.errors import UnetsegError
from unetseg.training import train
from unetseg.training.datasets import build_volume_datasets

from ..data.nifti_cases import SPACING, ct_case, write_cases
from .conftest import TINY, merge

MODEL3D = {"spatial_dims": 3, "base_channels": 2, "depth": 2, "padding": "same", "dropout": 0.0}


def folder_config(images, masks, **data):
    base = merge(TINY, {"model": MODEL3D, "train": {"epochs": 1, "val_every": 1}})
    base["data"] = {"source": "folder", "images": str(images), "masks": str(masks), "patch_size": 16,
                    "patches_per_epoch": 4, **data}
    return validate_config(base, "volumes")


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    images, masks = write_cases(root, n=3)
    # no validation volume: the run skips the halo measurement (seconds) and stays a few steps long
    cfg = folder_config(images, masks, normalize="ct", val_fraction=0.0)
    return train(cfg, root / "run", progress=False), images


def test_folder_of_volumes_trains_and_the_checkpoint_normalises_as_ct(ct_run):
    run, images = ct_run
    split = json.loads((run.run_dir / "split.json").read_text())
    assert split["mode"] == "files" and split["train"]["files"] == ["case0", "case1", "case2"]
    model = unetseg.load_model(run.best_checkpoint)
    assert model.spatial_dims == 3
    assert model.meta.spacing == pytest.approx(tuple(SPACING))  # the training voxels' size, recorded
    cases = [ct_case(int(stem[-1])) for stem in split["train"]["files"]]
    fg = np.concatenate([im[m > 0] for im, m in cases]).astype(np.float64) / 32767.0
    norm = model.normalization
    assert norm.clip is not None and not norm.per_image
    assert norm.mean[0] == pytest.approx(fg.mean()) and norm.std[0] == pytest.approx(fg.std())
    assert (norm.clip[0][0], norm.clip[1][0]) == pytest.approx(tuple(np.percentile(fg, [0.5, 99.5])))
    image, _ = ct_case(2)
    labels = unetseg.predict_tiled(model, image, amp=False)
    assert labels.shape == image.shape and labels.max() < 3


def rules():
    return unetseg.UNet(1, 2, base_channels=2, depth=2, padding="same", spatial_dims=3).axis_rules


def test_one_volume_trains_on_z_slabs_with_the_context_gap(tmp_path):
    images, masks = write_cases(tmp_path, n=1, shape=(24, 16, 16))
    cfg = folder_config(images, masks, normalize="zscore", val_fraction=0.25)
    patches, val, classes, norm = build_volume_datasets(cfg.data, rules=rules(), context=3)
    split = patches.report.split
    assert split["mode"] == "z-slabs" and split["gap"] == 3 and len(val.images) == 1 and val.images[0].shape[0] == 6
    assert patches.ignore_index == 255 and classes.num_classes == 3
    assert norm.per_image and norm.to_dict()["per_image"]
    assert patches.flip_axes == (1, 2) and patches.rotation_planes == [(1, 2)]  # 3 mm z: anisotropic
    item = patches[0]
    assert item["image"].shape[0] == 1 and item["mask"].shape == item["image"].shape[1:]


def test_volumes_refuse_2d_mask_modes_and_zscore_is_3d_only(tmp_path):
    images, masks = write_cases(tmp_path, n=2)
    cfg = folder_config(images, masks, mask_mode="instances")
    with pytest.raises(UnetsegError, match="masks are 2D only"):
        build_volume_datasets(cfg.data, rules=rules())
    base = merge(TINY, {"data": {"normalize": "zscore"}})
    with pytest.raises(UnetsegError, match="zscore .* applies to 3D models"):
        train(validate_config(base, "2d"), tmp_path / "r2d", progress=False)


def test_brain_sample_keeps_its_normalisation():
    cfg = validate_config(merge(TINY, {"model": MODEL3D, "data": {"sample": "brain", "sample_options": {"volume": True},
                                                                  "patch_size": 16}}), "brain")
    _, _, _, norm = build_volume_datasets(cfg.data, rules=rules())
    assert norm.clip is None and not norm.per_image and norm.scale is None
    assert isinstance(norm, Normalization) and norm.to_dict().keys() == {"mean", "std", "scale"}
    assert SPACING[0] > 1


def test_init_checkpoint_of_another_normalisation_kind_is_not_kept(tmp_path):
    images, masks = write_cases(tmp_path, n=2)
    cfg = folder_config(images, masks, normalize="ct", val_fraction=0.5)
    parent = Normalization(mean=(0.002,), std=(0.003,))  # plain statistics, no clip: another kind
    patches, _, _, norm = build_volume_datasets(cfg.data, rules=rules(), keep_normalization=parent)
    assert norm.clip is not None and norm != parent
    assert any("differs in kind" in w for w in patches.report.warnings)
    same_kind = Normalization(mean=norm.mean, std=norm.std, clip=((-0.1,), (0.5,)))
    _, _, _, kept = build_volume_datasets(cfg.data, rules=rules(), keep_normalization=same_kind)
    assert kept == same_kind  # close statistics of the same kind: the checkpoint's are kept
