"""The plan's target for instance masks: distance levels by default (the measured choice), a probe of both targets
from MIN_PROBE_MINUTES that keeps the higher validation AP@0.5 (a tie keeps the default), finished probes reused
on a rerun, ``--set data.instance_target`` skipping it, and ``unetseg train`` writing the winner into plan.yaml."""
from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from unetseg import UNet, save_checkpoint
from unetseg.cli import main
from unetseg.models.meta import ObjectTuning
from unetseg.training import probe
from unetseg.training.probe import probe_target, probes

from ..data.test_fingerprint import disks, folder

PLANNED = {"model": {"name": "unet", "base_channels": 4, "depth": 2, "padding": "same"},
           "data": {"source": "folder", "images": "im", "masks": "ma", "mask_mode": "instances",
                    "instance_target": "distance", "patch_size": 64},
           "train": {"epochs": 2, "time_budget_minutes": 20.0, "plot_samples": 4}}


def _fake_train(ap50: dict[str, float | None], calls: list):
    """A train_fn that writes a finished run whose best.pt holds the given tuned AP@0.5 for its target."""
    def run(config, out):
        target = config.data.instance_target
        calls.append(config)
        model = UNet(1, 3, base_channels=4, depth=2, padding="same")
        score = ap50[target]
        model.meta = replace(model.meta, object_tuning=None if score is None else ObjectTuning(ap50=score, images=1))
        out.mkdir(parents=True)
        best = save_checkpoint(model, out / "best.pt")
        (out / "summary.json").write_text("{}")
        return SimpleNamespace(best_checkpoint=best)
    return run


@pytest.mark.parametrize(("scores", "chosen"), [({"distance": 0.61, "three_class": 0.74}, "three_class"),
                                                ({"distance": 0.70, "three_class": 0.70}, "distance"),
                                                ({"distance": None, "three_class": 0.5}, "three_class"),
                                                ({"distance": None, "three_class": None}, "distance")])
def test_the_probe_keeps_the_higher_validation_ap(tmp_path, scores, chosen):
    calls: list = []
    before = json.dumps(PLANNED)
    found = probe_target(PLANNED, 20.0, tmp_path, train_fn=_fake_train(scores, calls))
    assert found.target == chosen and found.scores == scores
    assert json.dumps(PLANNED) == before  # the plan's mapping is left alone
    assert [c.data.instance_target for c in calls] == ["distance", "three_class"]
    assert all(c.train.time_budget_minutes == pytest.approx(probe.PROBE_SHARE * 20.0) and c.train.plot_samples == 0
               for c in calls)
    reason = found.reason()
    assert reason.startswith(f"{chosen}:")
    for target, score in scores.items():
        assert f"{target} {'n/a' if score is None else f'{score:.3f}'}" in reason


def test_a_rerun_reuses_finished_probes_and_restarts_interrupted_ones(tmp_path):
    calls: list = []
    scores = {"distance": 0.8, "three_class": 0.6}
    probe_target(PLANNED, 20.0, tmp_path, train_fn=_fake_train(scores, calls))
    (tmp_path / "three_class" / "summary.json").unlink()  # as if the probe had been interrupted
    again = probe_target(PLANNED, 20.0, tmp_path, train_fn=_fake_train(scores, calls))
    assert again.target == "distance" and [c.data.instance_target for c in calls[2:]] == ["three_class"]


def test_which_plans_probe():
    assert probes(PLANNED, probe.MIN_PROBE_MINUTES)
    assert not probes(PLANNED, probe.MIN_PROBE_MINUTES - 1)  # too short: the default stands
    several = {**PLANNED, "data": {**PLANNED["data"], "instance_classes": [1, 2]}}
    semantic = {**PLANNED, "data": {**PLANNED["data"], "mask_mode": "index"}}
    volume = {**PLANNED, "data": {**PLANNED["data"], "patch_size": [8, 64, 64]}}
    assert not any(probes(config, 60.0) for config in (several, semantic, volume))


def _instances(root):
    rng = np.random.default_rng(0)
    centres = [(12 + 20 * (k // 5), 12 + 20 * (k % 5)) for k in range(25)]
    ids = [disks((104, 104), [(y + int(rng.integers(-2, 3)), x) for y, x in centres], 7) for _ in range(2)]
    images = [(np.where(i > 0, 190, 50) + rng.integers(0, 40, i.shape)).astype(np.uint8) for i in ids]
    return folder(root, images, ids, ".tif")


def test_train_without_a_config_probes_the_targets_and_plans_the_winner(tmp_path, monkeypatch, capsys):
    images, masks = _instances(tmp_path / "data")
    monkeypatch.setattr(probe, "MIN_PROBE_MINUTES", 0.1)
    out = tmp_path / "run"
    assert main(["train", "--images", str(images), "--masks", str(masks), "--minutes", "0.2", "--out", str(out),
                 "--set", "train.plot_samples=0", "--set", "model.base_channels=4"]) == 0
    plan = (out / "plan.yaml").read_text()
    chosen = yaml.safe_load(plan)["data"]["instance_target"]
    reason = next(line for line in plan.splitlines() if "probe on the plan's own split" in line)
    assert reason.split("# ")[1].startswith(f"{chosen}:") and "three_class" in reason and "distance" in reason
    assert all((out / "probe" / t / "best.pt").is_file() for t in probe.TARGETS)
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["instance_target"] == chosen
    assert "probing the distance target" in capsys.readouterr().err
    fixed = tmp_path / "fixed"
    assert main(["train", "--images", str(images), "--masks", str(masks), "--minutes", "0.05", "--out", str(fixed),
                 "--set", "train.plot_samples=0", "--set", "data.instance_target=three_class"]) == 0
    assert not (fixed / "probe").exists()
    assert yaml.safe_load((fixed / "config.yaml").read_text())["data"]["instance_target"] == "three_class"
