"""train --folds: folds partition the data (files, or regions of few images), cv.json pools their scores, the
held-out images score every fold and the ensemble, and predict runs the folds' ensemble."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from unetseg.cli import main
from unetseg.data.folds import fold_assignment
from unetseg.errors import UnetsegError
from unetseg.training.datasets import load_splits
from unetseg.training.folds import fold_config, train_folds

from .conftest import make_config


def test_fold_assignment_partitions_evenly():
    folds = fold_assignment(17, 5, seed=3)
    assert sorted(np.bincount(folds).tolist()) == [3, 3, 3, 4, 4]
    assert np.array_equal(folds, fold_assignment(17, 5, seed=3))
    with pytest.raises(UnetsegError, match="5 folds need at least 5 items"):
        fold_assignment(4, 5)


def test_file_folds_of_a_folder_partition_its_images(tmp_path, rng):
    for name in ("images", "masks"):
        (tmp_path / name).mkdir()
    for i in range(7):
        cv2.imwrite(str(tmp_path / "images" / f"im{i}.png"), rng.integers(0, 256, (40, 40), dtype=np.uint8))
        cv2.imwrite(str(tmp_path / "masks" / f"im{i}.png"), rng.integers(0, 2, (40, 40), dtype=np.uint8))
    config = make_config(data={"source": "folder", "sample": None, "images": str(tmp_path / "images"),
                               "masks": str(tmp_path / "masks")})
    seen = []
    for i in range(3):
        train, val = load_splits(fold_config(config, i, 3).data)
        assert not set(train.info["stems"]) & set(val.info["stems"])
        assert len(train.info["stems"]) + len(val.info["stems"]) == 7
        seen += val.info["stems"]
    assert sorted(seen) == [f"im{i}" for i in range(7)]


def test_a_samples_many_images_make_file_folds_and_its_validation_stays_held_out():
    config = make_config(data={"sample": "brain"})
    train_all, held = load_splits(config.data)
    sizes = []
    for i in range(4):
        train, val = load_splits(fold_config(config, i, 4).data)
        assert len(train.images) + len(val.images) == len(train_all.images)
        sizes.append(len(val.images))
    assert sum(sizes) == len(train_all.images) and max(sizes) - min(sizes) <= 1


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    config = make_config(model={"padding": "same"}, train={"epochs": 1})
    return train_folds(config, tmp_path_factory.mktemp("cv") / "out", 3, progress=False)


def test_region_folds_of_one_image_and_cv_json(cv_run):
    out = cv_run.run_dir
    regions = [json.loads((out / f"fold{i}" / "split.json").read_text())["val"]["regions"] for i in range(3)]
    blocks = [tuple(r["block"]) for fold in regions for r in fold]
    assert len(blocks) == 16 and len(set(blocks)) == 16  # the 4 x 4 blocks, each validating one fold
    cv = json.loads((out / "cv.json").read_text())
    assert cv["folds"] == 3 and [f["fold"] for f in cv["per_fold"]] == [0, 1, 2]
    assert 0 <= cv["pooled"]["miou"] <= 1 and set(cv["pooled"]["iou"]) == {"background", "nucleus"}
    held = cv["held_out"]
    assert len(held["per_fold"]) == 3 and 0 <= held["ensemble"]["miou"] <= 1
    assert held["ensemble_minus_best_member"] == pytest.approx(
        held["ensemble"]["miou"] - max(m["miou"] for m in held["per_fold"]))
    with pytest.raises(UnetsegError, match="already holds a finished cross-validation"):
        train_folds(make_config(), out, 3, progress=False)


def test_predict_runs_the_folds_ensemble_and_evaluate_scores_each_fold(cv_run, tmp_path, rng, capsys):
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    image = tmp_path / "images" / "x.png"
    cv2.imwrite(str(image), rng.integers(0, 256, (64, 64), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "masks" / "x.png"), rng.integers(0, 2, (64, 64), dtype=np.uint8))
    assert main(["evaluate", "--checkpoint", str(cv_run.run_dir), "--images", str(tmp_path / "images"),
                 "--masks", str(tmp_path / "masks"), "--engine", "torch"]) == 0
    printed = capsys.readouterr().out  # the folds of the image's 4 x 4 blocks, each fold's best.pt on its own
    assert all(any(line.split()[:2] == [str(i), str(n)] for line in printed.splitlines()) for i, n in
               ((0, 6), (1, 5), (2, 5)))
    code = main(["predict", "--checkpoint", str(cv_run.run_dir), "--input", str(image), "--output",
                 str(tmp_path / "o"), "--format", "index,uncertainty,summary", "--amp", "off"])
    assert code == 0
    summary = json.loads((tmp_path / "o" / "x_summary.json").read_text())
    assert summary["uncertainty"]["mean_entropy"] > 0
