"""``unetseg evaluate`` on volumes: per-class Dice and IoU of each volume (checked against the counts on a known
case), their mean over the volumes, the pooled scores; the same from a config's validation volumes."""
import math

import numpy as np
import pytest
import torch
import yaml

import unetseg
from unetseg.cli import main

from ..conftest import randomized
from ..data.nifti_cases import SPACING, ct_case, oblique_affine, write_volume

NAMES = ("background", "class1", "class2")


@pytest.fixture
def case(tmp_path):
    """A 3-class 3D checkpoint, two CT volumes, and their label volumes: ``a`` the model's own prediction,
    ``b`` the true blob labels (partly wrong for the model)."""
    torch.manual_seed(0)
    model = randomized(unetseg.UNet(1, 3, base_channels=2, depth=2, padding="same", spatial_dims=3), 0)
    norm = unetseg.data.normalization.Normalization(mean=(40 / 32767,), std=(300 / 32767,))
    ckpt = unetseg.save_checkpoint(model, tmp_path / "m3d.pt", normalization=norm, class_names=list(NAMES),
                                   spacing=SPACING)
    model = unetseg.load_model(ckpt)
    truths, preds = {}, {}
    for name, seed in (("a", 0), ("b", 1)):
        image, labels = ct_case(seed)
        pred = unetseg.predict_tiled(model, image, tile_size=16, engine="torch")  # as evaluate predicts
        truths[name] = pred.copy() if name == "a" else labels
        preds[name] = pred
        write_volume(tmp_path / "images" / f"{name}.nii.gz", image, oblique_affine())
        write_volume(tmp_path / "masks" / f"{name}.nii.gz", truths[name].astype(np.uint8), oblique_affine())
    return ckpt, tmp_path, truths, preds


def expected_dice(pred, truth):
    out = []
    for c in range(3):
        both = (pred == c).sum() + (truth == c).sum()
        out.append(math.nan if both == 0 else 2 * ((pred == c) & (truth == c)).sum() / both)
    return out


def printed(block):
    """{class: (IoU, Dice)} of a format_scores table."""
    rows = {}
    for line in block.splitlines():
        for name in NAMES:
            if line.startswith(name + " "):
                iou, dice = line[len(name):].split()
                rows[name] = (float(iou) if iou != "n/a" else math.nan, float(dice) if dice != "n/a" else math.nan)
    return rows


def test_evaluate_scores_each_volume_their_mean_and_the_pool(case, capsys):
    ckpt, root, truths, preds = case
    code = main(["evaluate", "--checkpoint", str(ckpt), "--images", str(root / "images"), "--masks",
                 str(root / "masks"), "--tile-size", "16", "--engine", "torch"])
    out = capsys.readouterr().out
    assert code == 0
    part_a, rest = out.split("a.nii.gz:")[1].split("b.nii.gz:")
    part_b, rest = rest.split("mean over the 2 volumes")
    mean_part, pooled = rest.split("all voxels pooled")
    per_volume = {}
    for name, block in (("a", part_a), ("b", part_b)):
        dice = expected_dice(preds[name], truths[name])
        rows = printed(block)
        per_volume[name] = dice
        for c, cls in enumerate(NAMES):
            if math.isnan(dice[c]):
                assert math.isnan(rows[cls][1])
            else:
                assert rows[cls][1] == pytest.approx(dice[c], abs=6e-5)
                assert rows[cls][0] == pytest.approx(dice[c] / (2 - dice[c]), abs=6e-5)  # IoU = D / (2 - D)
    assert all(d == 1.0 or math.isnan(d) for d in per_volume["a"])  # the model's own labels
    assert any(d < 0.99 for d in per_volume["b"] if not math.isnan(d))
    means = printed(mean_part)
    for c, cls in enumerate(NAMES):
        values = [per_volume[n][c] for n in "ab" if not math.isnan(per_volume[n][c])]
        if values:
            assert means[cls][1] == pytest.approx(np.mean(values), abs=6e-5)
    pooled_dice = expected_dice(np.concatenate([preds["a"], preds["b"]]),
                                np.concatenate([truths["a"], truths["b"]]))
    for c, cls in enumerate(NAMES):
        if not math.isnan(pooled_dice[c]):
            assert printed(pooled)[cls][1] == pytest.approx(pooled_dice[c], abs=6e-5)


def test_evaluate_a_configs_validation_volumes(case, capsys):
    ckpt, root, truths, preds = case
    config = root / "vol.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"name": "unet", "spatial_dims": 3, "base_channels": 2, "depth": 2, "padding": "same"},
        "data": {"source": "folder", "images": str(root / "images"), "masks": str(root / "masks"),
                 "val_files": ["b.nii.gz"]}}))
    code = main(["evaluate", "--checkpoint", str(ckpt), "--config", str(config), "--tile-size", "16", "--engine", "torch"])
    out = capsys.readouterr().out
    assert code == 0 and "1 validation volume(s) of" in out
    rows = printed(out.split("b:")[1].split("mean over")[0])
    for c, dice in enumerate(expected_dice(preds["b"], truths["b"])):
        if not math.isnan(dice):
            assert rows[NAMES[c]][1] == pytest.approx(dice, abs=6e-5)


def test_a_mask_with_non_integer_values_is_one_line(case, capsys):
    ckpt, root, truths, _ = case
    write_volume(root / "masks" / "b.nii.gz", truths["b"].astype(np.float32) + 0.25, oblique_affine())
    code = main(["evaluate", "--checkpoint", str(ckpt), "--images", str(root / "images"), "--masks",
                 str(root / "masks")])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code != 0 and len(err) == 1 and "b.nii.gz" in err[0] and "not an integer" in err[0]
