"""``unetseg predict`` on volumes (NIfTI, TIFF z-stacks, OME-Zarr) with a 3D checkpoint: labels (nifti, tiff, ome-zarr)
on the input's grid (affine or spacing, shape, axis order), the summary, the done-manifest, and one-line errors for
image formats, 2D models and files that are not one volume."""
import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
import zarr

import unetseg
import unetseg.io
from unetseg.cli import main
from unetseg.models.anisotropy import pooling_plan

from ..conftest import randomized, tiny_unet
from ..io.test_nifti import AFFINE, saved


def checkpoint3d(tmp_path, spacing=(3.0, 1.0, 1.0)):
    torch.manual_seed(0)
    pooling, kernels = pooling_plan(spacing, 2)
    model = randomized(unetseg.UNet(1, 3, base_channels=2, depth=2, padding="same", spatial_dims=3,
                                    pooling=pooling, kernels=kernels), 0)
    return model, unetseg.save_checkpoint(model, tmp_path / "m3d.pt", spacing=spacing, orientation=("S", "A", "R"))


def test_predict_volume_keeps_the_inputs_geometry(tmp_path, rng):
    model, ckpt = checkpoint3d(tmp_path)
    data = rng.integers(0, 256, (30, 26, 9), dtype=np.uint8)  # (X, Y, Z), anisotropic, permuted axes
    path = saved(tmp_path, data)
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(ckpt), "--input", str(path), "--output", str(out),
                 "--format", "nifti,summary", "--amp", "off", "--halo", "4", "--tile-size", "16"])
    assert code == 0
    labels = nib.load(out / "vol_labels.nii.gz")
    assert labels.shape == data.shape and labels.get_data_dtype() == np.uint8
    np.testing.assert_allclose(labels.affine, AFFINE)
    assert nib.aff2axcodes(labels.affine) == nib.aff2axcodes(AFFINE)
    expected = unetseg.predict_tiled(model, data.transpose(2, 1, 0), amp=False, halo=4, tile_size=16)
    np.testing.assert_array_equal(np.asarray(labels.dataobj), expected.transpose(2, 1, 0))
    summary = json.loads((out / "vol_summary.json").read_text())
    assert summary["depth"] == 9 and summary["spacing"] == [3.0, 0.800000011920929, 0.699999988079071]
    assert sum(c["pixels"] for c in summary["classes"]) == data.size
    ml = sum(c["millilitres"] for c in summary["classes"])
    assert abs(ml - data.size * 3.0 * 0.8 * 0.7 / 1000) < 1e-6
    assert (out / "vol.done.json").is_file()


def test_volume_errors_are_one_line(tmp_path, capsys, rng):
    _, ckpt = checkpoint3d(tmp_path)
    path = saved(tmp_path, rng.integers(0, 256, (12, 12, 6), dtype=np.uint8))
    flat = unetseg.save_checkpoint(tiny_unet("same", depth=2), tmp_path / "m2d.pt")
    runs = [([str(ckpt), "--format", "index"], "not written for volumes"),
            ([str(flat)], "needs a 3D model")]
    for args, message in runs:
        code = main(["predict", "--checkpoint", *args[:1], "--input", str(path), "--output", str(tmp_path / "o"),
                     *args[1:]])
        err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert code != 0 and len(err) == 1 and message in err[0] and "vol.nii.gz" in err[0]


def test_evaluate_scores_each_volume_and_all(tmp_path, capsys, rng):
    model, ckpt = checkpoint3d(tmp_path)
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in ("a", "b"):
        data = rng.integers(0, 256, (20, 18, 8), dtype=np.uint8)
        nib.save(nib.Nifti1Image(data, AFFINE), images / f"{name}.nii.gz")
        labels = unetseg.predict_tiled(model, data.transpose(2, 1, 0))
        if name == "b":
            labels = (labels + 1) % 3  # every voxel wrong
        nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0), AFFINE), masks / f"{name}.nii.gz")
    code = main(["evaluate", "--checkpoint", str(ckpt), "--images", str(images), "--masks", str(masks)])
    out = capsys.readouterr().out
    assert code == 0
    blocks = out.split("a.nii.gz:")[1], out.split("b.nii.gz:")[1]
    assert "pixel accuracy 1.0000" in blocks[0].split("b.nii.gz")[0] and "pixel accuracy 0.0000" in blocks[1]
    assert "on 2 volume(s)" in out and "pixel accuracy 0.5000" in out.split("volume(s)")[1]
    nib.save(nib.Nifti1Image(np.zeros((20, 18, 7), np.uint8), AFFINE), masks / "b.nii.gz")
    code = main(["evaluate", "--checkpoint", str(ckpt), "--images", str(images), "--masks", str(masks)])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code != 0 and len(err) == 1 and "not on the voxel grid" in err[0] and "b.nii.gz" in err[0]


ANISO = (3.0, 0.5, 0.5)  # (dz, dy, dx) micrometres
ZYX = (12, 20, 24)
RUN = ["--amp", "off", "--halo", "4", "--tile-size", "16"]


def varied3d(tmp_path):
    """A tiny 3D model whose labels vary over a random volume (most random tiny models give one class everywhere),
    saved as a checkpoint."""
    torch.manual_seed(4)
    pooling, kernels = pooling_plan((3.0, 1.0, 1.0), 2)
    model = unetseg.UNet(1, 3, base_channels=2, depth=2, padding="same", spatial_dims=3, pooling=pooling,
                         kernels=kernels).eval()
    with torch.no_grad():
        model.head.bias.zero_()
    return model, unetseg.save_checkpoint(model, tmp_path / "varied.pt", spacing=(3.0, 1.0, 1.0))


def whole(model, volume):
    return unetseg.predict_tiled(model, volume, amp=False, halo=4, tile_size=16)


def predict(ckpt, path, out, *extra):
    return main(["predict", "--checkpoint", str(ckpt), "--input", str(path), "--output", str(out), *RUN, *extra])


def test_predict_tiff_stack_writes_every_volume_format_with_its_geometry(tmp_path, rng):
    from ..io.test_volume_io import ome_tiff

    model, ckpt = varied3d(tmp_path)
    data = rng.integers(0, 256, ZYX, dtype=np.uint8)
    path = ome_tiff(tmp_path / "stack.tif", data, "ZYX", spacing=ANISO)
    out = tmp_path / "out"
    assert predict(ckpt, path, out, "--format", "nifti,ome-zarr,tiff,summary") == 0
    expected = whole(model, data)
    assert len(np.unique(expected)) > 1
    # OME-TIFF: axes ZYX, the input's PhysicalSize*
    tiff = unetseg.io.open_volume(out / "stack_labels.ome.tif")
    assert tiff.shape == ZYX and tiff.spacing == pytest.approx(ANISO) and tiff.unit == "micrometer"
    np.testing.assert_array_equal(np.asarray(tiff), expected)
    # OME-Zarr: level-0 scale = spacing, axes z, y, x
    group = zarr.open_group(str(out / "stack_index.ome.zarr"), mode="r")
    ms = dict(group.attrs)["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == pytest.approx(list(ANISO))
    np.testing.assert_array_equal(np.asarray(group["0"]), expected)
    # NIfTI: (x, y, z) voxels, affine diag(dx, dy, dz)
    nifti = nib.load(out / "stack_labels.nii.gz")
    np.testing.assert_allclose(nifti.affine, np.diag([0.5, 0.5, 3.0, 1.0]))
    np.testing.assert_array_equal(np.asarray(nifti.dataobj), expected.transpose(2, 1, 0))
    summary = json.loads((out / "stack_summary.json").read_text())
    assert summary["spacing"] == pytest.approx(list(ANISO)) and summary["unit"] == "micrometer"
    assert any("diag(dx, dy, dz)" in note for note in summary["notes"])
    assert sum(c["millilitres"] for c in summary["classes"]) == pytest.approx(data.size * 0.75e-12)


def test_predict_nifti_to_tiff_and_ome_zarr_keeps_spacing_and_axis_order(tmp_path, rng):
    model, ckpt = varied3d(tmp_path)
    data = rng.integers(0, 256, (24, 20, 12), dtype=np.uint8)  # (X, Y, Z), non-identity affine
    path = saved(tmp_path, data)
    out = tmp_path / "out"
    assert predict(ckpt, path, out, "--format", "tiff,ome-zarr,nifti,summary") == 0
    notes = json.loads((out / "vol_summary.json").read_text())["notes"]
    assert any("not the NIfTI orientation" in note for note in notes)
    expected = whole(model, data.transpose(2, 1, 0))
    assert len(np.unique(expected)) > 1
    spacing_mm = nib.load(path).header.get_zooms()[::-1]
    tiff = unetseg.io.open_volume(out / "vol_labels.ome.tif")
    assert tiff.shape == (12, 20, 24) and tiff.unit == "micrometer"
    assert tiff.spacing == pytest.approx([s * 1000 for s in spacing_mm], rel=1e-6)
    np.testing.assert_array_equal(np.asarray(tiff), expected)
    ms = dict(zarr.open_group(str(out / "vol_index.ome.zarr"), mode="r").attrs)["multiscales"][0]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == pytest.approx(list(spacing_mm))
    assert ms["axes"][0] == {"name": "z", "type": "space", "unit": "millimeter"}
    np.testing.assert_allclose(nib.load(out / "vol_labels.nii.gz").affine, AFFINE)


def test_predict_ome_zarr_volume_defaults_to_ome_zarr_labels(tmp_path, rng):
    from ..io.test_volume_io import ome_zarr_image

    model, ckpt = checkpoint3d(tmp_path)
    data = rng.integers(0, 256, ZYX, dtype=np.uint8)
    path = ome_zarr_image(tmp_path / "img.zarr", data)
    out = tmp_path / "out"
    assert predict(ckpt, path, out) == 0
    group = zarr.open_group(str(out / "img_index.ome.zarr"), mode="r")
    np.testing.assert_array_equal(np.asarray(group["0"]), whole(model, data))
    scale = dict(group.attrs)["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx(list(ANISO))


def test_volume_and_model_mismatches_are_one_line(tmp_path, capsys, rng):
    from ..io.test_volume_io import ome_tiff

    _, ckpt = checkpoint3d(tmp_path)
    flat_model = unetseg.save_checkpoint(tiny_unet("same", depth=2), tmp_path / "m2d.pt")
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, rng.integers(0, 255, (20, 24), dtype=np.uint8))
    series = ome_tiff(tmp_path / "series.ome.tif", rng.integers(0, 9, (2, *ZYX), dtype=np.uint8), "TZYX")
    stack = ome_tiff(tmp_path / "stack.ome.tif", rng.integers(0, 9, ZYX, dtype=np.uint8), "ZYX")
    runs = [(ckpt, flat, "not a z-stack"), (ckpt, series, "T=2"), (flat_model, stack, "model is 2D")]
    for model, path, message in runs:
        code = predict(model, path, tmp_path / "o")
        err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert code != 0 and len(err) == 1 and message in err[0] and path.name in err[0], err
    assert not list((tmp_path / "o").glob("*_labels*"))


def test_stacks_without_spacing_say_so_in_the_summary(tmp_path, rng):
    _, ckpt = varied3d(tmp_path)
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, rng.integers(0, 256, ZYX, dtype=np.uint8))  # no OME/ImageJ metadata
    out = tmp_path / "out"
    assert predict(ckpt, path, out, "--format", "tiff,summary") == 0
    summary = json.loads((out / "plain_summary.json").read_text())
    assert summary["spacing"] == [1.0, 1.0, 1.0] and summary["unit"] is None
    assert any("unit unknown" in note for note in summary["notes"])
    assert all("millilitres" not in c for c in summary["classes"])
    labels = unetseg.io.open_volume(out / "plain_labels.ome.tif")
    assert labels.shape == ZYX and labels.unit is None
