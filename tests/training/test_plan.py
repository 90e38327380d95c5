"""unetseg plan: a valid, commented config for every built-in dataset and for the edge cases, chosen by rules
that follow the data; train without a config runs the plan."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from unetseg.cli import main
from unetseg.config import validate_config
from unetseg.data.fingerprint import fingerprint_folder, fingerprint_sample
from unetseg.training.plan import MIN_STEPS, make_plan

from ..data.test_fingerprint import NODATA_TAG, disks, folder

LANDSAT = "unetseg/data/samples/landsat_nc"


def fixed_speed(seconds_by_base: dict[int, float] | None = None):
    """A stand-in for the step timing: seconds per step by base channels (no timing in tests)."""
    table = seconds_by_base or {32: 0.4, 16: 0.2, 8: 0.1}
    return lambda depth, base, patch, batch, bands, classes: table[base]


@pytest.mark.parametrize("sample", ["nuclei", "brain", "fashion-scenes"])
def test_samples_plan_a_valid_config(sample):
    plan = make_plan(fingerprint_sample(sample), 4.0, measure=fixed_speed())
    config = plan.run_config()
    assert config.data.sample == sample and config.train.time_budget_minutes == 4.0
    assert config.model.kwargs["padding"] == "same"
    # the YAML is the config, with a reason above the planned keys
    text = plan.to_yaml()
    assert yaml.safe_load(text) == plan.config
    assert text.count("\n  # ") >= 8 and "# unetseg plan:" in text


def test_the_budget_chooses_the_widest_network_that_takes_enough_steps():
    fp = fingerprint_sample("nuclei")
    slow = make_plan(fp, 1.0, measure=fixed_speed({32: 1.0, 16: 0.5, 8: 0.1}))
    fast = make_plan(fp, 30.0, measure=fixed_speed({32: 1.0, 16: 0.5, 8: 0.1}))
    assert slow.config["model"]["base_channels"] == 8 and fast.config["model"]["base_channels"] == 32
    assert 0.75 * 60 * 30 / 1.0 >= MIN_STEPS
    assert "measured 1.00 s per step" in fast.reasons["model.base_channels"]
    timed = []
    table = {32: 1.0, 16: 0.5, 8: 0.1}

    def measure(depth, base, *rest):
        timed.append(base)
        return table[base]

    make_plan(fp, 1.0, measure=measure)  # base 8's 0.1 s scaled by width already misses 1 min: nothing wider is timed
    assert timed == [8]
    timed.clear()
    table[16] = 0.45  # within 16's bound (0.2 s) but over 3 min's budget: timed, then passed over
    assert make_plan(fp, 3.0, measure=measure).config["model"]["base_channels"] == 8
    assert timed == [8, 16] and 0.2 * MIN_STEPS <= 0.75 * 180 < 0.45 * MIN_STEPS


def test_landsat_scene_plans_regions_values_and_keeps_context_inside_a_block():
    fp = fingerprint_folder(f"{LANDSAT}/images", f"{LANDSAT}/masks")
    plan = make_plan(fp, 4.0, measure=fixed_speed())
    data = plan.config["data"]
    assert data["split"] == "regions" and data["class_values"] == [1, 2, 3, 4, 5, 6, 7]
    assert data["augment"]["elastic"] is False and plan.config["model"]["depth"] == 3  # radius 44 <= block/2
    assert "nodata -99999" in plan.reasons["data.nodata"]
    validate_config(plan.config, "plan")


def test_edge_cases_plan_valid_configs(tmp_path, rng):
    cases = {
        "tiny": ([rng.integers(0, 255, (20, 24), dtype=np.uint8) for _ in range(6)],
                 [rng.integers(0, 2, (20, 24), dtype=np.uint8) for _ in range(6)], ".png", None),
        "uint16": ([rng.integers(0, 65535, (96, 90), dtype=np.uint16)], [rng.integers(0, 3, (96, 90), dtype=np.uint8)],
                   ".tif", None),
        "float7": ([np.where(rng.random((7, 70, 80)) > 0.9, -9999, rng.normal(0, 1, (7, 70, 80))).astype(np.float32)],
                   [rng.integers(1, 4, (70, 80)).astype(np.uint8)], ".tif", NODATA_TAG),
        "binary255": ([rng.integers(0, 255, (64, 64), dtype=np.uint8)],
                      [np.where(rng.random((64, 64)) > 0.8, 255, 0).astype(np.uint8)], ".png", None),
        "instances": ([rng.integers(0, 255, (96, 96), dtype=np.uint8)],
                      [disks((96, 96), [(10 + 18 * (k // 5), 10 + 18 * (k % 5)) for k in range(25)], 6)], ".tif", None),
    }
    for name, (images, masks, suffix, tags) in cases.items():
        fp = fingerprint_folder(*folder(tmp_path / name, images, masks, suffix, tags))
        plan = make_plan(fp, 2.0, measure=fixed_speed())
        config = plan.run_config()
        assert config.data.patch_size <= max(fp.smallest_side, 2 ** config.model.kwargs["depth"] * 4), name
        if name == "tiny":
            assert config.data.split == "files"
        if name == "binary255":
            assert config.data.class_values == [0, 255]
        if name == "instances":  # objects are 31 % of the pixels: CE alone, the reason quoting the Dice measurement
            assert config.data.mask_mode == "instances" and config.loss.dice == 0
            assert "objects hold 31% of the pixels" in plan.reasons["loss.dice"], plan.reasons["loss.dice"]
        if name == "float7":
            assert config.data.augment.gamma.enabled is False and config.data.nodata == "auto"


def test_plan_command_writes_a_config_and_train_runs_a_plan(tmp_path, rng, capsys):
    images = [rng.integers(0, 255, (64, 64), dtype=np.uint8) for _ in range(5)]
    masks = [(disks((64, 64), [(20, 20), (44, 40)], 8) > 0).astype(np.uint8) for _ in range(5)]
    root = folder(tmp_path / "data", images, masks)
    out = tmp_path / "plan.yaml"
    assert main(["plan", "--images", str(root[0]), "--masks", str(root[1]), "--minutes", "0.05", "--out", str(out)]) == 0
    assert validate_config(yaml.safe_load(out.read_text()), "plan").train.time_budget_minutes == 0.05
    run = tmp_path / "run"
    assert main(["train", "--images", str(root[0]), "--masks", str(root[1]), "--minutes", "0.05", "--out", str(run),
                 "--set", "train.plot_samples=0"]) == 0
    assert (run / "plan.yaml").is_file() and (run / "best.pt").is_file()
    fingerprint = json.loads((run / "fingerprint.json").read_text())
    assert fingerprint["coding"] == "index" and fingerprint["objects"] == 10
    assert json.loads((run / "summary.json").read_text())["stopped_by"] == "time_budget"
    capsys.readouterr()
    assert main(["plan", "--images", str(tmp_path / "none"), "--masks", str(root[1])]) == 2
    assert main(["train", "configs/nuclei_unet.yaml", "--sample", "nuclei"]) == 2
    assert main(["train"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 3 and "none" in err[0] and "not both" in err[1] and "give a YAML config" in err[2]


def test_a_scene_with_flips_and_rotations_only_is_not_trained_past_its_passes():
    """Landsat (one scene, no warping augmentation): crops of about a validation block, and a run capped at
    DIHEDRAL_PASSES passes over the labelled training pixels in at least CAPPED_STEPS steps; microscopy samples
    (warped views) run as long as the budget allows."""
    from unetseg.training.plan import CAPPED_STEPS, DIHEDRAL_PASSES, EPOCH_CAP

    fp = fingerprint_folder(f"{LANDSAT}/images", f"{LANDSAT}/masks")
    plan = make_plan(fp, 60.0, measure=fixed_speed())
    train, data = plan.config["train"], plan.config["data"]
    assert data["patch_size"] == 128  # 443 px / 4 blocks -> the smallest patch allowed
    steps = train["epochs"] * data["patches_per_epoch"] // train["batch_size"]
    labelled = 443 * 489 * (1 - fp.invalid_fraction) * 0.75
    passes = steps * train["batch_size"] * data["patch_size"] ** 2 / labelled
    assert steps >= CAPPED_STEPS * 0.9 and abs(passes - DIHEDRAL_PASSES) < 0.15 * DIHEDRAL_PASSES
    assert "passes over" in plan.reasons["train.epochs"]
    nuclei = make_plan(fingerprint_sample("nuclei"), 60.0, measure=fixed_speed())
    assert nuclei.config["train"]["epochs"] == EPOCH_CAP and "train.epochs" not in nuclei.reasons


def test_the_plan_states_the_budget_split_and_warns_when_validation_cannot_fit():
    import dataclasses

    fp = fingerprint_sample("nuclei")
    plan = make_plan(fp, 4.0, measure=fixed_speed(), started=0.0, clock=lambda: 30.0)  # 30 s spent before
    text = plan.to_yaml()
    assert "# budget 4 min: planning 30 s, training ~" in text and "<= 20 s halo" in text and "warning" not in text
    assert "about 10 validations" in plan.reasons["data.patches_per_epoch"]
    huge = dataclasses.replace(fp, shapes=[(40_000, 40_000)])  # validation would outlast the budget
    said = []
    plan = make_plan(huge, 4.0, measure=fixed_speed(), say=said.append)
    assert "# warning: one validation pass (~" in plan.to_yaml()
    assert "about 1 validations" in plan.reasons["data.patches_per_epoch"]
    assert said and all(line.startswith("timing a training step") for line in said)


def test_set_overrides_say_so_in_the_plan_file():
    """plan.yaml never shows a --set value under the reason the plan gave for its own choice."""
    plan = make_plan(fingerprint_sample("nuclei"), 4.0, measure=fixed_speed())
    model = plan.config["model"]
    planned, reason, depth_reason = model["base_channels"], plan.reasons["model.base_channels"], plan.reasons["model.depth"]
    other = 8 if planned != 8 else 16
    plan.override([f"model.base_channels={other}", "train.plot_samples=0", f"model.depth={model['depth']}"])
    text = plan.to_yaml()
    assert plan.config["model"]["base_channels"] == other
    assert f"  # set by --set model.base_channels={other}; the plan's choice was {planned} ({reason})\n" in text
    assert "  # set by --set train.plot_samples=0\n  plot_samples: 0\n" in text
    assert plan.reasons["model.depth"] == depth_reason  # a --set of the planned value keeps the plan's reason
