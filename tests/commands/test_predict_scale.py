"""``unetseg predict`` past one process: --dask into OME-Zarr, --shard / torchrun splits, resumable batches."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import tifffile
import zarr

import unetseg
from unetseg.cli import main

from ..conftest import tiny_unet

pytest.importorskip("distributed")

EXACT = ["--amp", "off", "--batch-size", "1", "--tile-size", "32"]


@pytest.fixture
def checkpoint(tmp_path):
    model = tiny_unet("same", depth=2, in_channels=1, num_classes=3)
    return model, unetseg.save_checkpoint(model, tmp_path / "m.pt", class_names=["bg", "a", "b"])


def test_dask_cli_writes_ome_zarr_labels_equal_to_one_process(tmp_path, rng, checkpoint, dask_cluster):
    model, ckpt = checkpoint
    image = rng.integers(0, 256, (100, 75), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", image, tile=(32, 32), compression="zlib",
                     resolution=(1e4, 1e4), resolutionunit="CENTIMETER")
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "big.tif"), "--output",
                 str(out), "--dask", dask_cluster.scheduler_address, "--chunk", "40", "--format", "ome-zarr,summary",
                 *EXACT, "--tile-size", "64"])
    assert code == 0
    level0 = zarr.open_group(str(out / "big_index.ome.zarr"), mode="r")["0"]
    assert level0.chunks[0] < 100  # several chunks, written by the workers
    np.testing.assert_array_equal(level0[:], unetseg.predict_tiled(model, image, tile_size=64, amp=False))
    attrs = dict(zarr.open_group(str(out / "big_index.ome.zarr"), mode="r").attrs)
    assert attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0]
    summary = json.loads((out / "big_summary.json").read_text())
    assert sum(c["pixels"] for c in summary["classes"]) == 100 * 75 and len(summary["classes"]) == 3


def test_dask_cli_all_nodata_image_is_one_line_and_writes_nothing(tmp_path, capsys, checkpoint, dask_cluster):
    _, ckpt = checkpoint
    tifffile.imwrite(tmp_path / "holes.tif", np.full((100, 75), -9999, np.float32), tile=(32, 32),
                     extratags=[(42113, "s", 0, "-9999", True)])  # GDAL_NODATA
    tifffile.imwrite(tmp_path / "good.tif", np.ones((40, 30), np.float32))
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "holes.tif"),
                 str(tmp_path / "good.tif"), "--output", str(out), "--dask", dask_cluster.scheduler_address,
                 "--chunk", "40", *EXACT, "--tile-size", "64"])
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if "error" in line]
    assert code == 1 and len(errors) == 1, lines
    assert str(tmp_path / "holes.tif") in errors[0] and "no valid pixel" in errors[0] and "-9999" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["good.done.json", "good_index.ome.zarr"]


def test_dask_cli_refuses_formats_it_does_not_write(tmp_path, capsys, checkpoint, dask_cluster):
    _, ckpt = checkpoint
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 20), np.uint8))
    code = main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "a.png"), "--output",
                 str(tmp_path / "o"), "--dask", dask_cluster.scheduler_address, "--format", "index"])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(err) == 1 and err[0].endswith("--dask writes ome-zarr, summary, instances, objects, "
                                                           "geojson, gpkg only, not index")


def _inputs(tmp_path, rng, n=5):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"img{i}.png"), rng.integers(0, 256, (24, 20), dtype=np.uint8))
    return folder


def _run(ckpt, folder, out, *extra):
    return main(["predict", "--checkpoint", str(ckpt), "--input", str(folder), "--output", str(out),
                 "--format", "index", *EXACT, *extra])


def _count_calls(monkeypatch, fail_at=None):
    import unetseg.outputs as files

    calls, real = [], files.predict_file

    def counted(model, path, *args, **kwargs):
        if len(calls) == fail_at:
            raise KeyboardInterrupt  # the job is killed here
        calls.append(path.name)
        return real(model, path, *args, **kwargs)
    monkeypatch.setattr(files, "predict_file", counted)
    return calls


def test_shards_cover_every_input_exactly_once(tmp_path, rng, checkpoint, monkeypatch):
    _, ckpt = checkpoint
    folder, out = _inputs(tmp_path, rng), tmp_path / "out"
    calls = _count_calls(monkeypatch)
    for i in range(3):
        assert _run(ckpt, folder, out, "--shard", f"{i}/3") == 0
    assert sorted(calls) == [f"img{i}.png" for i in range(5)]
    assert sorted(p.name for p in out.glob("*_index.png")) == [f"img{i}_index.png" for i in range(5)]


def test_torchrun_environment_splits_the_inputs(tmp_path, rng, checkpoint, monkeypatch):
    _, ckpt = checkpoint
    folder, out = _inputs(tmp_path, rng), tmp_path / "out"
    calls = _count_calls(monkeypatch)
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        assert _run(ckpt, folder, out) == 0
    assert sorted(calls) == [f"img{i}.png" for i in range(5)]


def test_a_killed_sharded_run_resumes_without_redoing_finished_files(tmp_path, rng, checkpoint, monkeypatch, capsys):
    _, ckpt = checkpoint
    folder, out = _inputs(tmp_path, rng), tmp_path / "out"
    calls = _count_calls(monkeypatch, fail_at=2)
    assert _run(ckpt, folder, out, "--shard", "0/1") != 0
    finished = list(calls)
    assert len(finished) == 2 and len(list(out.glob("*.done.json"))) == 2
    calls.clear()
    monkeypatch.undo()
    calls = _count_calls(monkeypatch)
    assert _run(ckpt, folder, out, "--shard", "0/1") == 0
    assert sorted(calls) == sorted({f"img{i}.png" for i in range(5)} - set(finished))
    assert "2 input(s) already done" in capsys.readouterr().err
    calls.clear()
    assert _run(ckpt, folder, out, "--tile-size", "48") == 0  # other settings: everything is done again
    assert len(calls) == 5


def test_bad_shard_is_one_line(tmp_path, capsys, checkpoint):
    _, ckpt = checkpoint
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 20), np.uint8))
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "a.png"), "--output",
                 str(tmp_path / "o"), "--shard", "3/3"]) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "--shard '3/3'" in err[0]


def test_level_follows_pixel_size_flag_or_the_checkpoint(tmp_path, rng):
    model = tiny_unet("same", depth=2, in_channels=1, num_classes=2)
    image = rng.integers(0, 256, (128, 96), dtype=np.uint8)
    path = tmp_path / "pyr.tif"
    with tifffile.TiffWriter(path) as tif:  # 1 um pixels, then 2 and 4 um
        tif.write(image, subifds=2, tile=(32, 32), resolution=(1e4, 1e4), resolutionunit="CENTIMETER")
        tif.write(image[::2, ::2], subfiletype=1, tile=(32, 32))
        tif.write(image[::4, ::4], subfiletype=1, tile=(32, 32))
    args = ["predict", "--input", str(path), "--format", "index", *EXACT]
    plain = unetseg.save_checkpoint(model, tmp_path / "plain.pt")
    assert main([*args, "--checkpoint", str(plain), "--output", str(tmp_path / "a"), "--pixel-size", "2.2"]) == 0
    assert tifffile.imread(tmp_path / "a" / "pyr_index.tif").shape == (64, 48)
    at4 = unetseg.save_checkpoint(model, tmp_path / "at4.pt", pixel_size=4.0)  # the model was trained at 4 um
    assert main([*args, "--checkpoint", str(at4), "--output", str(tmp_path / "b")]) == 0
    assert tifffile.imread(tmp_path / "b" / "pyr_index.tif").shape == (32, 24)
    assert main([*args, "--checkpoint", str(at4), "--output", str(tmp_path / "c"), "--level", "0"]) == 0
    assert tifffile.imread(tmp_path / "c" / "pyr_index.tif").shape == (128, 96)


def test_zarr_inputs_default_to_ome_zarr_labels(tmp_path, rng, checkpoint):
    model, ckpt = checkpoint
    image = rng.integers(0, 256, (50, 40), dtype=np.uint8)
    zarr.open_array(str(tmp_path / "in" / "scan.zarr"), mode="w", shape=image.shape, dtype=image.dtype)[:] = image
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--output",
                 str(tmp_path / "in"), *EXACT]) == 0  # the output folder may be the input folder
    labels = zarr.open_group(str(tmp_path / "in" / "scan_index.ome.zarr"), mode="r")["0"][:]
    np.testing.assert_array_equal(labels, unetseg.predict_tiled(model, image, tile_size=32, amp=False))
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--output",
                 str(tmp_path / "in"), *EXACT]) == 0  # the labels are not taken for a new input
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["scan.done.json", "scan.zarr", "scan_index.ome.zarr"]
