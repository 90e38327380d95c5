"""The typed checkpoint record: round trips, schema-1 checkpoints still load, unknown keys are named."""
import pytest
import torch

import unetseg
from unetseg.data.nodata import Nodata
from unetseg.models.checkpoint import CHECKPOINT_FORMAT
from unetseg.models.meta import SCHEMA_VERSION, CheckpointMeta, HaloRecord, InstanceRecord, TrainingRecord


def test_record_round_trips_through_a_checkpoint(tmp_path):
    model = unetseg.UNet(3, 2, base_channels=2, depth=1, padding="same")
    path = unetseg.save_checkpoint(
        model, tmp_path / "m.pt", class_names=["bg", "cell"], normalization=unetseg.Normalization((0.1,), (0.2,)),
        nodata=Nodata("auto", -9.0, "all"), ignore_index=255, class_values=[0, 7], pixel_size=[0.5, 0.25],
        pixel_unit="micrometer", halo={"pixels": 8, "agreement": 0.99995}, display_bands=[2, 1, 0], input_size=64,
        data={"images": 3}, training=TrainingRecord({"a": 1}, 4, 40, 0.7, "parent.pt"))
    meta = unetseg.load_model(path).meta
    assert meta.classes.names == ("bg", "cell") and meta.normalization.mean == (0.1,)
    assert meta.nodata == Nodata("auto", -9.0, "all") and meta.ignore_index == 255 and meta.class_values == (0, 7)
    assert meta.pixel_size == (0.5, 0.25) and meta.pixel_size_um() == 0.25
    assert meta.halo == HaloRecord(8, 0.99995) and meta.display_bands == (2, 1, 0) and meta.input_size == 64
    assert meta.training == TrainingRecord({"a": 1}, 4, 40, 0.7, "parent.pt") and meta.data == {"images": 3}
    assert meta.schema == SCHEMA_VERSION and meta.unetseg_version == unetseg.__version__
    assert CheckpointMeta.from_dict(meta.to_dict()) == meta
    relative = meta.updated(instances=InstanceRecord((1,), 0, 2, "distance", 4, 3, relative=True))
    assert CheckpointMeta.from_dict(relative.to_dict()).instances.layout(("cell",)).relative


def test_a_schema_1_checkpoint_still_loads(tmp_path):
    """The free meta dict unetseg wrote before the typed record: classes as a table or as names + colours,
    display bands under "display", the run's config and position at the top."""
    model = unetseg.UNet(1, 2, base_channels=2, depth=1, padding="same")
    old = {"normalization": {"mean": [0.3], "std": [0.2], "scale": None}, "class_names": ["bg", "fg"],
           "class_colors": [[0, 0, 0], [9, 9, 9]], "nodata": {"setting": "auto", "value": None, "rule": "any"},
           "display": {"bands": None}, "class_values": None, "input_size": 64, "config": {"model": {"depth": 1}},
           "epoch": 3, "global_step": 30, "val_miou": 0.5, "halo": {"pixels": 4, "agreement": 1.0, "target": 0.9999,
                                                                       "probe_pixels": 10}, "ignore_index": None}
    torch.save({"format": CHECKPOINT_FORMAT, "model": model.config, "state_dict": model.state_dict(), "meta": old},
               tmp_path / "old.pt")
    meta = unetseg.load_model(tmp_path / "old.pt").meta
    assert meta.schema == 1 and meta.classes.colors[1] == (9, 9, 9) and meta.normalization.mean == (0.3,)
    assert meta.training.config == {"model": {"depth": 1}} and meta.training.epoch == 3 and meta.halo.pixels == 4
    assert meta.display_bands is None and meta.input_size == 64


def test_unknown_meta_names_are_refused_when_saving_and_ignored_when_loading(tmp_path):
    model = unetseg.UNet(1, 2, base_channels=2, depth=1, padding="same")
    with pytest.raises(TypeError, match="unknown checkpoint meta key\\(s\\): colour_map"):
        unetseg.save_checkpoint(model, tmp_path / "m.pt", colour_map=[1])
    assert CheckpointMeta.from_dict({"added_by_a_newer_unetseg": 1, "input_size": 8}).input_size == 8


def test_model_meta_takes_a_record_or_its_dict_form():
    model = unetseg.UNet(1, 2, base_channels=2, depth=1, padding="same")
    model.meta = {"pixel_size": 2.0}
    assert model.meta.pixel_size == (2.0, 2.0)
    model.normalization = unetseg.Normalization((0.5,), (0.1,))
    assert model.meta.normalization.std == (0.1,) and model.meta.pixel_size == (2.0, 2.0)
    with pytest.raises(TypeError, match="CheckpointMeta"):
        model.meta = ["nodata"]
