"""Training on instance masks: the checkpoint records how its classes code objects, and evaluate scores
objects next to pixels."""
import csv

import numpy as np
import pytest

import unetseg
from unetseg.cli import main
from unetseg.training import train

from .conftest import make_config


def test_instance_training_records_the_layout_and_evaluate_scores_objects(tmp_path, capsys):
    cfg = make_config(model={"padding": "same", "dropout": 0.0},
                      data={"mask_mode": "instances", "boundary_width": 1, "patch_size": 64}, train={"epochs": 3})
    result = train(cfg, tmp_path / "run", progress=False)
    model = unetseg.load_model(result.best_checkpoint)
    # best.pt is the epoch with the highest validation AP@0.5 of its objects (seeds and minimum size tuned on
    # them), mIoU breaking ties
    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    assert len(rows) == 3 and all(row["val_ap50"] for row in rows)
    ranked = [(float(row["val_ap50"]), float(row["val_miou"])) for row in rows]
    best = rows[ranked.index(max(ranked))]
    assert model.meta.training.epoch == result.best_epoch == round(float(best["epoch"])), (rows, result)
    assert model.meta.training.val_miou == pytest.approx(max(ranked)[1], abs=1e-5)
    assert model.class_table.names == ("background", "nucleus", "boundary")
    record = model.meta.instances
    assert record.object_classes == (1,) and record.boundary_class == 2 and record.boundary_width == 1
    tuned = model.meta.object_tuning  # three-class targets: the minimum size is tuned, there is no seed level
    assert tuned is not None and tuned.seed_level is None and tuned.ap50 >= tuned.default_ap50
    config = tmp_path / "c.yaml"
    config.write_text("model: {name: unet, base_channels: 4, depth: 2, padding: same}\n"
                      "data: {source: sample, sample: nuclei, mask_mode: instances, boundary_width: 1}\n")
    assert main(["evaluate", "--checkpoint", str(result.best_checkpoint), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("objects:"))
    assert "AP@0.5" in line and "AP@0.75" in line and "PQ" in line and "count error" in line
    assert np.isfinite(float(line.split("AP@0.5 ")[1].split()[0]))


def test_a_distance_run_records_its_levels_and_tuned_post_processing_that_predict_uses(tmp_path, capsys):
    import tifffile

    from unetseg.data.samples import load_sample
    from unetseg.objects.separate import label_objects, object_rule

    cfg = make_config(model={"padding": "same", "dropout": 0.0},
                      data={"mask_mode": "instances", "instance_target": "distance", "distance_levels": 4,
                            "distance_bin": 3, "patch_size": 64}, train={"epochs": 1})
    result = train(cfg, tmp_path / "run", progress=False)
    model = unetseg.load_model(result.best_checkpoint)
    assert model.num_classes == 5 and model.class_table.names[1:3] == ("nucleus", "nucleus d2")
    record = model.meta.instances
    assert (record.target, record.levels, record.bin) == ("distance", 4, 3)
    tuned = model.meta.object_tuning
    assert tuned is not None and tuned.min_size >= 0 and tuned.images == 1
    assert (tuned.seed_level is None) != (tuned.seed_height is None)  # seeds by level or by dome height
    assert 1 <= (tuned.seed_level or tuned.seed_height) <= 4
    assert tuned.ap50 >= tuned.default_ap50  # the untuned setting is one of the candidates
    rule = object_rule(model)
    assert (rule.flood_levels, rule.seed_level or None, rule.seed_height or None, rule.min_size) == (
        4, tuned.seed_level, tuned.seed_height, tuned.min_size)
    # predict uses the tuned values unless told otherwise
    image = load_sample("nuclei", "val").images[0][:100, :90]
    tifffile.imwrite(tmp_path / "in.tif", image)
    args = ["predict", "--checkpoint", str(result.best_checkpoint), "--input", str(tmp_path / "in.tif"),
            "--format", "instances", "--tile-size", "64", "--amp", "off"]
    assert main([*args, "--output", str(tmp_path / "a")]) == 0
    labels = unetseg.predict_tiled(model, image, tile_size=64, amp=False)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a" / "in_instances.tif"),
                                  label_objects(labels, rule, 5)[0])
    other = 1 if tuned.seed_level != 1 else 2
    assert main([*args, "--output", str(tmp_path / "b"), "--seed-level", str(other), "--min-object-size", "0"]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b" / "in_instances.tif"),
                                  label_objects(labels, object_rule(model, seed_level=other, min_size=0), 5)[0])
    assert main([*args, "--output", str(tmp_path / "d"), "--seed-height", "2", "--min-object-size", "0"]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "d" / "in_instances.tif"),
                                  label_objects(labels, object_rule(model, seed_height=2, min_size=0), 5)[0])
    assert object_rule(model, seed_height=2).seed_height == 2
    assert main([*args, "--output", str(tmp_path / "c"), "--seed-level", "9"]) != 0
    assert "--seed-level 9: the model has distance levels 1..4" in capsys.readouterr().err
    assert main([*args, "--output", str(tmp_path / "c"), "--seed-height", "0"]) != 0
    assert "--seed-height 0: the model has distance levels 1..4" in capsys.readouterr().err
    assert main([*args, "--output", str(tmp_path / "c"), "--seed-height", "2", "--seed-level", "2"]) != 0
    assert "--seed-level 2 and --seed-height 2: give one" in capsys.readouterr().err
    # evaluate scores the objects of the tuned post-processing: the AP stored in the checkpoint
    config = tmp_path / "c.yaml"
    config.write_text("model: {name: unet, base_channels: 4, depth: 2, padding: same}\n"
                      "data: {source: sample, sample: nuclei, mask_mode: instances, instance_target: distance, "
                      "distance_levels: 4, distance_bin: 3}\n")
    assert main(["evaluate", "--checkpoint", str(result.best_checkpoint), "--config", str(config),
                 "--tile-size", "128"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("objects:"))
    assert float(line.split("AP@0.5 ")[1].split()[0]) == pytest.approx(tuned.ap50, abs=0.02)
