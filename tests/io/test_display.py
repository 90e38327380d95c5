"""Previews for any band count: chosen bands, a 2-98 percentile stretch over valid pixels, invalid pixels black."""
import numpy as np
import pytest

from unetseg.errors import UnetsegError
from unetseg.io import display


def test_bands_and_percentile_stretch_ignore_invalid_pixels(rng):
    image = rng.normal(100, 10, (50, 60, 5)).astype(np.float32)
    image[:10] = -99999.0  # nodata rows would turn a min..max stretch into one flat colour
    valid = np.ones((50, 60), bool)
    valid[:10] = False
    rgb = display.display_rgb(image, [4, 2, 0], valid=valid)
    assert rgb.shape == (50, 60, 3) and rgb.dtype == np.uint8
    assert (rgb[:10] == 0).all()
    for channel, band in enumerate([4, 2, 0]):
        values = image[10:, :, band]
        low, high = np.percentile(values, [2, 98])
        inside = rgb[10:, :, channel][(values > low + 1) & (values < high - 1)]
        assert inside.min() > 0 and inside.max() < 255  # spread over the range, not squashed
        assert abs((values < low).mean() - 0.02) < 0.01 and (rgb[10:, :, channel][values <= low] == 0).all()
    grey = display.display_rgb(image, [3], valid=valid)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[10:, :, 0] != display.display_rgb(image, [4])[10:, :, 0]).any()
    default = display.display_rgb(image[..., :2], valid=valid)  # fewer than 3 bands: band 0 in grey
    np.testing.assert_array_equal(default, display.display_rgb(image, [0], valid=valid))
    with pytest.raises(UnetsegError, match=r"display bands \[0, 7\]"):
        display.display_rgb(image, [0, 7])


def test_overlay_blacks_out_nodata_labels_and_invalid_pixels(rng):
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (20, 30)).astype(np.uint8)
    labels[:4] = 255  # the nodata label
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    out = display.overlay(image, labels, palette)
    assert (out[:4] == 0).all() and out[4:].any()


def test_transparent_classes_travel_from_the_config_to_the_overlay(rng):
    from unetseg.config.data import parse_data_config
    from unetseg.data.classes import ClassTable

    cfg = parse_data_config({"source": "folder", "images": "i", "masks": "m", "classes": [
        {"name": "soil", "transparent": True}, {"name": "water", "color": [0, 0, 255]}]})
    table = cfg.configured_classes()
    assert table.transparent == (0,) and ClassTable.from_dict(table.to_dict()) == table
    image = np.full((4, 6), 100, np.uint8)
    labels = np.array([[0, 1] * 3] * 4, np.uint8)
    out = display.overlay(image, labels, table.palette(), transparent=table.transparent)
    assert (out[labels == 0] == 0).all() and (out[labels == 1] == [0, 0, 128]).all()
