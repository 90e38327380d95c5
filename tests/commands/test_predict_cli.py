import json

import cv2
import numpy as np
import tifffile

import unetseg
from unetseg.cli import main

from ..conftest import tiny_unet


def test_predict_cli_reports_bad_files_and_writes_the_good_ones(tmp_path, capsys, rng):
    model = tiny_unet("same", depth=2, in_channels=3, num_classes=3)
    ckpt = unetseg.save_checkpoint(model, tmp_path / "model.pt", class_names=["bg", "a", "b"],
                                   class_colors=[[0, 0, 0], [255, 0, 0], [0, 0, 255]])
    inputs = tmp_path / "in"
    inputs.mkdir()
    image = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    cv2.imwrite(str(inputs / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    tifffile.imwrite(inputs / "b.tif", image, tile=(32, 32), compression="zlib")
    (inputs / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(ckpt), "--input", str(inputs), "--output", str(out),
                 "--tile-size", "64", "--format", "index,palette,overlay,probs,summary", "--amp", "off"])
    err = capsys.readouterr().err
    assert code != 0
    bad_lines = [line for line in err.splitlines() if "broken.png" in line]
    assert len(bad_lines) == 1 and "error" in bad_lines[0]
    expected = unetseg.predict_tiled(model, image, tile_size=64, amp=False)
    np.testing.assert_array_equal(cv2.imread(str(out / "a_index.png"), cv2.IMREAD_UNCHANGED), expected)
    np.testing.assert_array_equal(tifffile.imread(out / "b_index.tif"), expected)
    for name in ["a_palette.png", "a_overlay.png", "a_probs.npy", "b_palette.tif", "b_overlay.tif", "b_probs.npy"]:
        assert (out / name).is_file(), name
    for stem in "ab":
        summary = json.loads((out / f"{stem}_summary.json").read_text())
        assert sum(c["pixels"] for c in summary["classes"]) == 90 * 70
        assert [c["name"] for c in summary["classes"]] == ["bg", "a", "b"]
        assert summary["tile_size"] == 64 and summary["tile_shape"] == [64, 64] and summary["num_tiles"] > 1
        assert summary["batch_size"] == 1 and summary["precision"] == "fp32" and summary["device"] == "cpu"
    assert not (out / "broken_index.png").exists()


def test_predict_cli_channel_mismatch_is_one_line(tmp_path, capsys, rng):
    ckpt = unetseg.save_checkpoint(tiny_unet("same", depth=2, in_channels=1), tmp_path / "m.pt")
    cv2.imwrite(str(tmp_path / "rgb.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    code = main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "rgb.png"),
                 "--output", str(tmp_path / "o"), "--tile-size", "64"])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code != 0 and len(err) == 1 and "rgb.png" in err[0] and "3 channel" in err[0] and "expects 1" in err[0]


def test_predict_cli_batch_size_is_a_positive_integer_or_auto(tmp_path, capsys, rng):
    ckpt = unetseg.save_checkpoint(tiny_unet("same", depth=2, in_channels=1), tmp_path / "m.pt")
    cv2.imwrite(str(tmp_path / "g.png"), rng.integers(0, 256, (40, 40), dtype=np.uint8))
    args = ["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "g.png"), "--output", str(tmp_path / "o")]
    assert main([*args, "--batch-size", "auto"]) == 0 and (tmp_path / "o" / "g_index.png").is_file()
    assert main([*args, "--batch-size", "0"]) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "--batch-size '0'" in err[0]


def test_predict_cli_halo_and_compile_flags(tmp_path, capsys, rng):
    ckpt = unetseg.save_checkpoint(tiny_unet("same", depth=2, in_channels=1), tmp_path / "m.pt")
    cv2.imwrite(str(tmp_path / "g.png"), rng.integers(0, 256, (70, 90), dtype=np.uint8))
    args = ["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "g.png"), "--output", str(tmp_path / "o"),
            "--format", "index,summary", "--tile-size", "64", "--compile", "off"]
    assert main([*args, "--halo", "8"]) == 0
    summary = json.loads((tmp_path / "o" / "g_summary.json").read_text())
    assert summary["halo"] == 8 and summary["context"] == 8 and summary["compiled"] is False
    assert main([*args, "--halo", "exact"]) == 0
    assert main([*args, "--halo", "wide"]) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "--halo 'wide'" in err[0]
