"""Ensembles: averaged probabilities, each member with its own normalisation; tiled == whole; uncertainty."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tifffile
import torch

import unetseg
from unetseg.cli import main
from unetseg.data.normalization import Normalization
from unetseg.errors import UnetsegError
from unetseg.models.ensemble import Ensemble, as_model, checkpoint_paths

from ..conftest import tiny_unet

EXACT = dict(amp=False, engine="torch", halo="exact")


def members(n: int = 3, padding: str = "same", classes: int = 3, channels: int = 3) -> list[unetseg.UNet]:
    out = []
    for i in range(n):
        m = tiny_unet(padding, depth=2, in_channels=channels, num_classes=classes, seed=i)
        # folds see different pixels: each member has its own statistics
        m.normalization = Normalization(tuple(0.4 + 0.05 * i + 0.01 * c for c in range(channels)),
                                        tuple(0.2 + 0.03 * i for _ in range(channels)))
        out.append(m)
    return out


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_ensemble_tiled_equals_the_mean_of_its_members_on_the_whole_image(padding, rng):
    models = members(padding=padding)
    image = rng.integers(0, 256, (97, 130, 3), dtype=np.uint8)
    whole = [unetseg.predict_tiled(m, image, tile_size=512, output="probs", **EXACT) for m in models]
    tiled = unetseg.predict_tiled(models, image, tile_size=48, output="probs", **EXACT)
    np.testing.assert_allclose(tiled, np.mean(whole, axis=0), atol=2e-6)
    labels = unetseg.predict_tiled(models, image, tile_size=48, **EXACT)
    np.testing.assert_array_equal(labels, np.mean(whole, axis=0).argmax(-1))


def test_one_class_members_average_their_sigmoids(rng):
    models = members(2, classes=1)
    image = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    whole = [unetseg.predict_tiled(m, image, tile_size=256, output="probs", **EXACT) for m in models]
    got = unetseg.predict_tiled(models, image, tile_size=32, output="probs", **EXACT)
    np.testing.assert_allclose(got, np.mean(whole, axis=0), atol=2e-6)


def test_entropy_is_within_zero_and_log_k_and_disagreement_needs_several_views(rng):
    models = members()
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    probs = unetseg.predict_tiled(models, image, tile_size=48, output="probs", **EXACT)
    u = unetseg.predict_tiled(models, image, tile_size=48, output="uncertainty", **EXACT)
    assert u.shape == (64, 80, 2) and u.dtype == np.float32
    assert u[..., 0].min() >= 0 and u[..., 0].max() <= math.log(3) + 1e-6
    np.testing.assert_allclose(u[..., 0], -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(-1), atol=1e-5)
    # members that differ disagree; the mutual information is at most the entropy
    assert u[..., 1].max() > 0 and np.all(u[..., 1] <= u[..., 0] + 1e-6)
    alone = unetseg.predict_tiled(models[0], image, tile_size=48, output="uncertainty", **EXACT)
    assert np.all(alone[..., 1] == 0)  # one view cannot disagree with itself
    tta = unetseg.predict_tiled(models[0], image, tile_size=48, output="uncertainty", tta="flips", **EXACT)
    assert tta[..., 1].max() > 0
    # the ensemble of one model repeated: no disagreement, the member's own entropy
    same = unetseg.predict_tiled([models[0], models[0]], image, tile_size=48, output="uncertainty", **EXACT)
    np.testing.assert_allclose(same[..., 0], alone[..., 0], atol=1e-5)
    assert same[..., 1].max() < 1e-5


def test_the_same_list_gives_the_same_ensemble_and_bad_members_are_one_line():
    models = members(2)
    assert as_model(models) is as_model(list(models))
    assert as_model([models[0]]) is models[0]
    with pytest.raises(UnetsegError, match="member 1 has classes 2, member 0 has 3"):
        Ensemble([models[0], tiny_unet("same", depth=2, in_channels=3, num_classes=2)])
    with pytest.raises(UnetsegError, match="member 1 has size rule"):
        Ensemble([models[0], tiny_unet("same", depth=3, in_channels=3)])
    with pytest.raises(UnetsegError, match="not a unetseg model"):
        Ensemble([models[0], torch.nn.Conv2d(3, 3, 1)])
    with pytest.raises(TypeError, match="saved as its members' checkpoints"):
        unetseg.save_checkpoint(as_model(models), "never.pt")


def test_the_ensemble_runs_on_dask_workers_as_one_process(dask_client, tmp_path, rng):
    from unetseg.scale.dask import dask_tiled
    from unetseg.tiling import TileOptions, tiled

    models = members(2, padding="valid")
    image = rng.integers(0, 256, (90, 77, 3), dtype=np.uint8)
    options = TileOptions(tile_size=84, amp=False, batch_size=1, engine="torch")
    expected = tiled(models, image, options).output
    got = dask_tiled(models, image, tmp_path / "l.zarr", chunk=40, client=dask_client, options=options)
    np.testing.assert_array_equal(np.asarray(got.output[:]), expected)


def test_predict_cli_takes_a_folds_folder_and_writes_uncertainty(tmp_path, rng):
    models = members(3)
    for i, m in enumerate(models):
        (tmp_path / "cv" / f"fold{i}").mkdir(parents=True)
        unetseg.save_checkpoint(m, tmp_path / "cv" / f"fold{i}" / "best.pt", class_names=["bg", "a", "b"])
    assert [p.parent.name for p in checkpoint_paths([tmp_path / "cv"])] == ["fold0", "fold1", "fold2"]
    image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", image, tile=(32, 32))
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(tmp_path / "cv"), "--input", str(tmp_path / "img.tif"),
                 "--output", str(out), "--tile-size", "48", "--amp", "off", "--engine", "torch", "--halo", "exact",
                 "--format", "index,uncertainty,summary"])
    assert code == 0
    loaded = [unetseg.load_model(tmp_path / "cv" / f"fold{i}" / "best.pt") for i in range(3)]
    expected = unetseg.predict_tiled(loaded, image, tile_size=48, output="uncertainty", **EXACT)
    np.testing.assert_array_equal(tifffile.imread(out / "img_index.tif"),
                                  unetseg.predict_tiled(loaded, image, tile_size=48, **EXACT))
    np.testing.assert_allclose(tifffile.imread(out / "img_uncertainty.tif"), expected, atol=1e-6)
    summary = json.loads((out / "img_summary.json").read_text())
    assert summary["uncertainty"]["mean_entropy"] == pytest.approx(float(expected[..., 0].mean()), rel=1e-4)
    assert summary["uncertainty"]["mean_disagreement"] == pytest.approx(float(expected[..., 1].mean()), rel=1e-3)
    assert summary["uncertainty"]["max_entropy"] == pytest.approx(math.log(3))


def test_predict_cli_names_a_missing_checkpoint(tmp_path, capsys, rng):
    tifffile.imwrite(tmp_path / "img.tif", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    code = main(["predict", "--checkpoint", str(tmp_path / "nope"), "--input", str(tmp_path / "img.tif"),
                 "--output", str(tmp_path / "o")])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(err) == 1 and "nope" in err[0]
