"""Measuring the halo a trained same-padding model's tiles need (stored in best.pt for halo="auto")."""
import copy

import numpy as np
import pytest

from unetseg.data.samples import load_sample
from unetseg.inference import tiled
from unetseg.models.geometry import Geometry
from unetseg.training.halo import halo_candidates, measure_halo

from ..conftest import tiny_unet, whole_image_probs


def test_halo_candidates_run_from_zero_to_the_exact_halo():
    geometry = Geometry.of(tiny_unet("same", depth=3))
    assert halo_candidates(geometry) == list(range(0, geometry.halo_for("exact") + 1, geometry.stride))


@pytest.fixture(scope="module")
def val_images():
    return load_sample("nuclei", "val").images


def test_measured_halo_is_smaller_than_exact_and_reproduces_whole_image_labels(trained_same_unet, val_images):
    model = copy.deepcopy(trained_same_unet)
    geometry = Geometry.of(model)
    found = measure_halo(model, val_images)
    assert found.pixels % geometry.stride == 0 and found.pixels < geometry.halo_for("exact")
    assert found.agreement >= found.target == 0.9999

    model.meta = model.meta.with_halo(found)
    image = load_sample("nuclei", "train").images[0][:300, :300]  # not a probe image
    result = tiled(model, image)  # halo="auto" by default
    assert result.report.context == found.pixels
    whole = whole_image_probs(model, image, geometry.halo_for("exact")).argmax(-1)
    assert (result.output == whole).mean() >= 0.999


def test_valid_models_need_no_measured_halo():
    assert measure_halo(tiny_unet("valid", depth=2), [np.zeros((40, 40), np.uint8)]).pixels == 0
