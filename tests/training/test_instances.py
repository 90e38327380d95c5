"""Training on instance masks: the checkpoint records how its classes code objects, and evaluate scores
objects next to pixels."""
import numpy as np

import unetseg
from unetseg.cli import main
from unetseg.training import train

from .conftest import make_config


def test_instance_training_records_the_layout_and_evaluate_scores_objects(tmp_path, capsys):
    cfg = make_config(model={"padding": "same", "dropout": 0.0},
                      data={"mask_mode": "instances", "boundary_width": 1, "patch_size": 64}, train={"epochs": 1})
    result = train(cfg, tmp_path / "run", progress=False)
    model = unetseg.load_model(result.best_checkpoint)
    assert model.class_table.names == ("background", "nucleus", "boundary")
    record = model.meta.instances
    assert record.object_classes == (1,) and record.boundary_class == 2 and record.boundary_width == 1
    config = tmp_path / "c.yaml"
    config.write_text("model: {name: unet, base_channels: 4, depth: 2, padding: same}\n"
                      "data: {source: sample, sample: nuclei, mask_mode: instances, boundary_width: 1}\n")
    assert main(["evaluate", "--checkpoint", str(result.best_checkpoint), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("objects:"))
    assert "AP@0.5" in line and "AP@0.75" in line and "PQ" in line and "count error" in line
    assert np.isfinite(float(line.split("AP@0.5 ")[1].split()[0]))
