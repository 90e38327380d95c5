"""Measuring the halo a trained same-padding model's tiles need (stored in best.pt for halo="auto")."""
import copy

import numpy as np
import pytest

from unetseg.data.samples import load_sample
from unetseg.models.geometry import Geometry
from unetseg.tiling import predict_tiled, tiled
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


def test_bisection_finds_the_smallest_passing_halo_in_few_candidates(trained_same_unet, val_images, monkeypatch):
    from unetseg.training import halo as halo_module

    model = copy.deepcopy(trained_same_unet)
    probe = val_images[0]
    candidates = halo_candidates(Geometry.of(model))
    tried = []
    real = halo_module.predict_tiled

    def counted(*args, **kwargs):
        if kwargs["tile_size"] == 2 * halo_module.PROBE_SIDE:  # one whole-probe reference per candidate and probe
            tried.append(kwargs["halo"])
        return real(*args, **kwargs)

    monkeypatch.setattr(halo_module, "predict_tiled", counted)
    found = measure_halo(model, [probe])
    assert len(tried) <= halo_module.MAX_CANDIDATES < len(candidates)
    monkeypatch.setattr(halo_module, "predict_tiled", real)
    probe_640 = halo_module._probe(probe)

    def agreement(halo):  # the linear search's measure, candidate by candidate
        options = dict(amp=False, compile=False, batch_size=1, engine="torch", halo=halo)
        return (predict_tiled(model, probe_640, tile_size=halo_module.PROBE_TILE, **options)
                == predict_tiled(model, probe_640, tile_size=2 * halo_module.PROBE_SIDE, **options)).mean()

    smallest = next(h for h in candidates if h == candidates[-1] or agreement(h) >= found.target)
    assert found.pixels == smallest


def test_a_halo_measurement_without_time_keeps_the_exact_halo(trained_same_unet, val_images):
    lines = []
    found = measure_halo(copy.deepcopy(trained_same_unet), val_images, seconds=1e-6, report=lines.append)
    geometry = Geometry.of(trained_same_unet)
    assert found.pixels == geometry.halo_for("exact") and found.probe_pixels == 0 and lines == []
