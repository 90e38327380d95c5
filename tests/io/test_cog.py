"""Cloud Optimized GeoTIFFs from the streaming TIFF writer: valid COGs (rio-cogeo's validator: no errors, no
warnings) with the streamed file's tags, colour map and pyramid; a failed assembly leaves nothing behind."""
import numpy as np
import pytest

from unetseg.errors import OutputError
from unetseg.io.tiff_writer import TiffTileWriter, nodata_tag

rasterio = pytest.importorskip("rasterio")
cogeo = pytest.importorskip("rio_cogeo.cogeo")

PALETTE = np.array([[0, 0, 0], [230, 159, 0], [86, 180, 233]], np.uint8)
# a GeoTIFF's tags as tifffile writes them: pixel scale, tie point, and a GeoKey directory for EPSG:32632
GEOTAGS = [(33550, 12, 3, (10.0, 10.0, 0.0), True), (33922, 12, 6, (0.0, 0.0, 0.0, 500000.0, 5000000.0, 0.0), True),
           (34735, 3, 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32632), True)]


def _labels(shape=(600, 700)):
    rows, cols = np.indices(shape)
    return ((rows // 37 + cols // 53) % 3).astype(np.uint8)


def _write(path, data, **kwargs):
    with TiffTileWriter(path, data.shape, data.dtype, **kwargs) as writer:
        for r0 in range(0, len(data), 96):
            writer[r0 : r0 + 96] = data[r0 : r0 + 96]


@pytest.mark.parametrize("colormap", [None, PALETTE], ids=["index", "palette"])
def test_cog_is_valid_and_keeps_what_the_streamed_tiff_carries(tmp_path, colormap):
    labels = _labels()
    options = {"extratags": [*GEOTAGS, *nodata_tag(255)], "levels": 3, "colormap": colormap}
    _write(tmp_path / "plain.tif", labels, **options)
    _write(tmp_path / "cog.tif", labels, cog=True, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cog.tif", "plain.tif"]  # no temporaries left
    assert not cogeo.cog_validate(tmp_path / "plain.tif", quiet=True)[0]  # overviews after the full resolution
    assert cogeo.cog_validate(tmp_path / "cog.tif", quiet=True) == (True, [], [])
    with rasterio.open(tmp_path / "plain.tif") as plain, rasterio.open(tmp_path / "cog.tif") as cog:
        assert cog.crs == plain.crs and cog.crs.to_epsg() == 32632
        assert cog.transform == plain.transform and cog.nodata == plain.nodata == 255
        assert cog.overviews(1) == plain.overviews(1) == [2, 4]
        np.testing.assert_array_equal(cog.read(1), labels)
        for factor in (2, 4):  # the streamed pyramid, kept as it was (nearest: labels stay labels)
            out = (1, -(-labels.shape[0] // factor), -(-labels.shape[1] // factor))
            np.testing.assert_array_equal(cog.read(out_shape=out), plain.read(out_shape=out))
        if colormap is not None:
            assert cog.colormap(1) == plain.colormap(1) and cog.colormap(1)[1] == (230, 159, 0, 255)


def test_multiband_float_cog(tmp_path):
    data = np.random.default_rng(0).random((300, 520, 2), dtype=np.float32)
    _write(tmp_path / "u.tif", data, extratags=GEOTAGS, levels=2, cog=True)
    assert cogeo.cog_validate(tmp_path / "u.tif", quiet=True) == (True, [], [])
    with rasterio.open(tmp_path / "u.tif") as src:
        assert src.count == 2 and src.dtypes == ("float32", "float32") and src.overviews(1) == [2]
        np.testing.assert_array_equal(src.read().transpose(1, 2, 0), data)


def test_a_failed_cog_assembly_leaves_no_partial_file(tmp_path, monkeypatch):
    """GDAL fails half-way through the copy (it has written part of the COG): one OutputError naming the output,
    and neither the final file, the partial COG nor the streamed temporary is left; an older file is kept."""
    import rasterio.shutil

    def failing_copy(src, dst, **kwargs):
        with open(dst, "wb") as f:
            f.write(b"II*\x00" + bytes(1000))
        raise rasterio.errors.RasterioIOError("simulated failure while writing the COG")

    monkeypatch.setattr(rasterio.shutil, "copy", failing_copy)
    (tmp_path / "kept.tif").write_bytes(b"previous version")
    for name in ("new.tif", "kept.tif"):
        with pytest.raises(OutputError, match=f"cannot write .*{name}: simulated failure"):
            _write(tmp_path / name, _labels(), extratags=GEOTAGS, levels=3, cog=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.tif"]
    assert (tmp_path / "kept.tif").read_bytes() == b"previous version"


def test_a_cog_gdal_does_not_read_as_one_is_refused(tmp_path, monkeypatch):
    """The read-back check: a copy that is not a COG (a tiled GTiff whose overviews were added after its full
    resolution) never takes the output's name."""
    import rasterio.shutil

    real = rasterio.shutil.copy

    def not_a_cog(src, dst, **kwargs):
        real(src, dst, driver="GTiff", TILED=True)
        with rasterio.open(dst, "r+") as out:
            out.build_overviews([2, 4], rasterio.enums.Resampling.nearest)

    monkeypatch.setattr(rasterio.shutil, "copy", not_a_cog)
    with pytest.raises(OutputError, match="not read it as a Cloud Optimized GeoTIFF"):
        _write(tmp_path / "m.tif", _labels(), extratags=GEOTAGS, levels=3, cog=True)
    assert list(tmp_path.iterdir()) == []
