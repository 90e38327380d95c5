"""One image file into its output set: in-memory and streamed inputs, and the one-process and Dask paths
writing the same maps and summaries through the same output set."""
import json

import cv2
import numpy as np
import pytest
import tifffile
import zarr

import unetseg
from unetseg.outputs import Done, predict_file, predict_file_dask
from unetseg.tiling import TileOptions

from ..conftest import tiny_unet

EXACT = TileOptions(tile_size=48, batch_size=1, amp=False)


def _summary(path):
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k not in ("input", "level", "dask")}


@pytest.fixture
def model_file(tmp_path):
    def make(num_classes=3, nodata=None):
        model = tiny_unet("same", depth=2, num_classes=num_classes)
        meta = {} if nodata is None else {"nodata": {"setting": "auto", "value": nodata, "rule": "any"}}
        path = unetseg.save_checkpoint(model, tmp_path / f"m{num_classes}.pt", **meta)
        return unetseg.load_model(path), path
    return make


def test_in_memory_and_streamed_inputs_give_the_same_maps_and_summary(tmp_path, rng, model_file):
    model, _ = model_file()
    image = rng.integers(0, 256, (150, 133), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    tifffile.imwrite(tmp_path / "a.tif", image, tile=(32, 32))
    formats = ["index", "palette", "overlay", "probs", "summary"]
    png = predict_file(model, tmp_path / "a.png", tmp_path / "p" / "a", formats, options=EXACT)
    tif = predict_file(model, tmp_path / "a.tif", tmp_path / "t" / "a", formats, options=EXACT)
    assert [p.name for p in png] == ["a_index.png", "a_palette.png", "a_overlay.png", "a_probs.npy", "a_summary.json"]
    assert [p.name for p in tif] == ["a_index.tif", "a_palette.tif", "a_overlay.tif", "a_probs.npy", "a_summary.json"]
    expected = unetseg.predict_tiled(model, image, tile_size=48, amp=False)
    np.testing.assert_array_equal(cv2.imread(str(png[0]), cv2.IMREAD_UNCHANGED), expected)
    np.testing.assert_array_equal(tifffile.imread(tif[0]), expected)
    np.testing.assert_array_equal(cv2.imread(str(png[2]))[..., ::-1], tifffile.imread(tif[2]))
    assert (png[3].read_bytes() == tif[3].read_bytes())
    assert _summary(png[4]) == _summary(tif[4])
    counts = [c["pixels"] for c in _summary(png[4])["classes"]]
    assert counts == np.bincount(expected.ravel(), minlength=3).tolist()


def test_a_failed_run_leaves_no_output_and_no_manifest(tmp_path, rng, model_file, monkeypatch):
    model, _ = model_file()
    tifffile.imwrite(tmp_path / "a.tif", rng.integers(0, 256, (150, 70), dtype=np.uint8), tile=(32, 32))
    from unetseg.outputs import writers

    def broken(self, band):
        raise RuntimeError("the palette writer broke")
    monkeypatch.setattr(writers.PaletteWriter, "write_band", broken)
    with pytest.raises(RuntimeError, match="palette writer broke"):
        predict_file(model, tmp_path / "a.tif", tmp_path / "out" / "a", ["index", "palette", "summary"],
                     options=EXACT, done=Done(tmp_path / "a.tif", {"k": 1}))
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("num_classes", [3, 300])
def test_one_process_and_dask_write_the_same_maps_and_summaries(tmp_path, rng, model_file, dask_client, num_classes):
    """Through the same output set: labels equal (uint16 with 300 classes and the 65535 nodata label, on both
    paths), the same class and nodata counts."""
    model, ckpt = model_file(num_classes, nodata=-1.0)
    image = rng.normal(0, 1, (161, 99)).astype(np.float32)
    image[:17, :40] = -1.0
    tifffile.imwrite(tmp_path / "s.tif", image, tile=(32, 32))
    one = predict_file(model, tmp_path / "s.tif", tmp_path / "one" / "s", ["ome-zarr", "index", "summary"],
                       options=EXACT)
    dask = predict_file_dask(model, ckpt, tmp_path / "s.tif", tmp_path / "dask" / "s", ["ome-zarr", "summary"],
                             client=dask_client, chunk=48, options=EXACT)
    assert [p.name for p in dask] == ["s_index.ome.zarr", "s_summary.json"]
    labels = zarr.open_group(str(dask[0]), mode="r")["0"]
    assert labels.chunks == (48, 48) and labels.dtype == (np.uint8 if num_classes == 3 else np.uint16)
    np.testing.assert_array_equal(labels[:], zarr.open_group(str(one[0]), mode="r")["0"][:])
    np.testing.assert_array_equal(labels[:], tifffile.imread(one[1]))
    assert _summary(one[2]) == _summary(dask[1])
    summary = _summary(dask[1])
    assert summary["nodata_pixels"] == 17 * 40 and summary["nodata_label"] == (255 if num_classes == 3 else 65535)
    assert summary["pixels"] + summary["nodata_pixels"] == 161 * 99


@pytest.mark.parametrize("kind", ["png", "tiff-alpha", "tiff-alpha-tiled"])
def test_an_rgba_image_is_segmented_by_an_rgb_model_as_its_colour_bands(tmp_path, rng, kind, dask_client):
    """The alpha band of an RGBA PNG or a TIFF whose ExtraSamples say alpha is dropped for a 3-band model, on the
    one-process and the Dask path; a fourth band that is not alpha is still refused."""
    model = tiny_unet("same", depth=2, in_channels=3)
    ckpt = unetseg.save_checkpoint(model, tmp_path / "rgb.pt")
    model = unetseg.load_model(ckpt)
    rgb = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.where(np.arange(90) < 30, 0, 255).astype(np.uint8)[None].repeat(70, 0)])
    if kind == "png":
        path = tmp_path / "scene.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    else:
        path = tmp_path / "scene.tif"
        tiled = {"tile": (32, 32)} if kind.endswith("tiled") else {}
        tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=["unassalpha"], **tiled)
    expected = unetseg.predict_tiled(model, rgb, tile_size=48, batch_size=1, amp=False)
    out = predict_file(model, path, tmp_path / "one" / "scene", ["index"], options=EXACT)
    np.testing.assert_array_equal(tifffile.imread(out[0]), expected)
    if kind != "png":
        dask = predict_file_dask(model, ckpt, path, tmp_path / "dask" / "scene", ["ome-zarr"], client=dask_client,
                                 chunk=48, options=EXACT)
        np.testing.assert_array_equal(zarr.open_group(str(dask[0]), mode="r")["0"][:], expected)
    tifffile.imwrite(tmp_path / "four.tif", rgba, photometric="minisblack", planarconfig="contig")
    with pytest.raises(unetseg.UnetsegError, match=r"four\.tif: image has 4 channel\(s\) but the model expects 3"):
        predict_file(model, tmp_path / "four.tif", tmp_path / "four" / "four", ["index"], options=EXACT)
