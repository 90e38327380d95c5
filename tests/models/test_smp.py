import pytest
import torch

import unetseg
from unetseg.errors import UnetsegError


def test_smp_unet_behind_the_same_interface():
    model = unetseg.build_model("smp-unet", encoder_name="resnet18", in_channels=3, num_classes=4).eval()
    assert model.padding == "same" and model.margin == 0 and model.stride == 32
    assert model.valid_input_size(100) == 96
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 96)).shape == (1, 4, 64, 96)
    with pytest.raises(ValueError, match="input height 50 .*divisible by 32"):
        model(torch.zeros(1, 3, 50, 64))


def test_encoder_weights_come_from_a_local_file_only(tmp_path):
    donor = unetseg.build_model("smp-unet", encoder_name="resnet18", in_channels=3, num_classes=2)
    path = tmp_path / "resnet18_encoder.pt"
    torch.save(donor.net.encoder.state_dict(), path)
    model = unetseg.build_model("smp-unet", encoder_name="resnet18", in_channels=3, num_classes=2,
                                encoder_weights=str(path))
    for key, value in donor.net.encoder.state_dict().items():
        assert torch.equal(value, model.net.encoder.state_dict()[key])
    with pytest.raises(UnetsegError, match="not found: imagenet"):
        unetseg.build_model("smp-unet", encoder_name="resnet18", encoder_weights="imagenet")
