"""``unetseg predict`` under faults: a full disk, corrupt inputs in a batch, name collisions, a killed run."""
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tifffile

import unetseg
from unetseg.cli import main

from ..conftest import tiny_unet
from ..faults import cli_lines, fill_disk, needs_dev_full


@pytest.fixture
def ckpt(tmp_path):
    return unetseg.save_checkpoint(tiny_unet("same", depth=2), tmp_path / "model.pt")


def _png(path, rng, shape=(40, 48)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return image


def _tif(path, rng, shape=(96, 80)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    tifffile.imwrite(path, image, tile=(32, 32), compression="zlib")
    return image


def predict(ckpt, inputs, out, formats="index"):
    return main(["predict", "--checkpoint", str(ckpt), "--input", *map(str, inputs), "--output", str(out),
                 "--tile-size", "64", "--format", formats, "--amp", "off"])


@needs_dev_full
@pytest.mark.parametrize("kind, formats", [("png", "index"), ("png", "index,palette,overlay,probs,summary"),
                                           ("tif", "probs"), ("tif", "index,overlay"),
                                           ("tif", "index,palette,overlay,probs,summary")])
def test_full_disk_stops_once_with_the_cause_and_leaves_nothing(tmp_path, ckpt, capsys, monkeypatch, rng,
                                                                 kind, formats):
    inputs = [tmp_path / "in" / f"a.{kind}", tmp_path / "in" / f"b.{kind}"]
    for path in inputs:
        (_png if kind == "png" else _tif)(path, rng)
    out = tmp_path / "out"
    out.mkdir()
    fill_disk(monkeypatch)
    assert predict(ckpt, inputs, out, formats) == 1
    lines = cli_lines(capsys)
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"unetseg predict: error: {inputs[0]}: cannot write {out}/a_")
    assert lines[0].endswith(": No space left on device")
    assert lines[1] == "unetseg predict: error: stopping: every later output would fail too (1 file(s) not done)"
    assert lines[2] == "unetseg predict: 2 of 2 file(s) failed, 0 done"
    assert list(out.iterdir()) == []  # no empty or partial file under a final name, no temporary left


def test_output_cut_short_by_a_file_size_limit_is_an_error_not_a_file(tmp_path, ckpt, rng):
    """A real, partial write in another process (RLIMIT_FSIZE: OpenCV reported success on such writes)."""
    _png(tmp_path / "in" / "a.png", rng)
    out = tmp_path / "out"
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (60, 60))\n"
            "from unetseg.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", code, "predict", "--checkpoint", str(ckpt), "--input",
                           str(tmp_path / "in"), "--output", str(out), "--format", "index", "--amp", "off"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"cannot write {out}/a_index.png: File too large" in done.stderr
    assert list(out.iterdir()) == []


def _damaged_tiffs(folder, rng):
    """A truncated and a garbled zlib-tiled TIFF (their headers intact, their tile data not)."""
    good = folder / "good.tif"
    _tif(good, rng)
    data = bytearray(good.read_bytes())
    with tifffile.TiffFile(good) as tif:
        page = tif.pages[0]
        offsets, counts = page.dataoffsets, page.databytecounts
        assert page.offset < offsets[-1]  # the IFD comes before the tile data
    (folder / "a_truncated.tif").write_bytes(data[: offsets[-1] + counts[-1] // 2])
    garbled = bytearray(data)
    start = offsets[1] + 8
    garbled[start : start + counts[1] - 16] = bytes(rng.integers(0, 256, counts[1] - 16, dtype=np.uint8))
    (folder / "b_garbled.tif").write_bytes(garbled)
    good.rename(folder / "c_good.tif")


@pytest.mark.parametrize("formats", ["index", "probs", "index,overlay"])
def test_a_batch_survives_corrupt_compressed_tiffs(tmp_path, ckpt, capsys, rng, formats):
    folder = tmp_path / "in"
    _damaged_tiffs(folder, rng)
    good_png = _png(folder / "d_good.png", rng)
    out = tmp_path / "out"
    assert predict(ckpt, [folder], out, formats) == 1
    lines = cli_lines(capsys)
    assert len(lines) == 3, lines
    for line, name in zip(lines[:2], ["a_truncated.tif", "b_garbled.tif"], strict=True):
        assert line.startswith(f"unetseg predict: error: {folder / name}: ") and "Error" in line
    assert lines[2] == "unetseg predict: 2 of 4 file(s) failed, 2 done"
    kind = formats.split(",")[0]
    ext = {"index": ".tif", "probs": ".npy"}[kind]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(("a_", "b_"))) == []
    assert (out / f"c_good_{kind}{ext}").is_file()
    model = unetseg.load_model(ckpt)
    expected = unetseg.predict_tiled(model, good_png, tile_size=64, amp=False)
    if kind == "index":
        np.testing.assert_array_equal(cv2.imread(str(out / "d_good_index.png"), cv2.IMREAD_UNCHANGED), expected)
    else:
        assert np.load(out / "d_good_probs.npy").shape == (*good_png.shape, 3)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_inputs_sharing_a_stem_get_their_own_outputs(tmp_path, ckpt, capsys, rng):
    images = {
        "s1/scan.png": _png(tmp_path / "s1" / "scan.png", rng),
        "s2/scan.png": _png(tmp_path / "s2" / "scan.png", rng),
        "a.png": _png(tmp_path / "flat" / "a.png", rng),
        "a.tif": _tif(tmp_path / "flat" / "a.tif", rng),
    }
    out = tmp_path / "out"
    twice = tmp_path / "flat" / "a.png"  # a file given again is done once
    assert predict(ckpt, [tmp_path / "s1", tmp_path / "s2", tmp_path / "flat", twice], out) == 0
    model = unetseg.load_model(ckpt)
    outputs = {"s1/scan.png": out / "s1" / "scan_index.png", "s2/scan.png": out / "s2" / "scan_index.png",
               "a.png": out / "a_png_index.png", "a.tif": out / "a_tif_index.tif"}
    for name, path in outputs.items():
        got = tifffile.imread(path) if path.suffix == ".tif" else cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(got, unetseg.predict_tiled(model, images[name], tile_size=64, amp=False))
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert [w for w in written if not w.endswith(".done.json")] == sorted(o.relative_to(out).as_posix()
                                                                          for o in outputs.values())


def test_output_folder_equal_to_input_folder_twice(tmp_path, ckpt, capsys, rng):
    folder = tmp_path / "data"
    _png(folder / "a.png", rng)
    _tif(folder / "b.tif", rng)
    _png(folder / "scan.v2.png", rng)
    _png(folder / "road_overlay.png", rng)  # named like an output, but no road.png: a real input
    assert predict(ckpt, [folder], folder, "index,palette,overlay") == 0
    first = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert predict(ckpt, [folder], folder, "index,palette,overlay") == 0
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == first  # the outputs were not read as inputs
    assert {"a_index.png", "b_index.tif", "scan.v2_index.png", "road_overlay_index.png"} <= set(first)
    assert len(first) == 4 + 4 * 3 + 4  # inputs, three maps each, a <stem>.done.json manifest each


KILL_AFTER_FIRST_BAND = """
import os, signal, sys
from unetseg.outputs import outputset
forward = outputset.OutputSet.write_band
def die(self, band):
    forward(self, band)
    os.kill(os.getpid(), signal.SIGKILL)  # mid-run: the outputs are half written
outputset.OutputSet.write_band = die
from unetseg.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_rerun_after_sigkill_cleans_temporaries_and_completes(tmp_path, ckpt, capsys, rng):
    image = _tif(tmp_path / "in" / "big.tif", rng, shape=(200, 90))
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--output", str(out),
            "--tile-size", "64", "--format", "index,palette,probs", "--amp", "off"]
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_BAND, *args], capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    left = sorted(p.name for p in out.iterdir())
    assert len(left) == 3 and all(n.startswith(".big_") and ".part" in n for n in left), left

    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["big.done.json", "big_index.tif", "big_palette.tif",
                                                           "big_probs.npy"]
    expected = unetseg.predict_tiled(unetseg.load_model(ckpt), image, tile_size=64, amp=False)
    np.testing.assert_array_equal(tifffile.imread(out / "big_index.tif"), expected)
    assert oct(os.stat(out / "big_index.tif").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
