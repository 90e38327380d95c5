"""train --init: start from a checkpoint (same or other classes), keep its architecture and normalisation, hold
the encoder still for the first epochs, record the parent."""
from __future__ import annotations

import json

import pytest
import torch

import unetseg
from unetseg.cli import main
from unetseg.data.classes import ClassTable
from unetseg.data.normalization import Normalization
from unetseg.errors import UnetsegError
from unetseg.models.checkpoint import read_checkpoint
from unetseg.training import train
from unetseg.training.finetune import choose_normalization, head_keys, initial_weights

from .conftest import make_config

SAME_ARCH = {"model": {"name": "unet", "base_channels": 4, "depth": 2, "padding": "same"}}


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    run = train(make_config(**SAME_ARCH, train={"epochs": 1}), tmp_path_factory.mktemp("parent") / "run",
                progress=False)
    return run.best_checkpoint


def test_same_classes_start_from_the_checkpoint_and_the_run_records_it(parent, tmp_path):
    # the config names no architecture: the checkpoint's is used
    config = make_config(train={"epochs": 1, "init": str(parent), "freeze_encoder_epochs": 1})
    config.model = type(config.model).model_validate({"name": "unet"})
    result = train(config, tmp_path / "ft", progress=False)
    before, after = unetseg.load_model(parent), unetseg.load_model(result.last_checkpoint)
    assert after.config["kwargs"]["padding"] == "same" and after.config["kwargs"]["base_channels"] == 4
    # one frozen epoch: every encoder parameter is the parent's, the decoder moved
    for (name, p), q in zip(before.named_parameters(), after.parameters(), strict=True):
        encoder = name.startswith(("down.", "bottleneck."))
        assert torch.equal(p, q) == encoder, name
    assert after.meta.normalization == before.meta.normalization  # same data: the checkpoint's statistics
    assert read_checkpoint(result.last_checkpoint)["meta"]["training"]["parent"] == str(parent)
    assert json.loads((result.run_dir / "summary.json").read_text())["parent"] == str(parent)


def test_other_classes_rebuild_the_head_keeping_rows_of_matching_names(parent):
    old = unetseg.load_model(parent)  # background, nucleus
    new = unetseg.UNet(1, 3, base_channels=4, depth=2, padding="same")
    fresh_head = new.head.weight.detach().clone()
    classes = ClassTable(("background", "border", "nucleus"), ((0, 0, 0), (255, 0, 0), (0, 255, 0)))
    assert initial_weights(new, old, classes) == ["border"]
    assert head_keys(new) == ["head.weight", "head.bias"]
    assert torch.equal(new.head.weight[0], old.head.weight[0]) and torch.equal(new.head.weight[2], old.head.weight[1])
    assert torch.equal(new.head.weight[1], fresh_head[1])
    assert torch.equal(new.head.bias[2], old.head.bias[1])
    old_state = old.state_dict()
    assert all(torch.equal(v, old_state[k]) for k, v in new.state_dict().items() if not k.startswith("head."))


def test_fine_tuning_on_other_classes_trains(parent, tmp_path):
    config = make_config(**SAME_ARCH, data={"sample_options": {"touching_border": True}},
                         train={"epochs": 1, "init": str(parent)})
    result = train(config, tmp_path / "ft3", progress=False)
    model = unetseg.load_model(result.best_checkpoint)
    assert model.class_names == ["background", "nucleus", "border"] and model.num_classes == 3


def test_conflicts_are_one_line(parent, tmp_path, capsys):
    with pytest.raises(UnetsegError, match=r"model.base_channels=8 but --init .* was trained with 4"):
        train(make_config(model={"base_channels": 8}, train={"init": str(parent)}), tmp_path / "x", progress=False)
    with pytest.raises(UnetsegError, match="freeze_encoder_epochs needs train.init"):
        make_config(train={"freeze_encoder_epochs": 2})
    five_bands = unetseg.UNet(5, 2, base_channels=4, depth=2, padding="same")
    with pytest.raises(UnetsegError, match=r"takes 1 band\(s\); the data has 5"):
        initial_weights(five_bands, unetseg.load_model(parent), ClassTable.default(2))
    code = main(["train", "configs/nuclei_unet.yaml", "--init", str(tmp_path / "missing.pt"), "--out",
                 str(tmp_path / "y")])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(err) == 1 and "missing.pt" in err[0]


def test_the_checkpoints_normalisation_is_kept_unless_the_data_differ_markedly():
    parent = Normalization((0.3, 0.5), (0.1, 0.2))
    close = Normalization((0.32, 0.45), (0.12, 0.18))
    assert choose_normalization(parent, close) == (parent, None)
    far = Normalization((0.3, 0.9), (0.1, 0.2))
    chosen, warning = choose_normalization(parent, far)
    assert chosen == far and "band 1" in warning and "differs markedly" in warning
    narrow = Normalization((0.3, 0.5), (0.1, 0.05))
    assert choose_normalization(parent, narrow)[0] == narrow
