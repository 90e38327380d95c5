"""halo="exact" (receptive field: tiled == whole image), halo="auto" (the measured halo) and bad halos."""
import copy

import numpy as np
import pytest

from unetseg.errors import UnetsegError
from unetseg.models.geometry import Geometry
from unetseg.models.meta import HaloRecord
from unetseg.tiling import predict_tiled, tiled

from ..conftest import tiny_unet, whole_image_probs


def test_exact_halo_tiles_equal_the_whole_image(rng):
    model = tiny_unet("same", depth=3)
    image = rng.integers(0, 256, (150, 231), dtype=np.uint8)
    context = Geometry.of(model).halo_for("exact")
    expected = whole_image_probs(model, image, context)
    got = predict_tiled(model, image, tile_size=64, halo="exact", output="probs", amp=False)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_auto_halo_is_the_checkpoints_measured_one_and_exact_ignores_it(rng):
    model = copy.deepcopy(tiny_unet("same", depth=3))
    geometry = Geometry.of(model)
    image = rng.integers(0, 256, (200, 200), dtype=np.uint8)
    assert tiled(model, image).report.context == geometry.halo_for("exact")  # nothing measured: exact
    model.meta = model.meta.with_halo(HaloRecord(8))
    assert tiled(model, image).report.context == 8
    report: dict = {}  # the report= dict of predict_tiled, kept for compatibility
    predict_tiled(model, image, halo="exact", report=report)
    assert report["context"] == geometry.halo_for("exact")


@pytest.mark.parametrize("bad", [-1, "wide", 1.5, True])
def test_bad_halo_is_a_user_error(bad):
    with pytest.raises(UnetsegError, match="halo="):
        predict_tiled(tiny_unet("same", depth=2), np.zeros((40, 40), np.uint8), halo=bad)
