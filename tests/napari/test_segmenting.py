"""Segmenting a layer without Qt: equal to predict_tiled, every output kind, pyramids read at one level only."""
import numpy as np
import pytest

import unetseg
from unetseg.data.samples import load_sample
from unetseg.errors import UnetsegError
from unetseg.napari.segmenting import Cancelled, SegmentSettings, load_checkpoints, segment_layer


@pytest.fixture(scope="module")
def nuclei():
    return load_sample("nuclei", "train").images[0]


class Counting:
    """An array that records the largest window read from it."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.largest = 0

    def __getitem__(self, key):
        out = np.asarray(self.data[key])
        self.largest = max(self.largest, out.size)
        return out


def test_labels_equal_predict_tiled_with_class_names(checkpoint, nuclei):
    settings = SegmentSettings(str(checkpoint), tile_size="256")
    (labels, kwargs, kind), = segment_layer(nuclei, settings, name="cells")
    model = unetseg.load_model(checkpoint)
    np.testing.assert_array_equal(labels, unetseg.predict_tiled(model, nuclei, tile_size=256))
    assert kind == "labels" and kwargs["name"] == "cells (classes)"
    assert kwargs["features"]["class"] == list(model.class_table.names)


def test_probabilities_uncertainty_and_instances(checkpoint, nuclei):
    model = unetseg.load_model(checkpoint)
    probs = segment_layer(nuclei, SegmentSettings(str(checkpoint), output="probabilities"))
    assert [k["name"] for _, k, _ in probs] == ["image p(background)", "image p(class1)"]
    np.testing.assert_allclose(probs[1][0], unetseg.predict_tiled(model, nuclei, output="probs")[..., 1], atol=1e-6)
    unc = segment_layer(nuclei, SegmentSettings(str(checkpoint), output="uncertainty", tta="flips"))
    assert [k["name"] for _, k, _ in unc] == ["image entropy", "image disagreement"]
    assert 0 <= unc[0][0].min() and unc[0][0].max() <= np.log(2) + 1e-6
    (ids, kwargs, kind), = segment_layer(nuclei, SegmentSettings(str(checkpoint), output="instances"))
    assert kind == "labels" and ids.max() == len(kwargs["features"]["index"]) > 10
    labels = unetseg.predict_tiled(model, nuclei)
    assert (ids[labels == 1] > 0).all()  # every class1 pixel is in an object; others only where holes are filled
    assert ((ids > 0) & (labels != 1)).sum() < 0.01 * (labels == 1).sum()
    assert kwargs["features"]["class"][0] == "class1" and len(kwargs["features"]["area_px"]) == ids.max()


def test_a_folds_folder_is_an_ensemble(tmp_path, checkpoint, nuclei):
    for k in range(2):
        (tmp_path / f"folds/fold{k}").mkdir(parents=True)
        (tmp_path / f"folds/fold{k}/best.pt").write_bytes(checkpoint.read_bytes())
    assert len(load_checkpoints(tmp_path / "folds")) == 2
    (labels, _, _), = segment_layer(nuclei, SegmentSettings(str(tmp_path / "folds")))
    np.testing.assert_array_equal(labels, unetseg.predict_tiled(unetseg.load_model(checkpoint), nuclei))


def test_a_pyramid_is_read_at_the_chosen_level_only(checkpoint, nuclei):
    full = Counting(np.kron(nuclei, np.ones((2, 2), np.uint8)))  # 1024^2 level 0
    half = Counting(nuclei)
    (labels, kwargs, _), = segment_layer([full, half], SegmentSettings(str(checkpoint), level=1, tile_size="256"),
                                         multiscale=True)
    assert full.largest == 0 and labels.shape == nuclei.shape
    assert kwargs["scale"] == (2.0, 2.0) and kwargs["translate"] == (0.5, 0.5)
    segment_layer([full, half], SegmentSettings(str(checkpoint), level=0, tile_size="256"), multiscale=True)
    assert 0 < full.largest < full.data.size / 2  # read by windows, never whole


def test_progress_reaches_the_total_and_cancel_stops(checkpoint, nuclei):
    seen = []
    segment_layer(nuclei, SegmentSettings(str(checkpoint), tile_size="256"), progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] and len(seen) > 1

    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        segment_layer(nuclei, SegmentSettings(str(checkpoint), tile_size="256"), progress=cancel)


@pytest.mark.parametrize("settings, message", [
    (SegmentSettings(""), "choose a checkpoint"),
    (SegmentSettings("/nonexistent/x.pt"), "no such checkpoint"),
    (SegmentSettings("CKPT", level=2), "has one level; level 2"),
])
def test_bad_settings_are_one_line_errors(checkpoint, nuclei, settings, message):
    if settings.checkpoint == "CKPT":
        settings = SegmentSettings(str(checkpoint), level=2)
    with pytest.raises(UnetsegError, match=message):
        segment_layer(nuclei, settings)
