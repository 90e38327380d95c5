import pytest
import torch

import unetseg


def test_registry_lists_and_builds_every_family():
    names = unetseg.list_models()
    assert {"unet", "autoencoder", "smp-unet", "smp-fpn"} <= set(names)
    assert isinstance(unetseg.build_model("unet", in_channels=1, num_classes=2, base_channels=4), unetseg.UNet)
    assert isinstance(unetseg.build_model("autoencoder", base_channels=4), unetseg.ConvAutoencoder)


def test_registry_errors_name_the_culprit():
    with pytest.raises(ValueError, match="unknown model 'vnet'; choose from .*unet"):
        unetseg.build_model("vnet")
    with pytest.raises(ValueError, match="model 'unet': .*'channels'"):
        unetseg.build_model("unet", channels=3)


@pytest.mark.parametrize(
    "name, kwargs, size",
    [
        ("unet", dict(in_channels=1, num_classes=2, base_channels=4, depth=2, padding="valid"), 60),
        ("unet", dict(in_channels=3, num_classes=3, base_channels=4, depth=3, padding="same", up_mode="bilinear"), 32),
        ("autoencoder", dict(in_channels=1, num_classes=2, base_channels=4, depth=2), 32),
        ("smp-unet", dict(encoder_name="resnet18", in_channels=3, num_classes=2), 64),
    ],
)
def test_every_model_traces_with_torch_jit(name, kwargs, size):
    model = unetseg.build_model(name, **kwargs).eval()
    n = model.valid_input_size(size)
    x = torch.randn(1, kwargs["in_channels"], n, n)
    with torch.no_grad():
        traced = torch.jit.trace(model, x)
        torch.testing.assert_close(traced(x), model(x))
