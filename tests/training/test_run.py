import csv
import math

import pytest
import torch

import unetseg
from unetseg.config import load_config
from unetseg.errors import UnetsegError
from unetseg.models.checkpoint import read_checkpoint
from unetseg.training import train

from .conftest import make_config

# scheduler "none" keeps the LR independent of the horizon, so a 1-epoch run resumed to 2 epochs
# must match a 2-epoch run; the (never reached) budget lets the mid-epoch test fake a budget stop.
RESUMABLE = {"train": {"scheduler": "none", "optimizer": "adam", "time_budget_minutes": 60}}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    return train(make_config(), tmp_path_factory.mktemp("default") / "run", progress=False)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    return train(make_config(**RESUMABLE), tmp_path_factory.mktemp("straight") / "run", progress=False)


def test_run_folder_has_everything(default_run):
    result = default_run
    run = result.run_dir
    for name in ("config.yaml", "split.json", "metrics.csv", "best.pt", "last.pt", "curves.png", "samples.png",
                 "summary.json"):
        assert (run / name).is_file(), name
    assert result.epochs == 2 and result.stopped_by == "epochs" and 0 <= result.best_miou <= 1

    resolved = load_config(run / "config.yaml")
    assert resolved.model.kwargs["in_channels"] == 1 and resolved.model.kwargs["num_classes"] == 2

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"epoch", "step", "time_s", "train_loss", "val_miou", "iou_background", "iou_nucleus", "lr",
            "images_per_s"} <= set(rows[0])
    assert max(float(r["val_miou"]) for r in rows) == pytest.approx(result.best_miou, abs=1e-5)

    # best.pt is a ready model: weights + normalisation + classes
    model = unetseg.load_model(run / "best.pt")
    assert model.class_names == ["background", "nucleus"] and len(model.class_colors) == 2
    assert model.normalization.mean != (0.0,)
    # last.pt loads with weights_only=True and carries the resume state
    last = torch.load(run / "last.pt", weights_only=True)
    training = last["training"]
    assert training["state"]["epoch"] == 2 and training["state"]["global_step"] == result.global_step
    assert set(training["rng"]) >= {"torch", "numpy", "python"}


def test_evaluate_command_reproduces_validation_score(default_run, capsys):
    from unetseg.cli import main

    result = default_run
    config_path = result.run_dir / "config.yaml"
    assert main(["evaluate", "--checkpoint", str(result.best_checkpoint), "--config", str(config_path),
                 "--tile-size", "128"]) == 0
    out = capsys.readouterr().out
    assert f"mIoU {result.best_miou:.4f}" in out and "nucleus" in out


def test_resume_continues_exactly(tmp_path, straight_run):
    straight = straight_run
    train(make_config(train={**RESUMABLE["train"], "epochs": 1}), tmp_path / "resumed", progress=False)
    resumed = train(make_config(**RESUMABLE), resume=tmp_path / "resumed", progress=False)

    a = read_checkpoint(straight.last_checkpoint)
    b = read_checkpoint(resumed.last_checkpoint)
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert resumed.best_miou == straight.best_miou and resumed.global_step == straight.global_step
    rows_a = list(csv.DictReader(open(straight.run_dir / "metrics.csv")))
    rows_b = list(csv.DictReader(open(tmp_path / "resumed" / "metrics.csv")))
    for key in ("epoch", "step", "train_loss", "val_miou", "lr"):
        assert [r[key] for r in rows_a] == [r[key] for r in rows_b], key


def test_resume_mid_epoch_after_a_budget_stop(tmp_path, straight_run, monkeypatch):
    from unetseg.training import trainer as run_module

    extra = RESUMABLE
    straight = straight_run
    original = run_module.Trainer.budget_spent
    monkeypatch.setattr(run_module.Trainer, "budget_spent", lambda self: self.state.global_step >= 6)
    stopped = train(make_config(**extra), tmp_path / "resumed", progress=False)
    assert stopped.stopped_by == "time_budget" and stopped.global_step == 6 and stopped.epochs == 1
    monkeypatch.setattr(run_module.Trainer, "budget_spent", original)
    resumed = train(make_config(**extra), resume=tmp_path / "resumed", progress=False)
    assert resumed.stopped_by == "epochs" and resumed.global_step == straight.global_step
    a = read_checkpoint(straight.last_checkpoint)["state_dict"]
    b = read_checkpoint(resumed.last_checkpoint)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_errors(tmp_path, tiny_config):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnetsegError, match="no last.pt"):
        train(tiny_config(), resume=tmp_path / "empty", progress=False)
    train(tiny_config(train={"epochs": 1}), tmp_path / "run", progress=False)
    with pytest.raises(UnetsegError, match=r"train\.lr"):
        train(tiny_config(train={"lr": 0.1}), resume=tmp_path / "run", progress=False)
    with pytest.raises(UnetsegError, match="already holds a run"):
        train(tiny_config(), tmp_path / "run", progress=False)


def test_nan_loss_stops_with_one_line_and_keeps_last_good_checkpoint(tmp_path, tiny_config, monkeypatch):
    from unetseg import losses

    calls = {"n": 0}
    original = losses.SegmentationLoss.forward

    def poisoned(self, logits, target, weight=None):
        calls["n"] += 1
        value = original(self, logits, target, weight)
        return value * float("nan") if calls["n"] == 6 else value

    monkeypatch.setattr(losses.SegmentationLoss, "forward", poisoned)
    with pytest.raises(UnetsegError) as info:
        train(tiny_config(), tmp_path / "run", progress=False)
    msg = str(info.value)
    assert "epoch 2, step 6" in msg and "last.pt" in msg and "\n" not in msg
    last = read_checkpoint(tmp_path / "run" / "last.pt")
    assert last["training"]["state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_bf16_autocast_trains_on_cpu(tmp_path, tiny_config):
    result = train(tiny_config(train={"amp": "bf16", "epochs": 1, "channels_last": True}), tmp_path / "r",
                   progress=False)
    assert result.precision == "bf16" and math.isfinite(result.best_miou)


def test_fp16_on_cpu_is_a_clear_error(tmp_path, tiny_config):
    with pytest.raises(UnetsegError, match="fp16 needs a CUDA"):
        train(tiny_config(train={"amp": "fp16", "device": "cpu"}), tmp_path / "r", progress=False)


def test_same_padding_run_records_the_measured_halo_in_best_pt(tmp_path, tiny_config):
    result = train(tiny_config(model={"padding": "same", "dropout": 0.0}, train={"epochs": 1}), tmp_path / "r",
                   progress=False)
    stored = read_checkpoint(result.best_checkpoint)["meta"]["halo"]
    model = unetseg.load_model(result.best_checkpoint)
    halo = model.meta.halo
    assert stored["pixels"] == halo.pixels and halo.pixels % model.stride == 0
    assert 0 <= halo.pixels <= model.field_radius + model.stride and 0 < halo.agreement <= 1


def test_training_runs_in_channels_last_by_default(tiny_config):
    import torch

    from unetseg.training.distributed import DistContext
    from unetseg.training.setup import build_components

    ctx = DistContext(0, 1, 0, torch.device("cpu"))
    default = build_components(tiny_config(), ctx, lambda step, steps: 0.0)
    assert default.precision.channels_last
    weight = next(p for p in default.bare.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    plain = build_components(tiny_config(train={"channels_last": False}), ctx, lambda step, steps: 0.0)
    assert not plain.precision.channels_last
