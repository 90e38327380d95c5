"""The 3D U-Net (Çiçek et al. 2016) and the 3D autoencoder: shapes per axis for valid and same padding, pooling and
kernels from the spacing (nnU-Net's rule), checkpoints that rebuild the 3D model with its spacing and orientation."""
import pytest
import torch

import unetseg
from unetseg.models.anisotropy import pooling_plan
from unetseg.models.sizes import SizeRule


def test_isotropic_valid_3d_unet_matches_the_paper_arithmetic():
    # Çiçek et al.: 3 poolings, valid 3x3x3 convs, 132^3 in -> 44^3 out
    model = unetseg.UNet(1, 3, base_channels=2, depth=3, padding="valid", spatial_dims=3)
    assert model.margin == 44 and model.output_size(132) == 44 and model.stride == 8
    with torch.inference_mode():
        assert model(torch.zeros(1, 1, 92, 100, 108)).shape == (1, 3, 4, 12, 20)


@pytest.mark.parametrize("cls", [unetseg.UNet, unetseg.ConvAutoencoder])
def test_anisotropic_pooling_sizes_per_axis(cls):
    pooling, kernels = pooling_plan((5.0, 1.0, 1.0), 3)
    assert pooling == [[1, 2, 2], [1, 2, 2], [2, 2, 2]] and kernels[:2] == [[1, 3, 3], [1, 3, 3]]
    model = cls(2, 4, base_channels=2, depth=3, padding="same", spatial_dims=3, pooling=pooling, kernels=kernels)
    assert [r.stride for r in model.size_rules] == [2, 8, 8]
    with torch.inference_mode():
        assert model(torch.zeros(2, 2, 6, 16, 24)).shape == (2, 4, 6, 16, 24)
    with pytest.raises(ValueError, match="input depth 5 .* divisible by 2"):
        model(torch.zeros(1, 2, 5, 16, 16))
    with pytest.raises(ValueError, match=r"\(N, 2, D, H, W\)"):
        model(torch.zeros(1, 2, 16, 16))


def test_valid_anisotropic_output_sizes_follow_the_per_axis_rules():
    pooling, kernels = pooling_plan((3.0, 1.0, 1.0), 2)
    model = unetseg.UNet(1, 2, base_channels=2, depth=2, padding="valid", spatial_dims=3, pooling=pooling,
                         kernels=kernels)
    sizes = [rule.nearest_valid(2 * rule.margin + 6)[1] for rule in model.size_rules]
    with torch.inference_mode():
        out = model(torch.zeros(1, 1, *sizes))
    assert tuple(out.shape[2:]) == tuple(r.output_size(n) for r, n in zip(model.size_rules, sizes, strict=True))
    assert model.size_rules[0].margin < model.size_rules[1].margin  # fewer 3-voxel kernels along z


def test_size_rule_defaults_are_the_2d_paper_rule():
    assert SizeRule(4, "valid").margin == 92 == SizeRule(4, "valid", 2, (2,) * 4, (3,) * 5).margin
    with pytest.raises(ValueError, match="one factor"):
        SizeRule(2, "same", pools=(2, 3))


def test_bad_3d_arguments_are_clear():
    with pytest.raises(ValueError, match="spatial_dims=4"):
        unetseg.UNet(spatial_dims=4)
    with pytest.raises(ValueError, match="pooling=.*expected 2 entries of 3"):
        unetseg.UNet(depth=2, spatial_dims=3, pooling=[[2, 2, 2]])
    with pytest.raises(ValueError, match="spacing"):
        pooling_plan((0.0, 1.0, 1.0), 2)


def test_checkpoint_rebuilds_the_3d_model_with_spacing_and_orientation(tmp_path):
    pooling, kernels = pooling_plan((5.0, 1.0, 1.0), 2)
    model = unetseg.UNet(1, 3, base_channels=2, depth=2, padding="same", spatial_dims=3, pooling=pooling,
                         kernels=kernels).eval()
    path = unetseg.save_checkpoint(model, tmp_path / "m.pt", spacing=(5, 1, 1), orientation=["S", "P", "R"])
    loaded = unetseg.load_model(path)
    assert loaded.spatial_dims == 3 and loaded.size_rules == model.size_rules
    assert loaded.meta.spacing == (5.0, 1.0, 1.0) and loaded.meta.orientation == ("S", "P", "R")
    x = torch.rand(1, 1, 4, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(TypeError, match="three positive numbers"):
        unetseg.save_checkpoint(model, tmp_path / "bad.pt", spacing=(1, 1))


def test_2d_configs_are_unchanged():
    assert "spatial_dims" not in unetseg.UNet().config["kwargs"]


@pytest.mark.parametrize("cls", [unetseg.UNet, unetseg.ConvAutoencoder])
def test_2_5d_network_sees_neighbouring_slices_as_channels(tmp_path, cls):
    """context_slices=2: the first convolution spans 5 slices unpadded, the rest is the 2D network, so an output slice
    depends on its 2 neighbours on each side and on nothing farther."""
    flat = dict(pooling=[[1, 2, 2]] * 2, kernels=[[1, 3, 3]] * 3)
    model = cls(1, 3, base_channels=2, depth=2, padding="same", spatial_dims=3, context_slices=2, **flat).eval()
    z = model.size_rules[0]
    assert (z.padding, z.margin, z.stride, model.field_radii[0]) == ("valid", 2, 1, 2)
    assert model.output_size(16) == 16 and z.output_size(5) == 1 and not z.is_valid(4)
    x = torch.rand(1, 1, 9, 16, 16)
    with torch.inference_mode():
        out = model(x)
        assert out.shape == (1, 3, 5, 16, 16)
        x2 = x.clone()
        x2[:, :, 0] += 1  # slice 0 is seen by output slice 0 (input slice 2) only
        changed = (model(x2) - out).abs().amax(dim=(0, 1, 3, 4)) > 0
    assert changed.tolist() == [True, False, False, False, False]
    loaded = unetseg.load_model(unetseg.save_checkpoint(model, tmp_path / "m.pt"))
    assert loaded.config["kwargs"]["context_slices"] == 2 and loaded.size_rules == model.size_rules
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), out)
    with pytest.raises(ValueError, match="context_slices=2: .*no pooling and 1-voxel kernels along z"):
        cls(1, 3, depth=2, spatial_dims=3, context_slices=2)
    with pytest.raises(ValueError, match="context_slices=1"):
        cls(1, 3, depth=2, context_slices=1, **{k: [v[1:] for v in rows] for k, rows in flat.items()})


@pytest.mark.parametrize("span", [1, 5])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_a_planar_conv3d_equals_the_conv3d_it_stands_for(span, layout):
    from unetseg.models.blocks import PlanarConv3d

    torch.manual_seed(0)
    reference = torch.nn.Conv3d(3, 4, (span, 3, 3), padding=(0, 1, 1))
    planar = PlanarConv3d(3, 4, (span, 3, 3), padding=(0, 1, 1))
    planar.load_state_dict(reference.state_dict())  # the same parameters and state dict
    x = torch.randn(2, 3, 9, 17, 15).contiguous(memory_format=layout)
    torch.testing.assert_close(planar(x), reference(x), atol=1e-5, rtol=1e-5)


def test_slice_by_slice_and_2_5d_networks_train_in_bf16_at_full_patch_size():
    """oneDNN's bf16 weight gradient of Conv3d layers with one-slice kernels (and of the 2.5D first layer) crashed the
    process on AMX Xeons from 96 px in-plane (torch 2.15); those layers run as 2D convolutions now."""
    for context in (0, 2):
        model = unetseg.UNet(1, 3, base_channels=4, depth=2, padding="same", spatial_dims=3, pooling=[[1, 2, 2]] * 2,
                             kernels=[[1, 3, 3]] * 3, context_slices=context).to(memory_format=torch.channels_last_3d)
        x = torch.randn(2, 1, 1 + 2 * context, 128, 128).contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
        logits.float().sum().backward()
        assert logits.shape == (2, 3, 1, 128, 128)
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
