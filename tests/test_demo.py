"""`unetseg demo` end to end with a seconds-long training budget and a small image."""
import re

import numpy as np
import PIL.Image

from unetseg.cli import main
from unetseg.data import scenes as demo
from unetseg.data.samples import load_sample


def test_mirror_tile_has_no_seams_and_the_requested_size():
    a = np.arange(12).reshape(3, 4)
    tiled = demo.mirror_tile(a, 10)
    assert tiled.shape == (10, 10)
    np.testing.assert_array_equal(tiled[:3, :4], a)
    np.testing.assert_array_equal(tiled[:3, 4:8], a[:, ::-1])  # neighbours are mirror images
    np.testing.assert_array_equal(tiled[3:6, :4], a[::-1])


def test_held_out_scene_comes_from_the_validation_strip_only():
    image, truth, names, palette = demo.held_out_scene(300)
    val = load_sample("nuclei", "val")
    assert image.shape == truth.shape == (300, 300) and names == ["background", "nucleus"]
    np.testing.assert_array_equal(image[:, :128], val.images[0][:300])  # 512x128 strip, mirrored sideways
    np.testing.assert_array_equal(truth[:, 128:256], val.masks[0][:300, ::-1])
    assert palette.shape == (2, 3)


def test_demo_trains_segments_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    # bounded by epochs, not minutes: the same amount of training on any machine under any load
    assert main(["demo", "--out", str(out), "--epochs", "2", "--minutes", "30", "--size", "300"]) == 0
    text = capsys.readouterr().out
    assert "mIoU vs truth:" in text and "(one fp32 pass): fp32 tiles with the exact halo 100.0000%" in text
    default = re.search(r"defaults \((fp32|bf16|fp16), \d+ px halo\) ([0-9.]+)%", text)
    assert default is not None and float(default.group(2)) >= 99.9, text
    for name in ("image.png", "prediction_palette.png", "prediction_overlay.png", "truth_palette.png"):
        assert (out / name).is_file(), name
    assert (out / "run" / "best.pt").is_file()
    palette_png = PIL.Image.open(out / "prediction_palette.png")
    assert palette_png.mode == "P" and palette_png.size == (300, 300)
    # a second call reuses the trained model
    assert main(["demo", "--out", str(out), "--size", "64"]) == 0
    assert "reusing the trained model" in capsys.readouterr().out
