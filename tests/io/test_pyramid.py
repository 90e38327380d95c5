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


def test_tiff_writer_pyramid_keeps_palette_geotags_and_pixel_size(tmp_path, rng):
    from unetseg.io.tiff_writer import TiffTileWriter

    labels = rng.integers(0, 5, (600, 430)).astype(np.uint8)
    palette = rng.integers(0, 256, (5, 3)).astype(np.uint8)
    pixel_scale = (33550, 12, 3, (0.5, 0.5, 0.0), True)  # GeoTIFF ModelPixelScale
    path = tmp_path / "x_index.tif"
    with TiffTileWriter(path, labels.shape, np.uint8, levels=3, resolution=(2e4, 2e4), colormap=palette,
                        extratags=[pixel_scale]) as writer:
        for r in range(0, 600, 37):  # bands of any height, in order
            writer[r : r + 37] = labels[r : r + 37]
    with tifffile.TiffFile(path) as tif:
        levels = tif.series[0].levels
        assert [lv.shape for lv in levels] == [(600, 430), (300, 215), (150, 108)]
        for n, level in enumerate(levels):
            np.testing.assert_array_equal(level.asarray(), labels[:: 2**n, :: 2**n])
            assert level.pages[0].photometric == tifffile.PHOTOMETRIC.PALETTE
        assert tif.pages[0].tags.valueof(33550) == (0.5, 0.5, 0.0)
    for n in range(3):
        source = open_image(path, n)
        # the GeoTIFF pixel scale (CRS units) wins over the resolution tags the writer adds
        assert source.pixel_size == pytest.approx((0.5 * 2**n,) * 2) and source.unit == "meter"


def test_predict_streams_a_pyramidal_index_tiff_with_the_input_pixel_size(tmp_path, rng):
    import unetseg
    from unetseg.outputs import predict_file
    from unetseg.tiling import TileOptions

    from ..conftest import tiny_unet

    model = tiny_unet("same", depth=2)
    image = rng.integers(0, 256, (520, 300), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", image, tile=(64, 64), compression="zlib",
                     resolution=(4e3, 4e3), resolutionunit="CENTIMETER")  # 2.5 um pixels
    predict_file(model, tmp_path / "in.tif", tmp_path / "in", ["index"], options=TileOptions(tile_size=128, amp=False))
    expected = unetseg.predict_tiled(model, image, tile_size=128, amp=False)
    out = open_image(tmp_path / "in_index.tif", level=1)
    np.testing.assert_array_equal(out.array[:, :], expected[::2, ::2])
    assert out.pixel_size == pytest.approx((5.0, 5.0))


def test_ome_tiff_pyramid_pixel_size_from_ome_xml(tmp_path, rng):
    image = rng.integers(0, 256, (2, 128, 96), dtype=np.uint16)  # CYX
    path = tmp_path / "img.ome.tif"
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        tif.write(image, subifds=1, tile=(64, 64), metadata={"axes": "CYX", "PhysicalSizeX": 0.25,
                                                              "PhysicalSizeY": 0.25, "PhysicalSizeXUnit": "µm"})
        tif.write(image[:, ::2, ::2], subfiletype=1, tile=(64, 64))
    full, half = open_image(path, 0), open_image(path, 1)
    assert full.shape == (128, 96, 2) and half.shape == (64, 48, 2)
    assert full.pixel_size == (0.25, 0.25) and half.pixel_size == (0.5, 0.5) and half.unit == "micrometer"
    np.testing.assert_array_equal(half.array[:, :], image[:, ::2, ::2].transpose(1, 2, 0))


@pytest.mark.parametrize("shape", [(1, 700), (600, 1), (2, 900)])
def test_a_one_pixel_thin_image_streams_into_an_index_tiff(tmp_path, rng, shape):
    """A level must be smaller than the one above on both sides, or a reader (tifffile) does not see it: a
    1 x 700 image has no sub-resolutions (its write was refused: "read back 1 pyramid levels, wrote 3")."""
    import unetseg
    from unetseg.cli import main
    from unetseg.io.ome_zarr_labels import pyramid_levels

    from ..conftest import tiny_unet

    assert [pyramid_levels(s) for s in [(1, 700), (600, 1), (2, 900), (3, 1500), (4000, 4000)]] == [1, 1, 2, 3, 5]
    tifffile.imwrite(tmp_path / "thin.tif", rng.normal(0, 1, shape).astype(np.float32), tile=(16, 16))
    ckpt = unetseg.save_checkpoint(tiny_unet("same", depth=2), tmp_path / "m.pt")
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "thin.tif"), "--output",
                 str(tmp_path / "out"), "--format", "index"]) == 0
    assert tifffile.imread(tmp_path / "out" / "thin_index.tif").shape == shape
