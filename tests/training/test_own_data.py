"""Training on users' own data as it comes: nodata, value-coded masks, one-scene region split, guard rails,
and the shipped real Landsat scene."""
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

import unetseg
from unetseg.cli import main
from unetseg.config import load_config
from unetseg.config.data import parse_data_config
from unetseg.losses import build_loss
from unetseg.models.precision import Precision
from unetseg.training import train
from unetseg.training.datasets import build_datasets
from unetseg.training.distributed import DistContext
from unetseg.training.loop import NonFiniteLoss, StepState, train_epoch

from ..data.test_nodata import ND, scene, write_pair
from .conftest import make_config

ROOT = Path(__file__).resolve().parents[2]
LANDSAT = ROOT / "unetseg" / "data" / "samples" / "landsat_nc"


def test_one_scene_run_with_nodata_class_values_and_region_split(tmp_path, rng):
    image, mask = scene(rng, 64, 64)
    write_pair(tmp_path, "scene", image, mask)
    cfg = make_config(
        model={"padding": "same"},
        data={"source": "folder", "sample": None, "images": str(tmp_path / "images"), "masks": str(tmp_path / "masks"),
              "class_values": [1, 2, 3], "split": "regions", "split_grid": [2, 2], "val_fraction": 0.25,
              "patch_size": 32, "patches_per_epoch": 4, "weight_map": False},
        train={"epochs": 1}, display={"bands": [2, 1, 0]})
    result = train(cfg, tmp_path / "run", progress=False)
    run = result.run_dir
    split = json.loads((run / "split.json").read_text())
    assert split["mode"] == "regions" and split["train"]["files"] == ["scene"] and len(split["val"]["regions"]) == 1
    data = json.loads((run / "summary.json").read_text())["data"]
    assert all(95 < m < 105 for m in data["normalization"]["mean"])  # the -99999 pixels are not in them
    assert data["nodata"] == {"setting": "auto", "value": ND, "rule": "any"}
    meta = unetseg.load_model(run / "best.pt").meta
    assert meta.nodata.value == ND and meta.class_values == (1, 2, 3) and meta.ignore_index == 255
    assert meta.display_bands == (2, 1, 0) and (run / "samples.png").exists()
    assert np.isfinite(result.best_miou)


def test_patch_larger_than_every_image_is_clamped_with_a_warning(tmp_path, rng):
    image, mask = scene(rng, 40, 48)
    write_pair(tmp_path, "a", image, mask)
    cfg = parse_data_config({"source": "folder", "images": str(tmp_path / "images"),
                             "masks": str(tmp_path / "masks"), "class_values": [1, 2, 3], "val_fraction": 0,
                             "patch_size": 512, "augment": False, "weight_map": False})
    model = unetseg.UNet(3, 3, base_channels=4, depth=2)
    train_ds, *_ = build_datasets(cfg, input_size=model.valid_input_size(512), margin=model.margin,
                                  fit_size=model.valid_input_size)
    assert train_ds.input_size <= 40 + 2 * model.margin and model.valid_input_size(train_ds.input_size) == train_ds.input_size
    assert any("patch_size=512 is larger than every training image" in w for w in train_ds.report.warnings)


def test_non_finite_input_is_reported_as_input_not_as_an_optimiser_problem():
    model = unetseg.UNet(2, 2, base_channels=4, depth=2, padding="same")
    image = torch.zeros(2, 2, 32, 32)
    image[1, 0, 3, 4] = float("nan")
    batch = {"image": image, "mask": torch.zeros(2, 32, 32, dtype=torch.long), "weight": torch.ones(2, 32, 32),
             "source": torch.tensor([0, 3])}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLoss) as info:
        train_epoch(ctx=DistContext(0, 1, 0, torch.device("cpu")), model=model, loader=[batch],
                    loss_fn=build_loss(make_config().loss, None, 2), optimizer=optimizer,
                    scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0), scaler=None,
                    precision=Precision(None, False), channels_last=False, grad_clip=None, state=StepState(),
                    budget_spent=lambda: False, clock=lambda: 0.0, total_epochs_label="1", log_every=1,
                    last_miou=None, progress=False)
    assert info.value.bad_inputs == 1 and info.value.sources == (3,)


def test_trainer_names_the_files_of_a_non_finite_input(tmp_path):
    from types import SimpleNamespace

    from unetseg.errors import UnetsegError
    from unetseg.training.datasets import DataReport
    from unetseg.training.trainer import Trainer

    trainer = Trainer.__new__(Trainer)
    trainer.run_dir, trainer.ctx, trainer.log = tmp_path, DistContext(0, 1, 0, torch.device("cpu")), SimpleNamespace(rows=[])
    trainer.c = SimpleNamespace(train_ds=SimpleNamespace(report=DataReport(files=["a.tif", "b.tif"])))
    with pytest.raises(UnetsegError, match=r"input batch holds 3 NaN/Inf value\(s\), from b\.tif") as info:
        trainer._non_finite(NonFiniteLoss(1, 2, float("nan"), 3, (1,)))
    assert "train.lr" not in str(info.value)


def test_shipped_landsat_scene_trains_from_its_config_and_predicts_with_georeferencing(tmp_path):
    cfg = load_config(ROOT / "configs" / "landsat_nc_unet.yaml")
    train_ds, val, classes, norm = build_datasets(cfg.data, input_size=128, margin=0, context=20)
    assert classes.num_classes == 7 and train_ds.ignore_index == 255 and len(val) == 4
    assert len(norm.mean) == 5 and all(40 < m < 120 for m in norm.mean) and all(5 < s < 40 for s in norm.std)
    assert train_ds.report.nodata.value == ND and train_ds.report.warnings == []
    model = unetseg.UNet(5, 7, base_channels=4, depth=2, padding="same")
    model.normalization = norm
    unetseg.save_checkpoint(model, tmp_path / "m.pt", nodata=train_ds.report.nodata.to_dict())
    assert main(["predict", "--checkpoint", str(tmp_path / "m.pt"), "--input", str(LANDSAT / "images"),
                 "--output", str(tmp_path / "out"), "--amp", "off", "--format", "index,summary"]) == 0
    scene_ = tifffile.imread(LANDSAT / "images" / "nc_landsat.tif")
    invalid = (scene_ == ND).any(axis=0)
    with tifffile.TiffFile(tmp_path / "out" / "nc_landsat_index.tif") as tif:
        page = tif.pages.first
        labels = page.asarray()
        assert page.tags[42113].value.strip("\x00") == "255" and page.tags[33922].value[3:5] == (630534.0, 228114.0)
    assert (labels[invalid] == 255).all() and (labels[~invalid] < 7).all()
    summary = json.loads((tmp_path / "out" / "nc_landsat_summary.json").read_text())
    assert summary["nodata_pixels"] == int(invalid.sum()) == 33209


def test_a_tiff_pixel_size_is_recorded_and_predict_segments_the_matching_pyramid_level(tmp_path, rng):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for n in range(2):
        image = rng.integers(0, 256, (64, 64), dtype=np.uint8)
        tifffile.imwrite(tmp_path / "images" / f"s{n}.tif", image, resolution=(5e3, 5e3),
                         resolutionunit="CENTIMETER")  # 2 um pixels
        tifffile.imwrite(tmp_path / "masks" / f"s{n}.tif", (image > 128).astype(np.uint8))
    cfg = make_config(model={"padding": "same", "dropout": 0.0},
                      data={"source": "folder", "sample": None, "images": str(tmp_path / "images"),
                            "masks": str(tmp_path / "masks"), "val_fraction": 0.5, "weight_map": False},
                      train={"epochs": 1})
    best = train(cfg, tmp_path / "run", progress=False).best_checkpoint
    meta = unetseg.load_model(best).meta
    assert meta.pixel_size == pytest.approx((2.0, 2.0)) and meta.pixel_unit == "micrometer"

    pyramid = rng.integers(0, 256, (128, 96), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "pyr.tif") as tif:  # 1 um pixels, then 2 and 4 um
        tif.write(pyramid, subifds=2, tile=(32, 32), resolution=(1e4, 1e4), resolutionunit="CENTIMETER")
        tif.write(pyramid[::2, ::2], subfiletype=1, tile=(32, 32))
        tif.write(pyramid[::4, ::4], subfiletype=1, tile=(32, 32))
    assert main(["predict", "--checkpoint", str(best), "--input", str(tmp_path / "pyr.tif"), "--output",
                 str(tmp_path / "out"), "--format", "index", "--amp", "off"]) == 0
    assert tifffile.imread(tmp_path / "out" / "pyr_index.tif").shape == (64, 48)  # level 1: 2 um, as trained


def test_data_pixel_size_overrides_the_files_and_is_checked(tmp_path):
    from unetseg.errors import UnetsegError

    assert parse_data_config({"pixel_size": [0.5, 0.25], "pixel_unit": "meter"}).pixel_size == (0.5, 0.25)
    with pytest.raises(UnetsegError, match="pixel_size"):
        parse_data_config({"pixel_size": -1})
