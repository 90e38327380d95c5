"""halo="exact" (receptive field: tiled == whole image) and halo="auto" (measured after training)."""
import copy

import numpy as np
import pytest

from unetseg.data.samples import load_sample
from unetseg.errors import UnetsegError
from unetseg.inference import predict_tiled
from unetseg.inference.grid import Geometry
from unetseg.inference.halo import halo_candidates, measure_halo

from ..conftest import tiny_unet, whole_image_probs


def test_exact_halo_tiles_equal_the_whole_image(rng):
    model = tiny_unet("same", depth=3)
    image = rng.integers(0, 256, (150, 231), dtype=np.uint8)
    context = Geometry.of(model).halo_for("exact")
    expected = whole_image_probs(model, image, context)
    got = predict_tiled(model, image, tile_size=64, halo="exact", output="probs", amp=False)
    np.testing.assert_allclose(got, expected, atol=1e-4)


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
    assert found["pixels"] % geometry.stride == 0 and found["pixels"] < geometry.halo_for("exact")
    assert found["agreement"] >= found["target"] == 0.9999

    model.meta["halo"] = found
    image = load_sample("nuclei", "train").images[0][:300, :300]  # not a probe image
    report = {}
    tiled = predict_tiled(model, image, tile_size=256, amp=False, report=report)  # halo="auto" by default
    assert report["context"] == found["pixels"]
    whole = whole_image_probs(model, image, geometry.halo_for("exact")).argmax(-1)
    assert (tiled == whole).mean() >= 0.999
    # "exact" ignores the measurement
    predict_tiled(model, image, tile_size=256, amp=False, halo="exact", report=report)
    assert report["context"] == geometry.halo_for("exact")


def test_valid_models_need_no_measured_halo():
    assert measure_halo(tiny_unet("valid", depth=2), [np.zeros((40, 40), np.uint8)])["pixels"] == 0


@pytest.mark.parametrize("bad", [-1, "wide", 1.5, True])
def test_bad_halo_is_a_user_error(bad):
    with pytest.raises(UnetsegError, match="halo="):
        predict_tiled(tiny_unet("same", depth=2), np.zeros((40, 40), np.uint8), halo=bad)
