"""Pyramidal TIFFs and whole-slide images: any level read lazily, with its pixel size."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from unetseg.errors import UnetsegError
from unetseg.io.source import open_image


@pytest.fixture
def pyramid(tmp_path, rng):
    """A whole-slide-style tiled pyramidal TIFF: RGB level 0 plus two reduced levels as SubIFDs, 2 px/um."""
    image = rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)
    path = tmp_path / "slide.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        options = dict(tile=(64, 64), photometric="rgb", compression="zlib")
        tif.write(image, subifds=2, resolution=(2e4, 2e4), resolutionunit="CENTIMETER", **options)
        tif.write(image[::2, ::2], subfiletype=1, **options)
        tif.write(image[::4, ::4], subfiletype=1, **options)
    return path, image


@pytest.mark.parametrize("level", [0, 1, 2])
def test_pyramidal_tiff_levels_with_pixel_size(pyramid, level):
    path, image = pyramid
    source = open_image(path, level)
    expected = image[:: 2**level, :: 2**level]
    assert source.shape == expected.shape
    assert source.pixel_size == pytest.approx((0.5 * 2**level, 0.5 * 2**level)) and source.unit == "micrometer"
    np.testing.assert_array_equal(source.array[7:40, 3:33], expected[7:40, 3:33])


def test_missing_level_is_one_line(pyramid):
    with pytest.raises(UnetsegError, match="has 3 pyramid level.* level 3 does not exist"):
        open_image(pyramid[0], 3)


@pytest.mark.parametrize("level", [0, 1])
def test_whole_slide_image_through_tiffslide(pyramid, tmp_path, level):
    pytest.importorskip("tiffslide")
    path, image = pyramid
    slide = shutil.copy(path, tmp_path / "slide.svs")  # a generic tiled TIFF under a slide suffix
    source = open_image(slide, level)
    np.testing.assert_array_equal(source.array[:, :], image[:: 2**level, :: 2**level])
    assert source.pixel_size == pytest.approx((0.5 * 2**level,) * 2)
