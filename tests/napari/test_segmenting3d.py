"""A 3D model's checkpoint in the viewer: the volume on screen is segmented whole (not its plane), its labels keep
the layer's voxel size, stacks of volumes and bands-first volumes are read lazily, objects are 3D components."""
import numpy as np
import pytest
import torch
from scipy import ndimage

import unetseg
from unetseg.errors import UnetsegError
from unetseg.napari.segmenting import SegmentSettings, segment_layer

from ..conftest import randomized
from .test_segmenting import Counting


def volume_checkpoint(path, in_channels: int = 1, balanced_on=None):
    """A random 3D U-Net's checkpoint; ``balanced_on`` a volume: the head's bias set so that each class wins about
    a third of its voxels (a random network alone predicts one class nearly everywhere)."""
    torch.manual_seed(0)
    model = randomized(unetseg.UNet(in_channels, 3, base_channels=2, depth=2, padding="same", spatial_dims=3), 0)
    if balanced_on is not None:
        x = torch.from_numpy(balanced_on.astype(np.float32) / 255)[None, None]
        with torch.no_grad():
            raw = (model(x)[0].flatten(1) - model.head.bias[:, None]).numpy()
        grid = np.linspace(0.1, 0.9, 17)
        best = max(((b1, b2) for b1 in np.quantile(raw[0] - raw[1], grid) for b2 in np.quantile(raw[0] - raw[2], grid)),
                   key=lambda b: np.bincount((raw + np.array([0.0, *b])[:, None]).argmax(0), minlength=3).min())
        with torch.no_grad():
            model.head.bias.copy_(torch.tensor([0.0, *best], dtype=torch.float32))
    return unetseg.save_checkpoint(model.eval(), path), model


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(3)
    smooth = ndimage.gaussian_filter(rng.normal(size=(20, 36, 32)), 2.0)
    return np.clip(128 + 600 * smooth, 0, 255).astype(np.uint8)


def test_a_3d_model_segments_the_whole_volume_with_its_voxel_size(tmp_path, volume):
    path, model = volume_checkpoint(tmp_path / "vol.pt")
    settings = SegmentSettings(str(path), engine="torch", precision="fp32")
    (labels, kwargs, kind), = segment_layer(volume, settings, name="scan", scale=(3.0, 0.5, 0.5),
                                            translate=(10.0, 0.0, -2.0))
    expected = unetseg.predict_tiled(model, volume, amp=False, engine="torch")
    assert kind == "labels" and labels.shape == volume.shape
    np.testing.assert_array_equal(labels, expected)
    assert kwargs["scale"] == (3.0, 0.5, 0.5) and kwargs["translate"] == (10.0, 0.0, -2.0)
    probs = segment_layer(volume, SegmentSettings(str(path), engine="torch", precision="fp32", output="probabilities"),
                          scale=(3.0, 0.5, 0.5))
    assert len(probs) == 3 and probs[0][0].shape == volume.shape and probs[0][1]["scale"] == (3.0, 0.5, 0.5)
    np.testing.assert_allclose(sum(p for p, _, _ in probs), 1.0, atol=1e-5)


def test_a_stack_of_volumes_is_read_at_the_time_on_screen_by_slabs(tmp_path, volume):
    path, model = volume_checkpoint(tmp_path / "vol.pt")
    series = Counting(np.stack([volume, volume[:, ::-1].copy(), 255 - volume]))  # T x D x H x W
    settings = SegmentSettings(str(path), engine="torch", precision="fp32")
    (labels, kwargs, _), = segment_layer(series, settings, leading=(1, 4, 7, 9), scale=(1.0, 2.0, 1.0, 1.0))
    np.testing.assert_array_equal(labels, unetseg.predict_tiled(model, volume[:, ::-1], amp=False, engine="torch"))
    assert kwargs["scale"] == (2.0, 1.0, 1.0)  # the volume's axes; the time axis is the one on screen
    assert 0 < series.largest <= volume.size  # windows of the one volume on screen, never the stack


def test_bands_first_volumes_match_channels_last(tmp_path, volume):
    path, model = volume_checkpoint(tmp_path / "vol2.pt", in_channels=2)
    bands_last = np.stack([volume, 255 - volume], -1)
    (labels, _, _), = segment_layer(np.moveaxis(bands_last, -1, 0), SegmentSettings(str(path), engine="torch", precision="fp32"))
    np.testing.assert_array_equal(labels, unetseg.predict_tiled(model, bands_last, amp=False, engine="torch"))


def test_3d_instances_are_the_26_connected_components_of_each_class(tmp_path, volume):
    path, model = volume_checkpoint(tmp_path / "vol.pt", balanced_on=volume)
    (ids, kwargs, kind), = segment_layer(volume, SegmentSettings(str(path), engine="torch", precision="fp32", output="instances"))
    labels = unetseg.predict_tiled(model, volume, amp=False, engine="torch")
    assert len(np.unique(labels)) == 3
    features = kwargs["features"]
    assert kind == "labels" and ids.shape == volume.shape and ids.max() == len(features["index"]) > 0
    np.testing.assert_array_equal(ids > 0, labels > 0)
    for c in (1, 2):
        _, n = ndimage.label(labels == c, np.ones((3, 3, 3), bool))
        assert features["class"].count(model.class_table.names[c]) == n
    assert np.bincount(ids.ravel())[1:].tolist() == features["volume_voxels"]
    for k in np.unique(ids)[1:]:
        assert len(np.unique(labels[ids == k])) == 1  # an object is of one class


@pytest.mark.parametrize("output, data, message", [
    ("uncertainty", "volume", "'uncertainty' is for 2D models"),
    ("labels", "plane", "has 2 spatial axes; the model is 3-D and segments a volume"),
])
def test_what_a_3d_model_cannot_do_is_a_one_line_error(tmp_path, volume, output, data, message):
    path, _ = volume_checkpoint(tmp_path / "vol.pt")
    with pytest.raises(UnetsegError, match=message) as err:
        segment_layer(volume if data == "volume" else volume[0], SegmentSettings(str(path), engine="torch", output=output))
    assert "\n" not in str(err.value)
