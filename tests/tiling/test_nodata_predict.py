"""Invalid pixels in prediction: filled before the model, labelled apart after it, on every path."""
import json

import numpy as np
import pytest
import tifffile

import unetseg
from unetseg.cli import main
from unetseg.data.normalization import Normalization
from unetseg.errors import UnetsegError

from ..conftest import tiny_unet


@pytest.fixture
def holey(rng):
    """A 3-band float32 image with nodata -5 (whole pixels and one band alone), NaN and Inf pixels."""
    image = rng.normal(0, 1, (90, 101, 3)).astype(np.float32)
    image[10:20, 30:45] = -5
    image[50, 60, 1] = -5
    image[70, 5] = np.nan
    image[3, 90, 2] = np.inf
    invalid = np.zeros(image.shape[:2], bool)
    invalid[10:20, 30:45] = invalid[50, 60] = invalid[70, 5] = invalid[3, 90] = True
    return image, invalid


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_invalid_pixels_are_filled_then_labelled_and_tiling_stays_exact(holey, padding):
    image, invalid = holey
    model = tiny_unet(padding, depth=2, in_channels=3)
    norm = Normalization(mean=(0.1, -0.2, 0.3), std=(1.0, 2.0, 0.5))
    run = dict(amp=False, normalization=norm, nodata=-5)
    labels = unetseg.predict_tiled(model, image, tile_size=48, **run)
    whole = unetseg.predict_tiled(model, image, tile_size=512, **run)
    np.testing.assert_array_equal(labels, whole)  # tiled == whole image, nodata and all
    assert (labels[invalid] == 255).all() and (labels[~invalid] < 3).all()
    # the model saw the invalid pixels as the normalised mean (0): the same as an image filled with the mean
    filled = np.where(invalid[..., None], np.asarray(norm.mean, np.float32), image)
    plain = unetseg.predict_tiled(model, filled, tile_size=48, amp=False, normalization=norm, nodata=None)
    np.testing.assert_array_equal(labels[~invalid], plain[~invalid])
    probs = unetseg.predict_tiled(model, image, tile_size=48, output="probs", **run)
    assert (probs[invalid] == 0).all() and np.allclose(probs[~invalid].sum(-1), 1, atol=1e-5)
    gauss = unetseg.predict_tiled(model, image, tile_size=48, blend="gaussian", **run)
    assert (gauss[invalid] == 255).all()


def test_rule_label_and_defaults(holey):
    image, invalid = holey
    model = tiny_unet("same", depth=2, in_channels=3)
    one_band = np.zeros(invalid.shape, bool)
    one_band[50, 60] = True
    labels = unetseg.predict_tiled(model, image, tile_size=64, amp=False, nodata=-5, nodata_label=7)
    assert labels[50, 60] == 7 and (labels[invalid] == 7).all()
    # with nodata off only NaN/Inf are invalid; -5 is a value
    off = unetseg.predict_tiled(model, image, tile_size=64, amp=False, nodata=None)
    assert off[70, 5] == 255 and off[3, 90] == 255 and (off[10:20, 30:45] < 3).all()
    # "auto" on a model trained with nodata -5 and rule "all": the checkpoint's rule
    model.meta = {"nodata": {"setting": "auto", "value": -5.0, "rule": "all"}}
    auto = unetseg.predict_tiled(model, image, tile_size=64, amp=False)
    assert (auto[10:20, 30:45] == 255).all() and auto[50, 60] != 255
    with pytest.raises(UnetsegError, match="nodata label 2 collides"):
        unetseg.predict_tiled(model, image, tile_size=64, amp=False, nodata_label=2)
    with pytest.raises(UnetsegError, match="no valid pixel in the image"):
        unetseg.predict_tiled(model, np.full((40, 50, 3), -5, np.float32), tile_size=32, amp=False, nodata=-5)
    # an integer image without nodata makes no invalid-pixel pass and writes no nodata label
    ints = (np.clip(image, -2, 2) * 50 + 128).astype(np.uint8)
    assert (unetseg.predict_tiled(tiny_unet("same", depth=2, in_channels=3), ints, tile_size=64, nodata=None) < 3).all()


def test_cli_writes_nodata_tags_black_overlays_and_counts_invalid_pixels_apart(tmp_path, holey):
    image, invalid = holey
    image = np.where(np.isfinite(image), image, -5).astype(np.float32)  # the file marks them -5 in its tag
    geo = [(33550, 12, 3, (30.0, 30.0, 0.0), True), (42113, "s", 0, "-5", True)]
    tifffile.imwrite(tmp_path / "scene.tif", image.transpose(2, 0, 1), extratags=geo)  # bands as pages
    model = tiny_unet("same", depth=2, in_channels=3)
    unetseg.save_checkpoint(model, tmp_path / "m.pt")
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(tmp_path / "m.pt"), "--input", str(tmp_path / "scene.tif"),
                 "--output", str(out), "--tile-size", "64", "--amp", "off", "--bands", "2,1,0",
                 "--format", "index,palette,overlay,summary"])
    assert code == 0
    file_invalid = (image == -5).any(axis=2)
    for kind in ("index", "palette"):
        with tifffile.TiffFile(out / f"scene_{kind}.tif") as tif:
            page = tif.pages.first
            labels = page.asarray()
            assert page.tags[42113].value.strip("\x00") == "255" and page.tags[33550].value == (30.0, 30.0, 0.0)
        assert labels.dtype == np.uint8 and (labels[file_invalid] == 255).all() and (labels[~file_invalid] < 3).all()
    overlay = tifffile.imread(out / "scene_overlay.tif")
    assert (overlay[file_invalid] == 0).all() and overlay[~file_invalid].any()
    summary = json.loads((out / "scene_summary.json").read_text())
    assert summary["nodata_pixels"] == int(file_invalid.sum()) == image.shape[0] * image.shape[1] - summary["pixels"]
    assert len(summary["classes"]) == 3


def test_cli_nodata_and_bands_options(tmp_path, holey, capsys):
    image, _ = holey
    tifffile.imwrite(tmp_path / "s.tif", np.where(np.isfinite(image), image, 0).astype(np.float32))
    model = tiny_unet("same", depth=2, in_channels=3)
    unetseg.save_checkpoint(model, tmp_path / "m.pt")
    base = ["predict", "--checkpoint", str(tmp_path / "m.pt"), "--input", str(tmp_path / "s.tif"), "--output",
            str(tmp_path / "o"), "--tile-size", "64", "--amp", "off", "--format", "index,summary"]
    assert main([*base, "--nodata", "-5", "--nodata-label", "9"]) == 0
    labels = tifffile.imread(tmp_path / "o" / "s_index.tif")
    assert (labels[10:20, 30:45] == 9).all() and json.loads((tmp_path / "o" / "s_summary.json").read_text())["nodata"] == -5
    assert main([*base, "--nodata", "none"]) == 0
    assert (tifffile.imread(tmp_path / "o" / "s_index.tif")[10:20, 30:45] < 3).all()
    capsys.readouterr()
    assert main([*base, "--bands", "0,1"]) == 2 and "--bands '0,1'" in capsys.readouterr().err
    assert main([*base, "--nodata", "x"]) == 2 and "--nodata 'x'" in capsys.readouterr().err
    assert main([*base, "--nodata-label", "1"]) == 1 and "nodata label 1 collides" in capsys.readouterr().err
