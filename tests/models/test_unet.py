import pytest
import torch

import unetseg
from unetseg.models.sizes import SizeRule


def test_paper_network_maps_572_to_388_with_31m_parameters():
    model = unetseg.UNet(in_channels=1, num_classes=2, padding="valid", norm="none").eval()
    assert model.output_size(572) == 388
    assert model.margin == 92
    n_params = sum(p.numel() for p in model.parameters())
    assert 30.9e6 < n_params < 31.1e6  # the paper's ~31.0M
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 572, 572))
    assert out.shape == (1, 2, 388, 388)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("up_mode", ["transpose", "bilinear"])
def test_valid_output_sizes_match_the_helpers(depth, up_mode):
    model = unetseg.UNet(1, 3, base_channels=2, depth=depth, padding="valid", up_mode=up_mode).eval()
    accepted = [n for n in range(1, 400) if model.size_rule.is_valid(n)]
    assert accepted, "some sizes must be accepted"
    for n in accepted[:6]:
        with torch.no_grad():
            out = model(torch.zeros(1, 1, n, n + 2 * model.stride))
        assert out.shape[-2:] == (model.output_size(n), model.output_size(n + 2 * model.stride))
        assert model.output_size(n) == n - 2 * model.margin


def test_valid_sizes_keep_every_pooling_even():
    rule = SizeRule(depth=4, padding="valid")
    for n in range(100, 700):
        if rule.is_valid(n):
            size = n
            for _ in range(4):
                size -= 4
                assert size % 2 == 0
                size //= 2


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_same_padding_keeps_size(norm):
    model = unetseg.UNet(3, 4, base_channels=4, depth=3, padding="same", norm=norm).eval()
    assert model.margin == 0
    for h, w in [(8, 8), (16, 40), (64, 24)]:
        with torch.no_grad():
            assert model(torch.zeros(2, 3, h, w)).shape == (2, 4, h, w)
        assert model.output_size(h) == h


def test_invalid_sizes_give_clear_error_with_nearest_sizes():
    valid = unetseg.UNet(1, 2, base_channels=2, padding="valid")
    assert valid.valid_input_size(500) == 508
    with pytest.raises(ValueError, match=r"input height 500 .*nearest valid sizes: 492 or 508"):
        valid(torch.zeros(1, 1, 500, 508))
    with pytest.raises(ValueError, match=r"input width 60 .*nearest valid sizes: 188"):
        valid(torch.zeros(1, 1, 188, 60))
    same = unetseg.UNet(1, 2, base_channels=2, depth=3, padding="same")
    assert same.valid_input_size(21) == 24
    with pytest.raises(ValueError, match=r"input width 20 .*divisible by 8.*16 or 24"):
        same(torch.zeros(1, 1, 16, 20))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 1, H, W\)"):
        same(torch.zeros(1, 3, 16, 16))


def test_bad_constructor_arguments_name_the_value():
    with pytest.raises(ValueError, match="padding='full'"):
        unetseg.UNet(1, 2, padding="full")
    with pytest.raises(ValueError, match="up_mode='nearest'"):
        unetseg.UNet(1, 2, up_mode="nearest")
    with pytest.raises(ValueError, match="norm='layer'"):
        unetseg.UNet(1, 2, norm="layer")
