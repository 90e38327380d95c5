from pathlib import Path

import pytest
import yaml

from unetseg.config import RunConfig, apply_overrides, config_to_yaml, load_config
from unetseg.errors import UnetsegError

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml")) + [REPO / "unetseg" / "demo.yaml"]  # the demo's ships in the package
EXPECTED = {"nuclei_unet", "nuclei_autoencoder", "nuclei_smp_resnet34", "brain_unet", "brain_autoencoder",
            "brain_smp_resnet34", "fashion_unet", "fashion_autoencoder", "demo", "folder_template"}


def test_all_expected_configs_exist():
    assert EXPECTED <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_validates_and_round_trips(path, tmp_path):
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)
    again = tmp_path / "resolved.yaml"
    again.write_text(config_to_yaml(cfg))
    assert load_config(again) == cfg


def write(tmp_path, data, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


BASE = {"model": {"name": "unet", "base_channels": 4, "depth": 2}, "data": {"source": "sample", "sample": "nuclei"}}


def test_overrides_parse_yaml_scalars(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["train.epochs=3", "train.lr=1e-2", "train.amp=off",
                                              "model.padding=same", "train.grad_clip=null", "loss.dice=0.5"])
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.01 and cfg.train.amp == "off"
    assert cfg.model.kwargs["padding"] == "same" and cfg.train.grad_clip is None and cfg.loss.dice == 0.5


def one_line_error(tmp_path, data, overrides=()):
    with pytest.raises(UnetsegError) as info:
        load_config(write(tmp_path, data), list(overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_key_names_the_dotted_key(tmp_path):
    msg = one_line_error(tmp_path, BASE, ["train.optimzer=adam"])
    assert "'train.optimzer'" in msg and "unknown key" in msg and "'adam'" in msg


def test_bad_value_names_key_and_value(tmp_path):
    msg = one_line_error(tmp_path, BASE, ["train.optimizer=rmsprop"])
    assert "'train.optimizer'" in msg and "'rmsprop'" in msg
    msg = one_line_error(tmp_path, BASE, ["train.batch_size=0"])
    assert "'train.batch_size'" in msg and "0" in msg
    msg = one_line_error(tmp_path, BASE, ["data.augment.flipz=true"])
    assert "data.augment.flipz" in msg


def test_unknown_model_and_model_kwarg(tmp_path):
    assert "'model.name'" in one_line_error(tmp_path, BASE, ["model.name=unett"])
    msg = one_line_error(tmp_path, BASE, ["model.base_chanels=8"])
    assert "base_chanels" in msg and "model" in msg


def test_needs_a_stop(tmp_path):
    msg = one_line_error(tmp_path, BASE, ["train.epochs=null"])
    assert "time_budget_minutes" in msg


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(UnetsegError, match="not found: .*missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(UnetsegError, match="bad.yaml is not valid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(UnetsegError, match="list.yaml must hold a mapping"):
        load_config(lst)


def test_malformed_overrides():
    with pytest.raises(UnetsegError, match="KEY.SUB=VALUE"):
        apply_overrides({}, ["train.epochs"])
    with pytest.raises(UnetsegError, match="is a value, not a section"):
        apply_overrides({"train": {"epochs": 3}}, ["train.epochs.x=1"])
