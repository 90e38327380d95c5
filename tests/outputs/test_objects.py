"""The object kinds: instances, objects, geojson, gpkg; exact across bands and Dask chunks, pixel-exact
polygons in pixel or CRS coordinates, QuPath's keys."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import unetseg
from unetseg.cli import main
from unetseg.objects.separate import label_objects
from unetseg.outputs import predict_file, predict_file_dask
from unetseg.outputs.objects import ObjectOptions
from unetseg.tiling import TileOptions

from ..conftest import briefly_trained_unet

pyogrio = pytest.importorskip("pyogrio")
rasterio = pytest.importorskip("rasterio")
OPTIONS = TileOptions(tile_size=128, batch_size=1, amp=False)
ROOT = Path(__file__).resolve().parents[2]
LANDSAT = ROOT / "unetseg" / "data" / "samples" / "landsat_nc" / "images" / "nc_landsat.tif"


@pytest.fixture(scope="module")
def nuclei_model(tmp_path_factory):
    model = briefly_trained_unet("same", steps=40)
    path = unetseg.save_checkpoint(model, tmp_path_factory.mktemp("m") / "m.pt", class_names=["background", "nucleus"])
    return unetseg.load_model(path), path


@pytest.fixture(scope="module")
def nuclei_tif(tmp_path_factory):
    from unetseg.data.samples import load_sample

    image = load_sample("nuclei", "train").images[0][:, :301]  # 512 x 301: tiles and bands cut nuclei
    path = tmp_path_factory.mktemp("in") / "nuclei.tif"
    tifffile.imwrite(path, image, tile=(64, 64))
    return image, path


def rasterized(features, shape, transform=None):
    from rasterio.features import rasterize
    from shapely.geometry import shape as geometry

    pairs = [(geometry(f["geometry"]), f["properties"]["id"]) for f in features]
    kw = {} if transform is None else {"transform": transform}
    return rasterize(pairs, out_shape=shape, dtype="int32", **kw)


def test_streamed_objects_equal_one_whole_pass_and_polygons_rasterise_back(tmp_path, nuclei_model, nuclei_tif):
    model, _ = nuclei_model
    image, path = nuclei_tif
    formats = ["instances", "objects", "geojson", "gpkg", "summary"]
    written = predict_file(model, path, tmp_path / "n", formats, options=OPTIONS, objects=ObjectOptions(min_size=6))
    assert [p.name for p in written] == ["n_instances.tif", "n_objects.csv", "n_objects.geojson", "n_objects.gpkg",
                                         "n_summary.json"]
    ids = tifffile.imread(written[0])
    labels = unetseg.predict_tiled(model, image, tile_size=128, amp=False)
    probs = unetseg.predict_tiled(model, image, tile_size=128, amp=False, output="probs")
    whole, table = label_objects(labels, ObjectOptions(min_size=6).rules(model).objects, 2, probs[..., 1])
    assert ids.dtype == np.uint16 and len(table) > 20
    np.testing.assert_array_equal(ids, whole)
    rows = list(csv.DictReader(open(written[1])))
    assert [int(r["id"]) for r in rows] == list(range(1, len(table) + 1))
    assert sum(int(r["area_px"]) for r in rows) == int((ids > 0).sum())
    assert all(r["class"] == "nucleus" for r in rows)
    np.testing.assert_allclose([float(r["mean_probability"]) for r in rows], table.mean_prob, atol=1e-6)
    collection = json.loads(written[2].read_text())
    assert "crs" not in collection and len(collection["features"]) == len(table)
    np.testing.assert_array_equal(rasterized(collection["features"], ids.shape), ids)  # pixel-exact, holes kept
    props = collection["features"][0]["properties"]
    assert props["objectType"] == "detection" and props["classification"]["name"] == "nucleus"
    assert props["measurements"]["area_px"] == table.area[props["id"] - 1] and len(props["classification"]["color"]) == 3
    assert pyogrio.read_info(written[3], layer="objects")["features"] == len(table)
    summary = json.loads(written[4].read_text())
    assert summary["objects"] == {"count": len(table), "per_class": {"nucleus": len(table)}}


def test_geotiff_polygons_lie_in_the_input_crs_and_rasterise_back(tmp_path):
    with rasterio.open(LANDSAT) as src:
        image = src.read(window=((0, 160), (0, 190))).transpose(1, 2, 0)
        profile = {**src.profile, "height": 160, "width": 190, "transform": src.transform}
    with rasterio.open(tmp_path / "scene.tif", "w", **{**profile, "tiled": False, "compress": None}) as dst:
        dst.write(image.transpose(2, 0, 1))
    model = unetseg.UNet(5, 3, base_channels=4, depth=2, padding="same").eval()
    written = predict_file(model, tmp_path / "scene.tif", tmp_path / "s", ["instances", "geojson", "gpkg", "objects"],
                           options=TileOptions(tile_size=64, amp=False, nodata=-99999.0),
                           objects=ObjectOptions(polygons="classes"))
    ids = tifffile.imread(written[0])
    info = pyogrio.read_info(written[1])
    assert "32119" in str(info["crs"])
    collection = json.loads(written[1].read_text())
    regions = label_objects(unetseg.predict_tiled(model, image, tile_size=64, amp=False, nodata=-99999.0),
                            ObjectOptions(polygons="classes").rules(model).polygons, 3)[0]
    np.testing.assert_array_equal(rasterized(collection["features"], ids.shape, profile["transform"]), regions)
    assert collection["features"][0]["properties"]["objectType"] == "annotation"
    assert "32119" in str(pyogrio.read_info(written[2], layer="objects")["crs"])
    rows = list(csv.DictReader(open(written[3])))
    x, y = float(rows[0]["centroid_x"]), float(rows[0]["centroid_y"])
    a, _, c, _, e, f = tuple(profile["transform"])[:6]
    assert x == pytest.approx(c + a * (float(rows[0]["centroid_col"]) + 0.5))
    assert y == pytest.approx(f + e * (float(rows[0]["centroid_row"]) + 0.5))
    assert "area_m2" in rows[0]


def test_object_kinds_keep_one_probability_plane_per_rule_behind_the_merger(tmp_path, nuclei_model, nuclei_tif,
                                                                            monkeypatch):
    """Bands queued for the object kinds carry each rule's object probability, not the K class probabilities
    (the streamed 16384^2 run's memory); the table is the same as when a probs map keeps all K."""
    from unetseg.objects.stream import ObjectStream

    model, _ = nuclei_model
    _, path = nuclei_tif
    channels = []
    write_band = ObjectStream.write_band

    def spy(self, band):
        channels.append(band.probs.shape[-1])
        return write_band(self, band)

    monkeypatch.setattr(ObjectStream, "write_band", spy)
    options = ObjectOptions(min_size=6)
    planes = predict_file(model, path, tmp_path / "a" / "n", ["objects"], options=OPTIONS, objects=options)
    assert channels and set(channels) == {1}
    channels.clear()
    full = predict_file(model, path, tmp_path / "b" / "n", ["objects", "probs"], options=OPTIONS, objects=options)
    assert set(channels) == {model.num_classes}
    assert planes[0].read_text() == full[0].read_text()


def test_dask_objects_equal_one_process(tmp_path, nuclei_model, nuclei_tif, dask_client):
    model, ckpt = nuclei_model
    _, path = nuclei_tif
    formats = ["instances", "objects", "geojson", "summary"]
    one = predict_file(model, path, tmp_path / "one" / "n", formats, options=OPTIONS, objects=ObjectOptions(min_size=6))
    dask = predict_file_dask(model, ckpt, path, tmp_path / "dask" / "n", formats, client=dask_client, chunk=128,
                             options=OPTIONS, objects=ObjectOptions(min_size=6))
    assert [p.name for p in dask] == ["n_index.ome.zarr", "n_instances.ome.zarr", "n_objects.csv",
                                      "n_objects.geojson", "n_summary.json"]
    ids = zarr.open_group(str(dask[1]), mode="r")["0"]
    assert ids.chunks == (128, 128)
    np.testing.assert_array_equal(ids[:], tifffile.imread(one[0]))
    assert one[1].read_text() == dask[2].read_text()
    assert json.loads(one[2].read_text()) == json.loads(dask[3].read_text())
    one_summary, dask_summary = (json.loads(p.read_text()) for p in (one[3], dask[4]))
    assert one_summary["objects"] == dask_summary["objects"] and one_summary["classes"] == dask_summary["classes"]


def test_object_flags_on_the_command_line(tmp_path, nuclei_model, nuclei_tif, capsys):
    _, ckpt = nuclei_model
    _, path = nuclei_tif
    args = ["predict", "--checkpoint", str(ckpt), "--input", str(path), "--amp", "off", "--tile-size", "128"]
    assert main([*args, "--output", str(tmp_path / "a"), "--format", "instances", "--min-object-size", "40"]) == 0
    assert main([*args, "--output", str(tmp_path / "b"), "--format", "instances", "--split-touching"]) == 0
    big = tifffile.imread(tmp_path / "a" / "nuclei_instances.tif")
    split = tifffile.imread(tmp_path / "b" / "nuclei_instances.tif")
    assert np.bincount(big.ravel())[1:].min() >= 40 and split.max() > big.max()
    capsys.readouterr()
    assert main([*args, "--output", str(tmp_path / "c"), "--format", "geojson", "--background", "7"]) == 2
    assert capsys.readouterr().err.strip() == "unetseg predict: error: --background 7: the model has classes 0..1"
