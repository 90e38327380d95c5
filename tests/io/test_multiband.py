"""Multi-band TIFFs in the layouts tools write them: bands as pages, planar or samples -> H x W x bands."""
import numpy as np
import pytest
import tifffile

from unetseg.errors import UnetsegError
from unetseg.io import open_image, read_image


@pytest.mark.parametrize("layout", ["pages", "planar", "samples", "planar-tiled"])
def test_band_layouts_read_as_hwc_in_memory_and_lazily(tmp_path, rng, layout):
    bands = rng.random((5, 122, 140)).astype(np.float32)
    path = tmp_path / f"{layout}.tif"
    if layout == "pages":  # tifffile's default for a (5, H, W) array, as the issue wrote it
        tifffile.imwrite(path, bands)
    elif layout == "samples":
        tifffile.imwrite(path, bands.transpose(1, 2, 0), photometric="minisblack", planarconfig="contig")
    else:
        tiled = {"tile": (64, 64), "compression": "zlib"} if layout.endswith("tiled") else {}
        tifffile.imwrite(path, bands, photometric="minisblack", planarconfig="separate", **tiled)
    expected = bands.transpose(1, 2, 0)
    np.testing.assert_array_equal(read_image(path), expected)
    source = open_image(path)
    assert source.shape == (122, 140, 5)
    np.testing.assert_array_equal(source.array[7:50, 100:140], expected[7:50, 100:140])


def test_a_tiff_that_cannot_be_an_image_is_one_line_naming_file_and_shape(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 20, 30), np.uint8))
    for reader in (read_image, open_image):
        with pytest.raises(UnetsegError, match=r"stack\.tif: TIFF with axes .* shape \(3, 4, 20, 30\) is not a single"):
            reader(path)


@pytest.mark.parametrize("bands", [1, 2, 5, 7])
def test_a_numpy_hxwxc_array_saved_by_tifffile_reads_as_hxwxc(tmp_path, rng, bands):
    """tifffile.imwrite stores an H x W x C array whose C is not 3 or 4 as H pages of W x C images (axes QYX):
    it is read as the array it was, not as H bands of W x C."""
    image = rng.integers(0, 60000, (61, 45, bands), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "hwc.tif", image)
    expected = image[..., 0] if bands == 1 else image
    np.testing.assert_array_equal(read_image(tmp_path / "hwc.tif"), expected)
    source = open_image(tmp_path / "hwc.tif")
    assert source.shape == expected.shape
    np.testing.assert_array_equal(source.array[3:40, 10:45], expected[3:40, 10:45])
