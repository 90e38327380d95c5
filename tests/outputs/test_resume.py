"""A one-process run into OME-Zarr labels that is killed part-way resumes chunk by chunk with the same result."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import zarr

import unetseg
from unetseg.io.ome_zarr_labels import resumable_folder
from unetseg.outputs import predict as predict_module
from unetseg.outputs import predict_file
from unetseg.scale import chunked

pytest.importorskip("ome_zarr")

KILL_AFTER = 3
# the child: the same run, whose process is killed (SIGKILL: no cleanup runs) as its 4th chunk starts
CHILD = """
import os, signal, sys
from pathlib import Path
import unetseg
from unetseg.scale import chunked
from unetseg.outputs import predict as predict_module, predict_file
from unetseg.tiling.options import TileOptions
predict_module.DEFAULT_CHUNK = 128
real, calls = chunked.predict_block, []
def dying(*args):
    calls.append(1)
    if len(calls) > {kill}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args)
chunked.predict_block = dying
model = unetseg.load_model(sys.argv[1])
predict_file(model, Path(sys.argv[2]), Path(sys.argv[3]), ["ome-zarr", "summary"],
             options=TileOptions(tile_size=256, amp=False))
"""


@pytest.fixture
def scene(tmp_path, trained_same_unet):
    from unetseg.data.samples import load_sample

    image = np.tile(load_sample("nuclei", "train").images[0], (1, 2))[:480, :700]
    tifffile.imwrite(tmp_path / "scan.tif", image, tile=(128, 128))
    ckpt = unetseg.save_checkpoint(trained_same_unet, tmp_path / "m.pt")
    return tmp_path / "scan.tif", ckpt


def counting(monkeypatch):
    calls = []
    real = chunked.predict_block

    def count(*args):
        calls.append(args[3])
        return real(*args)

    monkeypatch.setattr(chunked, "predict_block", count)
    return calls


def test_a_killed_run_resumes_from_its_recorded_chunks_with_the_same_result(tmp_path, scene, monkeypatch):
    from unetseg.tiling.options import TileOptions

    image, ckpt = scene
    monkeypatch.setattr(predict_module, "DEFAULT_CHUNK", 128)
    options = TileOptions(tile_size=256, amp=False)
    model = unetseg.load_model(ckpt)
    whole_calls = counting(monkeypatch)
    predict_file(model, image, tmp_path / "whole" / "scan", ["ome-zarr", "summary"], options=options)
    expected = zarr.open_group(str(tmp_path / "whole" / "scan_index.ome.zarr"), mode="r")["0"][:]
    np.testing.assert_array_equal(expected, unetseg.predict_tiled(model, tifffile.imread(image), tile_size=256,
                                                                  amp=False))
    chunks = len(whole_calls)
    assert chunks > KILL_AFTER + 2
    monkeypatch.undo()
    monkeypatch.setattr(predict_module, "DEFAULT_CHUNK", 128)

    stem = tmp_path / "out" / "scan"
    killed = subprocess.run([sys.executable, "-c", CHILD.format(kill=KILL_AFTER), str(ckpt), str(image), str(stem)],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    final = tmp_path / "out" / "scan_index.ome.zarr"
    assert not final.exists() and resumable_folder(final).is_dir()

    calls = counting(monkeypatch)
    written = predict_file(model, image, stem, ["ome-zarr", "summary"], options=options)
    assert len(calls) == chunks - KILL_AFTER  # the recorded chunks are not redone
    np.testing.assert_array_equal(zarr.open_group(str(final), mode="r")["0"][:], expected)
    assert not resumable_folder(final).exists() and not (final / ".unetseg-journal").exists()
    summary = json.loads(next(p for p in written if p.suffix == ".json").read_text())
    whole = json.loads((tmp_path / "whole" / "scan_summary.json").read_text())
    assert summary["classes"] == whole["classes"]  # counts of recorded chunks come from the journal


def test_other_settings_start_afresh(tmp_path, scene, monkeypatch):
    from unetseg.tiling.options import TileOptions

    image, ckpt = scene
    monkeypatch.setattr(predict_module, "DEFAULT_CHUNK", 128)
    stem = tmp_path / "out" / "scan"
    killed = subprocess.run([sys.executable, "-c", CHILD.format(kill=KILL_AFTER), str(ckpt), str(image), str(stem)],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9
    calls = counting(monkeypatch)
    model = unetseg.load_model(ckpt)
    predict_file(model, image, stem, ["ome-zarr"], options=TileOptions(tile_size=192, amp=False))
    first = len(calls)
    fresh = counting(monkeypatch)
    predict_file(model, image, tmp_path / "fresh" / "scan", ["ome-zarr"], options=TileOptions(tile_size=192, amp=False))
    assert first == len(fresh) > KILL_AFTER  # another tile size: none of the old run is kept
    expected = unetseg.predict_tiled(model, tifffile.imread(image), tile_size=192, amp=False)
    final = tmp_path / "out" / "scan_index.ome.zarr"
    np.testing.assert_array_equal(zarr.open_group(str(final), mode="r")["0"][:], expected)


VOLUME_CHILD = """
import os, signal, sys
from pathlib import Path
import unetseg
from unetseg.io.ome_zarr_labels import ChunkJournal
from unetseg.outputs.volume import predict_volume_file
from unetseg.tiling.options import TileOptions
real, calls = ChunkJournal.record, []
def dying(self, *args):
    real(self, *args)
    calls.append(1)
    if len(calls) == {kill}:
        os.kill(os.getpid(), signal.SIGKILL)  # right after the slab is recorded: the next one is never written
ChunkJournal.record = dying
predict_volume_file(unetseg.load_model(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), ["ome-zarr", "summary"],
                    options=TileOptions(tile_size=32, halo=8, amp=False, engine="torch"))
"""


def test_a_killed_volume_run_resumes_from_its_recorded_slabs_with_the_same_result(tmp_path, monkeypatch):
    import torch

    from unetseg.io.nifti import write_nifti
    from unetseg.io.ome_zarr_labels import ChunkJournal
    from unetseg.outputs.volume import predict_volume_file
    from unetseg.tiling.options import TileOptions

    from ..conftest import randomized

    torch.manual_seed(0)
    model = randomized(unetseg.UNet(1, 3, base_channels=2, depth=2, padding="same", spatial_dims=3), 0)
    ckpt = unetseg.save_checkpoint(model, tmp_path / "m3d.pt")
    volume = np.random.default_rng(0).integers(0, 256, (96, 20, 18), dtype=np.uint8)
    path = write_nifti(tmp_path / "scan.nii.gz", volume, np.diag([1.0, 1.0, 2.0, 1.0]))
    options = TileOptions(tile_size=32, halo=8, amp=False, engine="torch")  # slabs of 16 kept slices
    recorded = []
    real = ChunkJournal.record
    monkeypatch.setattr(ChunkJournal, "record", lambda self, *a: (recorded.append(a[0]), real(self, *a)))
    predict_volume_file(model, path, tmp_path / "whole" / "scan", ["ome-zarr", "summary"], options=options)
    expected = zarr.open_group(str(tmp_path / "whole" / "scan_index.ome.zarr"), mode="r")["0"][:]
    np.testing.assert_array_equal(expected, unetseg.predict_tiled(model, volume, tile_size=32, halo=8, amp=False,
                                                                  engine="torch"))
    slabs = len(recorded)
    assert slabs > KILL_AFTER + 1

    stem = tmp_path / "out" / "scan"
    killed = subprocess.run([sys.executable, "-c", VOLUME_CHILD.format(kill=KILL_AFTER), str(ckpt), str(path),
                             str(stem)], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    final = tmp_path / "out" / "scan_index.ome.zarr"
    assert not final.exists() and resumable_folder(final).is_dir()

    recorded.clear()
    written = predict_volume_file(model, path, stem, ["ome-zarr", "summary"], options=options)
    assert len(recorded) == slabs - KILL_AFTER  # the recorded slabs are not computed again
    np.testing.assert_array_equal(zarr.open_group(str(final), mode="r")["0"][:], expected)
    assert not resumable_folder(final).exists()
    summary = json.loads(next(p for p in written if p.suffix == ".json").read_text())
    whole = json.loads((tmp_path / "whole" / "scan_summary.json").read_text())
    assert summary["classes"] == whole["classes"]  # the recorded slabs' counts come from the journal

    def interrupted(self, *a):  # stopped by an exception this time: the resumable folder is kept all the same
        real(self, *a)
        raise KeyboardInterrupt

    monkeypatch.setattr(ChunkJournal, "record", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict_volume_file(model, path, stem, ["ome-zarr", "summary"], options=options)
    assert resumable_folder(final).is_dir()
    monkeypatch.setattr(ChunkJournal, "record", lambda self, *a: (recorded.append(a[0]), real(self, *a)))
    recorded.clear()  # other settings (the same grid) are another run: every slab is computed
    predict_volume_file(model, path, stem, ["ome-zarr", "summary"],
                        options=TileOptions(tile_size=32, halo=8, amp=False, engine="torch", pad_mode="symmetric"))
    assert len(recorded) == slabs and not resumable_folder(final).exists()
