import pytest
import torch

import unetseg
from unetseg.errors import UnetsegError


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("unet", dict(in_channels=1, num_classes=3, base_channels=4, depth=2, padding="valid", norm="group")),
        ("autoencoder", dict(in_channels=3, num_classes=2, base_channels=4, depth=2, dropout=0.2)),
        ("smp-unet", dict(encoder_name="resnet18", in_channels=3, num_classes=2)),
    ],
)
def test_save_load_round_trip_gives_identical_outputs(tmp_path, name, kwargs):
    torch.manual_seed(0)
    model = unetseg.build_model(name, **kwargs)
    with torch.no_grad():  # non-trivial BN statistics
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    model.eval()
    norm = unetseg.Normalization(mean=(0.1,), std=(0.3,))
    path = unetseg.save_checkpoint(model, tmp_path / "m.pt", normalization=norm,
                                   class_names=["bg", "fg", "x"], class_colors=[[0, 0, 0], [255, 0, 0], [0, 255, 0]])
    loaded = unetseg.load_model(path)
    assert not loaded.training
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.normalization == norm and loaded.class_names == ["bg", "fg", "x"]
    n = model.valid_input_size(64)
    x = torch.randn(2, kwargs["in_channels"], n, n)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_checkpoint_loads_with_weights_only(tmp_path):
    model = unetseg.UNet(1, 2, base_channels=2, depth=1)
    path = unetseg.save_checkpoint(model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["model"] == {"name": "unet", "kwargs": model.config["kwargs"]}


def test_bad_checkpoint_files_give_one_line_errors(tmp_path):
    with pytest.raises(UnetsegError, match="checkpoint not found: .*missing.pt"):
        unetseg.load_model(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UnetsegError, match="junk.pt cannot be read"):
        unetseg.load_model(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(UnetsegError, match="foreign.pt is not a unetseg checkpoint"):
        unetseg.load_model(foreign)


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = unetseg.UNet(1, 2, base_channels=2, depth=1)
    path = unetseg.save_checkpoint(model, tmp_path / "m.pt", epoch=1)

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(OSError):
        unetseg.save_checkpoint(model, path, epoch=2)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["meta"]["training"]["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
