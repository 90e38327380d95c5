"""``unetseg predict`` on a GeoTIFF writes its TIFF maps as Cloud Optimized GeoTIFFs (rio-cogeo: no errors, no
warnings) that GDAL reads with the CRS, transform, nodata, colour map, overviews and pixels of the plain tiled
GeoTIFFs ``--no-cog`` writes; a failed assembly is one line and leaves no file."""
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

import unetseg
from unetseg.cli import main

from ..faults import cli_lines

rasterio = pytest.importorskip("rasterio")
cogeo = pytest.importorskip("rio_cogeo.cogeo")

ROOT = Path(__file__).resolve().parents[2]
LANDSAT = ROOT / "unetseg" / "data" / "samples" / "landsat_nc" / "images" / "nc_landsat.tif"
MAPS = ("index", "palette", "overlay", "uncertainty")


@pytest.fixture(scope="module")
def landsat_model(tmp_path_factory):
    torch.manual_seed(0)
    model = unetseg.UNet(5, 3, base_channels=4, depth=2, padding="same").eval()
    return unetseg.save_checkpoint(model, tmp_path_factory.mktemp("m") / "m.pt",
                                   class_names=["water", "field", "forest"])


def _predict(ckpt, out, *flags, input=LANDSAT):
    return main(["predict", "--checkpoint", str(ckpt), "--input", str(input), "--output", str(out), "--format",
                 ",".join([*MAPS, "summary"]), "--tile-size", "64", "--amp", "off", "--tta", "flips",
                 "--engine", "torch", *flags])


@pytest.fixture(scope="module")
def landsat_maps(tmp_path_factory, landsat_model):
    out = tmp_path_factory.mktemp("maps")
    assert _predict(landsat_model, out / "cog") == 0
    assert _predict(landsat_model, out / "plain", "--no-cog") == 0
    return out / "cog", out / "plain"


@pytest.mark.parametrize("kind", MAPS)
def test_geotiff_maps_are_valid_cogs_with_the_plain_maps_georeference(landsat_maps, kind):
    cog_dir, plain_dir = landsat_maps
    cog, plain = cog_dir / f"nc_landsat_{kind}.tif", plain_dir / f"nc_landsat_{kind}.tif"
    assert cogeo.cog_validate(cog, quiet=True) == (True, [], [])
    assert not cogeo.cog_validate(plain, quiet=True)[0]  # as the streaming writer leaves them
    with rasterio.open(LANDSAT) as src, rasterio.open(cog) as c, rasterio.open(plain) as p:
        assert c.crs == p.crs == src.crs and c.transform == p.transform == src.transform
        assert c.nodata == p.nodata and (c.nodata == 255) == (kind in ("index", "palette"))
        assert c.count == p.count and c.dtypes == p.dtypes
        assert c.overviews(1) == p.overviews(1) == [2]
        assert c.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(c.read(), p.read())
        np.testing.assert_array_equal(c.read(out_shape=(c.count, 222, 245)), p.read(out_shape=(p.count, 222, 245)))
        if kind == "palette":
            assert c.colormap(1) == p.colormap(1)
    np.testing.assert_array_equal(tifffile.imread(cog), tifffile.imread(plain))  # tifffile reads it as before


def test_plain_tiffs_stay_plain_unless_cog_is_asked_for(tmp_path, landsat_model):
    """A TIFF without georeference keeps today's tiled TIFF maps; ``--cog`` makes COGs of them too."""
    with rasterio.open(LANDSAT) as src:
        tifffile.imwrite(tmp_path / "scene.tif", src.read().transpose(1, 2, 0), tile=(64, 64), planarconfig="contig")
    assert _predict(landsat_model, tmp_path / "a", input=tmp_path / "scene.tif") == 0
    assert _predict(landsat_model, tmp_path / "b", "--cog", input=tmp_path / "scene.tif") == 0
    assert not cogeo.cog_validate(tmp_path / "a" / "scene_index.tif", quiet=True)[0]
    assert cogeo.cog_validate(tmp_path / "b" / "scene_index.tif", quiet=True)[0]


def test_without_rasterio_geotiff_maps_stay_plain_and_cog_is_one_line(tmp_path, landsat_model, monkeypatch, capsys):
    import unetseg.io.cog as cog

    monkeypatch.setattr(cog, "cog_available", lambda: False)
    monkeypatch.setattr("unetseg.outputs.outputset.cog_available", lambda: False)
    assert _predict(landsat_model, tmp_path / "a") == 0
    assert not cogeo.cog_validate(tmp_path / "a" / "nc_landsat_index.tif", quiet=True)[0]
    with rasterio.open(tmp_path / "a" / "nc_landsat_index.tif") as src:
        assert src.crs is not None and src.overviews(1) == [2]
    capsys.readouterr()
    assert _predict(landsat_model, tmp_path / "b", "--cog") == 2
    assert cli_lines(capsys) == ["unetseg predict: error: --cog writes Cloud Optimized GeoTIFFs with rasterio (GDAL): "
                                 "pip install 'unetseg[geo]'"]


def test_a_failed_cog_assembly_is_one_line_and_leaves_no_file(tmp_path, landsat_model, monkeypatch, capsys):
    import rasterio.shutil

    def failing_copy(src, dst, **kwargs):
        Path(dst).write_bytes(b"II*\x00" + bytes(100))
        raise rasterio.errors.RasterioIOError("simulated COG driver failure")

    monkeypatch.setattr(rasterio.shutil, "copy", failing_copy)
    capsys.readouterr()
    assert _predict(landsat_model, tmp_path / "out") == 1
    lines = cli_lines(capsys)
    assert lines[0] == f"unetseg predict: error: {LANDSAT}: cannot write {tmp_path / 'out' / 'nc_landsat_uncertainty.tif'}" \
                       ": simulated COG driver failure"
    # no map, no temporary, no done-manifest (the summary, written before the maps are closed, stays as before)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["nc_landsat_summary.json"]
