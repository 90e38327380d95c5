"""Training a 3D U-Net on volumes: the brain sample's slabs (the 2D run's split, as volumes), 3D patches,
validation by whole-volume tiled prediction, a best.pt that rebuilds the 3D model and segments the held-out slab."""
import math

import numpy as np
import pytest

import unetseg
from unetseg.data.samples import load_sample
from unetseg.errors import UnetsegError
from unetseg.training import train
from unetseg.training.budget import VOLUME_VAL_HALO
from unetseg.training.evaluate import score_images

from .conftest import make_config

TINY3D = {
    "model": {"spatial_dims": 3, "base_channels": 2, "depth": 2, "padding": "same", "dropout": 0.0},
    "data": {"sample": "brain", "sample_options": {"volume": True}, "patch_size": 24, "patches_per_epoch": 4},
    "train": {"epochs": 2, "val_every": 1},
}


VALIDATION_HALOS: list = []  # the halo each validation of run3d asked for


@pytest.fixture(scope="module")
def run3d(tmp_path_factory):
    from unetseg.training import trainer

    def spy(*args, **kwargs):
        VALIDATION_HALOS.append(kwargs.get("halo"))
        return score_images(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "score_images", spy)
        return train(make_config(**TINY3D), tmp_path_factory.mktemp("r3d") / "run", progress=False)


def test_3d_run_trains_validates_and_saves_a_3d_checkpoint(run3d):
    assert run3d.epochs == 2 and math.isfinite(run3d.best_miou)
    model = unetseg.load_model(run3d.best_checkpoint)
    halo = model.meta.halo  # measured on the validation volume within the run's bound (else the exact halo)
    assert model.spatial_dims == 3 and halo is not None and halo.pixels % model.stride == 0
    assert halo.pixels <= model.field_radius + model.stride
    assert (run3d.run_dir / "samples.png").is_file() and (run3d.run_dir / "curves.png").is_file()
    assert VALIDATION_HALOS == [VOLUME_VAL_HALO] * 2  # not the exact halo's context on every face of every tile
    val = load_sample("brain", "val", volume=True)
    labels = unetseg.predict_tiled(model, val.images[0], amp=False)
    assert labels.shape == val.images[0].shape and labels.max() < 3
    scores = score_images(model, list(zip(val.images, val.masks, strict=True)), num_classes=3, amp=False)
    assert scores["miou"] == pytest.approx(run3d.best_miou, abs=0.02)  # validation ran in fp32 too (amp off)


def test_3d_model_on_2d_images_is_a_one_line_error(tmp_path):
    config = make_config(model=TINY3D["model"], data={"sample": "brain", "patch_size": 24},
                         train={"epochs": 1})
    with pytest.raises(UnetsegError, match="needs volumes") as err:
        train(config, tmp_path / "r", progress=False)
    assert "\n" not in str(err.value)


def test_volume_sample_split_matches_the_slices():
    slices, volume = load_sample("brain", "val"), load_sample("brain", "val", volume=True)
    np.testing.assert_array_equal(np.stack(slices.images), volume.images[0])
    train_slices = load_sample("brain", "train")
    assert sum(len(v) for v in load_sample("brain", "train", volume=True).images) == len(train_slices.images)


def test_halo_is_measured_on_volume_probes():
    from unetseg.training.halo import measure_halo

    model = unetseg.UNet(1, 3, base_channels=2, depth=2, padding="same", spatial_dims=3).eval()
    found = measure_halo(model, load_sample("brain", "val", volume=True).images)
    assert found.probe_pixels == 96**3 and found.agreement >= found.target
    assert found.pixels % model.stride == 0 and found.pixels <= model.field_radius + model.stride
