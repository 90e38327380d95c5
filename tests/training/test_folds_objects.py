"""train --folds on instance data: each fold's best.pt is scored as objects (AP@0.5, AP@0.75, PQ, count error) on
its own validation part, cv.json holds their mean, spread and pooled scores and the command prints them as a
table; evaluate of the folds folder scores each fold on its own part; a single image is cut into the plan's
region grid, every block validating exactly one fold."""
from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
import tifffile
import yaml

from unetseg.cli import main
from unetseg.config import DataConfig
from unetseg.data.folds import FEW_IMAGES, block_fold_assignment, fold_mode
from unetseg.data.regions import region_split
from unetseg.metrics import ObjectScores
from unetseg.models import load_model
from unetseg.objects.separate import label_objects, object_rule
from unetseg.tiling import predict_tiled
from unetseg.training import plan
from unetseg.training.datasets import load_splits
from unetseg.training.folds import folds_table
from unetseg.training.setup import model_context

from ..data.test_fingerprint import disks, folder
from .conftest import TINY, merge

KEYS = {"ap@0.5": ("ap", "0.5"), "ap@0.75": ("ap", "0.75"), "pq": ("pq",), "count_error": ("count_error",)}


def _instance_image(root):
    """One 128 x 128 image of 49 bright disks and its instance ids (uint16 TIFF)."""
    ids = disks((128, 128), [(10 + 18 * (k // 7), 10 + 18 * (k % 7)) for k in range(49)], 6)
    image = (np.where(ids > 0, 200, 40) + np.random.default_rng(0).integers(0, 30, ids.shape)).astype(np.uint8)
    return folder(root, [image], [ids], ".tif")


@pytest.fixture(scope="module")
def cv_objects(tmp_path_factory):
    root = tmp_path_factory.mktemp("objcv")
    images, masks = _instance_image(root / "data")
    config = merge(TINY, {"model": {"padding": "same", "base_channels": 8},
                          "data": {"source": "folder", "sample": None, "images": str(images), "masks": str(masks),
                                   "mask_mode": "instances", "boundary_width": 1, "patch_size": 32,
                                   "patches_per_epoch": 16},
                          "train": {"epochs": 5, "lr": 0.01, "batch_size": 4, "plot_samples": 0}})
    path = root / "cv.yaml"
    path.write_text(yaml.safe_dump(config))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", str(path), "--folds", "2", "--out", str(root / "out")]) == 0
    return root / "out", path, (images, masks), printed.getvalue()


def _value(scores: dict, key: str) -> float:
    if key == "miou":
        return scores["miou"]
    value = scores["objects"]
    for part in KEYS[key]:
        value = value[part]
    return value


def test_cv_json_holds_each_folds_object_scores_recomputed_from_its_own_validation_blocks(cv_objects):
    out, _, _, _ = cv_objects
    cv = json.loads((out / "cv.json").read_text())
    assert cv["split"] == {"mode": "regions", "grid": [4, 4]}
    pooled = ObjectScores()
    for i, fold in enumerate(cv["per_fold"]):
        model = load_model(out / f"fold{i}" / "best.pt")
        config = yaml.safe_load((out / f"fold{i}" / "config.yaml").read_text())
        _, val = load_splits(DataConfig.model_validate(config["data"]), gap=model_context(model))
        assert fold["images"] == len(val.images) == 8 and val.instances is not None
        rule = object_rule(model)  # what predict --format instances uses
        # the post-processing was tuned on the fold's validation blocks as cross-validation scores them
        assert model.meta.object_tuning.ap50 == pytest.approx(fold["objects"]["ap"]["0.5"])
        mine = ObjectScores()
        for image, true, off in zip(val.images, val.instances, val.info["unscored"], strict=True):
            pred = predict_tiled(model, image, tile_size=128, amp=False, engine="torch")
            mine.update(true, label_objects(pred, rule, model.num_classes)[0], off)
        expected = mine.compute()
        assert fold["objects"]["n_true"] == expected["n_true"] and fold["objects"]["n_pred"] == expected["n_pred"]
        for t in (0.5, 0.75):
            assert fold["objects"]["ap"][f"{t:g}"] == pytest.approx(expected["ap"][t])
        assert fold["objects"]["pq"] == pytest.approx(expected["pq"])
        pooled = pooled.merge(mine)
    # every disk once, in the 32 px block holding at least half of it; none where the grid's lines cross it
    ids = tifffile.imread(next(cv_objects[2][1].iterdir()))
    blocks = [np.bincount(ids[r : r + 32, c : c + 32].ravel(), minlength=50) for r in range(0, 128, 32)
              for c in range(0, 128, 32)]
    held = np.max(blocks, axis=0)[1:] * 2 >= np.bincount(ids.ravel(), minlength=50)[1:]
    assert sum(f["objects"]["n_true"] for f in cv["per_fold"]) == held.sum() > 40
    assert max(f["objects"]["ap"]["0.5"] for f in cv["per_fold"]) > 0  # the folds learnt to find objects
    total = pooled.compute()
    assert cv["pooled"]["objects"]["ap"]["0.5"] == pytest.approx(total["ap"][0.5])
    assert cv["pooled"]["objects"]["pq"] == pytest.approx(total["pq"])
    for key in ("miou", *KEYS):
        values = [_value(f, key) for f in cv["per_fold"]]
        summary = cv["summary"][key]
        assert summary["mean"] == pytest.approx(sum(values) / len(values))
        assert summary["spread"] == pytest.approx(max(values) - min(values))


def test_train_folds_prints_the_folds_table(cv_objects):
    out, _, _, printed = cv_objects
    cv = json.loads((out / "cv.json").read_text())
    assert "2 region folds of 4x4 blocks" in printed and folds_table(cv) in printed
    rows = {line.split()[0]: line.split() for line in printed.splitlines() if line.split()}
    assert rows["fold"][-5:] == ["AP@0.5", "AP@0.75", "PQ", "count", "err"]
    for i, fold in enumerate(cv["per_fold"]):
        assert [float(v) for v in rows[str(i)][2:]] == pytest.approx(
            [_value(fold, k) for k in ("miou", *KEYS)], abs=5e-5)
    assert [float(v) for v in rows["spread"][1:]] == pytest.approx(
        [cv["summary"][k]["spread"] for k in ("miou", *KEYS)], abs=5e-5)


def test_evaluate_a_folds_folder_scores_each_fold_on_its_own_validation_part(cv_objects, capsys):
    out, config, (images, masks), _ = cv_objects
    cv = json.loads((out / "cv.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--config", str(config), "--engine", "torch"]) == 0
    assert folds_table(cv) in capsys.readouterr().out  # the numbers of cv.json: each fold on its own blocks
    assert main(["evaluate", "--checkpoint", str(out), "--images", str(images), "--masks", str(masks),
                 "--engine", "torch"]) == 0
    assert folds_table(cv) in capsys.readouterr().out
    (out / "fold1" / "best.pt").rename(out / "fold1" / "kept.pt")
    try:
        assert main(["evaluate", "--checkpoint", str(out), "--config", str(config)]) == 2
        assert "finish the cross-validation" in capsys.readouterr().err
    finally:
        (out / "fold1" / "kept.pt").rename(out / "fold1" / "best.pt")


@pytest.mark.parametrize("k", [2, 3, 4, 5, 16])
def test_region_folds_of_a_single_image_cover_every_block_once(k):
    grid = (plan.REGION_GRID, plan.REGION_GRID)
    image = np.arange(64 * 64, dtype=np.int64).reshape(64, 64)  # every pixel its own value
    mask = np.ones((64, 64), np.uint8)
    seen: list[int] = []
    for i in range(k):
        _, val, record = region_split([image], [mask], [None], ["im"], grid=grid, val_fraction=0.0, seed=0, gap=4,
                                      ignore=255, fold=(i, k))
        assert record["fold"] == i and len(val["images"]) in (16 // k, 16 // k + 1)
        seen += [int(v) for block in val["images"] for v in block.ravel()]
    assert sorted(seen) == list(range(64 * 64))  # every pixel validates exactly one fold


def test_region_folds_are_compact_so_the_context_gap_keeps_most_training_labels():
    """4 folds of the 4 x 4 grid are its quadrants; with a gap of half a block, every fold still trains on most of
    the labels outside its validation part (scattered blocks, dealt at random, left a fold almost none)."""
    folds = block_fold_assignment([(0, r, c) for r in range(4) for c in range(4)], 4).reshape(4, 4)
    assert {tuple(sorted(np.unique(folds[r : r + 2, c : c + 2]))) for r in (0, 2) for c in (0, 2)} == {(0,), (1,),
                                                                                                        (2,), (3,)}
    image, mask = np.zeros((128, 128), np.uint8), np.ones((128, 128), np.uint8)
    for k in (2, 4):
        for i in range(k):
            train, _, _ = region_split([image], [mask], [None], ["im"], grid=(4, 4), val_fraction=0.0, seed=0,
                                       gap=16, ignore=255, fold=(i, k))
            labelled = float((train["masks"][0] == 1).mean())
            assert labelled >= (1 - 1 / k) - 16 * 128 * 2 / 128**2 - 1e-9


def test_the_plans_region_grid_and_image_count_are_the_folds_default():
    assert tuple(DataConfig(source="sample").split_grid) == (plan.REGION_GRID, plan.REGION_GRID)
    assert FEW_IMAGES == plan.FILE_SPLIT_IMAGES
    assert fold_mode(1, 2) == fold_mode(FEW_IMAGES - 1, 2) == "regions"  # the plan splits these by regions
    assert fold_mode(FEW_IMAGES, 5) == "files" and fold_mode(8, 9) == "regions"


def test_train_folds_without_a_config_plans_once_then_trains_region_folds_of_the_plans_grid(tmp_path, monkeypatch,
                                                                                            capsys):
    import functools

    from .test_plan import fixed_speed

    monkeypatch.setattr(plan, "make_plan", functools.partial(plan.make_plan, measure=fixed_speed()))  # no timing
    images, masks = _instance_image(tmp_path / "data")
    out = tmp_path / "cv"
    command = ["train", "--images", str(images), "--masks", str(masks), "--folds", "2", "--minutes", "0.5",
               "--out", str(out), "--set", "train.epochs=1", "--set", "model.base_channels=4",
               "--set", "data.patches_per_epoch=4", "--set", "train.batch_size=2", "--set", "train.plot_samples=0"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    planned = yaml.safe_load((out / "plan.yaml").read_text())
    assert planned["data"]["split"] == "regions" and planned["data"]["mask_mode"] == "instances"
    blocks = []
    for i in range(2):
        split = json.loads((out / f"fold{i}" / "split.json").read_text())
        assert split["grid"] == [plan.REGION_GRID, plan.REGION_GRID] and split["fold"] == i
        blocks += [tuple(r["block"]) for r in split["val"]["regions"]]
    assert sorted(blocks) == [(r, c) for r in range(4) for c in range(4)]
    cv = json.loads((out / "cv.json").read_text())
    assert set(cv["summary"]) == {"miou", *KEYS} and "2 region folds of 4x4 blocks" in printed

    # a rerun resumes the folds with the saved plan: no new plan (whose step timings could choose another model)
    def no_plan(*args, **kwargs):
        raise AssertionError("the rerun planned again")

    monkeypatch.setattr(plan, "make_plan", no_plan)
    shutil.rmtree(out / "fold1")  # as if interrupted before the second fold
    (out / "cv.json").unlink()
    assert main(command) == 0
    assert (out / "fold1" / "best.pt").is_file() and (out / "cv.json").is_file()
    assert "resuming the folds with the plan in" in capsys.readouterr().err
    minutes = command.index("--minutes") + 1
    assert main([*command[:minutes], "1", *command[minutes + 1:]]) == 2
    assert "planned for --minutes 0.5, not 1" in capsys.readouterr().err
    image = next(images.iterdir())
    tifffile.imwrite(image, 255 - tifffile.imread(image))  # other data in the same folders
    assert main(command) == 2
    assert "its folds were planned from other data" in capsys.readouterr().err


def test_a_true_object_cut_into_pieces_by_a_block_edge_counts_each_piece_once():
    from unetseg.data.regions import cut_pieces

    ids = np.zeros((12, 12), np.uint16)
    ids[2:10, 0:3], ids[2:4, 0:8], ids[8:10, 0:8] = 7, 7, 7  # a "C": its arms reach a block cut at column 5
    ids[5:7, 6:9] = 3  # a convex object
    ids[0, 10], ids[1, 11] = 9, 9  # diagonal neighbours: one piece
    block = ids[:, 5:]
    pieces = cut_pieces(block)
    assert len(np.unique(pieces[pieces > 0])) == 4  # two arms of 7, object 3, object 9
    assert np.array_equal(pieces > 0, block > 0)
    for old in (3, 9):
        assert len(np.unique(pieces[block == old])) == 1
    assert np.array_equal(np.unique(cut_pieces(ids)), [0, 1, 2, 3])  # whole, nothing is cut
    uncut, fair = ObjectScores(), ObjectScores()  # a prediction that finds exactly the pieces in the block
    uncut.update(block, pieces)
    fair.update(pieces, pieces)
    assert uncut.compute()["ap"][0.5] < 1 and fair.compute()["ap"][0.5] == 1


def test_each_object_a_block_edge_cuts_is_scored_once_in_the_block_that_holds_most_of_it():
    from unetseg.data.regions import cut_pieces, minor_pieces

    ids = np.zeros((48, 48), np.uint16)
    ids[4:10, 13:22] = 1  # 3 of its 9 columns left of the cut at column 16: scored right of it only
    ids[34:40, 10:22] = 2  # 6 and 6 columns: both halves hold half of it, each is scored
    ids[13:19, 29:35] = 3  # at the crossing of the cuts at row 16 and column 32: four quarters, none scored
    ids[36:44, 34:44] = 4  # whole inside one block
    ids[0:3, 40:48] = 5  # at the image's edge: whole
    image = np.zeros(ids.shape, np.uint8)
    mask = (ids > 0).astype(np.uint8)
    scored: dict[int, int] = {}
    for fold in range(4):
        _, val, _ = region_split([image], [mask], [None], ["im"], grid=(3, 3), val_fraction=0.0, seed=0, gap=0,
                                 ignore=255, instances=[ids], fold=(fold, 4))
        assert len(val["unscored"]) == len(val["instances"])
        for pieces, off, name in zip(val["instances"], val["unscored"], val["names"], strict=True):
            row, col = int(name[-3]), int(name[-1])  # "im@r{row}c{col}"
            crop = ids[16 * row : 16 * row + 16, 16 * col : 16 * col + 16]
            assert np.array_equal(pieces, cut_pieces(crop)) and off.shape == crop.shape and not off[crop == 0].any()
            for piece in np.unique(pieces[pieces > 0]):
                where = pieces == piece
                assert off[where].all() or not off[where].any()  # a piece is scored or not, whole
                if not off[where].any():
                    owner = int(crop[where][0])
                    scored[owner] = scored.get(owner, 0) + 1
    assert scored == {1: 1, 2: 2, 4: 1, 5: 1}
    areas = np.unique(ids, return_counts=True)
    assert minor_pieces(ids[0:16, 0:16], *areas)[4:10, 13:16].all()
    assert not minor_pieces(ids[0:16, 16:32], *areas)[4:10, 16:22].any()
