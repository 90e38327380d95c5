"""``unetseg predict`` on NIfTI volumes with a 3D checkpoint: labels on the input's grid (affine, shape, axis
order), the summary, the done-manifest, and one-line errors for image formats and 2D models."""
import json

import nibabel as nib
import numpy as np
import torch

import unetseg
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
