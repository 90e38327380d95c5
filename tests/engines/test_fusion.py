"""Rewrites of the inference graph: batch norm folded, ReLU fused into the convolution, both checked on a probe."""
import copy

import numpy as np
import pytest
import torch

import unetseg
from unetseg.engines.fusion import ConvReLU2d, fold_batchnorm, fuse_conv_relu, fused_relu_available
from unetseg.engines.graph import InferenceGraph, has_normalization
from unetseg.models.precision import Precision
from unetseg.tiling import predict_tiled

from ..conftest import tiny_unet

needs_fused_op = pytest.mark.skipif(not fused_relu_available(), reason="this torch build has no oneDNN fused conv op")


def count_bn(model):
    return sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_unet_batchnorm_folds_into_the_convolutions_exactly(padding):
    model = tiny_unet(padding, depth=2)
    x = torch.rand(2, 1, 92, 92) if padding == "valid" else torch.rand(2, 1, 64, 64)
    folded = fold_batchnorm(model, x[:1])
    assert count_bn(model) > 0 and count_bn(folded) == 0
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


def test_smp_encoder_and_decoder_batchnorms_fold_too():
    torch.manual_seed(0)
    model = unetseg.build_model("smp-unet", encoder_name="resnet18", in_channels=3, num_classes=2).eval()
    x = torch.rand(1, 3, 64, 64)
    folded = fold_batchnorm(model, x)
    assert count_bn(folded) == 0 and not has_normalization(folded)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-3, atol=1e-3)


def test_a_conv_whose_output_is_used_twice_is_not_folded():
    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.BatchNorm2d(2)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # folding BN into conv would change the second use

    model = Branchy().eval()
    with torch.no_grad():
        model.bn.running_mean.fill_(0.5)
        model.bn.running_var.fill_(4.0)
    x = torch.rand(1, 1, 32, 32)
    assert fold_batchnorm(model, x) is model


def count(model, kind):
    return sum(type(m) is kind for m in model.modules())


@needs_fused_op
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=pytest.mark.skipif(
    not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="oneDNN runs no bf16 convolution on this CPU (AVX2 "
    "only): the model is kept unfused, test_a_fused_op_this_cpu_lacks_keeps_the_model covers it"))])
def test_every_unet_relu_runs_as_its_convolutions_post_op(padding, dtype):
    model = fold_batchnorm(tiny_unet(padding, depth=2), torch.rand(1, 1, 92, 92))
    model = model.to(dtype).to(memory_format=torch.channels_last)
    x = torch.rand(2, 1, 92, 92).to(dtype).contiguous(memory_format=torch.channels_last)
    fused = fuse_conv_relu(model, x[:1])
    assert count(model, torch.nn.ReLU) == count(fused, ConvReLU2d) > 0 and count(fused, torch.nn.ReLU) == 0
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=0, atol=0)  # one oneDNN call, the same floats
    assert fused.state_dict().keys() == model.state_dict().keys()


@needs_fused_op
def test_a_fused_op_this_cpu_lacks_keeps_the_model(monkeypatch):
    """Where the fused kernel raises (bf16 on a CPU without AVX512, a build without the op), fusion returns the
    model itself, which runs as before."""
    def missing(*args, **kwargs):
        raise RuntimeError("no such kernel on this CPU")

    monkeypatch.setattr(torch.ops.mkldnn, "_convolution_pointwise", missing)
    model = fold_batchnorm(tiny_unet("same", depth=2), torch.rand(1, 1, 92, 92))
    x = torch.rand(1, 1, 92, 92)
    assert fuse_conv_relu(model, x) is model


@needs_fused_op
def test_smp_relus_fuse_where_a_relu_follows_one_conv_only():
    torch.manual_seed(0)
    model = unetseg.build_model("smp-unet", encoder_name="resnet18", in_channels=3, num_classes=2).eval()
    x = torch.rand(1, 3, 64, 64)
    fused = fuse_conv_relu(fold_batchnorm(model, x), x)
    assert count(fused, ConvReLU2d) > 0
    # a torchvision BasicBlock calls its one ReLU twice (after conv1, after the residual sum): left alone
    assert all(type(block.relu) is torch.nn.ReLU for block in fused.net.encoder.layer1)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-3, atol=1e-3)


@needs_fused_op
def test_a_relu_beside_another_use_of_the_conv_output_is_not_fused():
    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.relu = torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU()

        def forward(self, x):
            y = self.conv(x)
            return self.relu(y) + y  # fusing would clamp the second use too

    model = Branchy().eval()
    assert fuse_conv_relu(model, torch.randn(1, 1, 16, 16)) is model


@needs_fused_op
def test_fused_convolution_under_autocast_runs_as_two_ops_in_the_autocast_dtype():
    conv = torch.nn.Conv2d(2, 4, 3, padding=1).eval()
    fused = ConvReLU2d.__new__(ConvReLU2d)
    fused.__dict__ = conv.__dict__.copy()
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, expected = fused(x), torch.relu(conv(x))
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_cpu_graph_fuses_unless_compiling_and_keeps_the_labels(trained_same_unet, monkeypatch):
    image = np.random.default_rng(0).integers(0, 255, (160, 192), dtype=np.uint8)
    graph = InferenceGraph(trained_same_unet, torch.device("cpu"), Precision(None, True))
    assert (count(graph.net, ConvReLU2d) > 0) == fused_relu_available()
    compiled = InferenceGraph(trained_same_unet, torch.device("cpu"), Precision(None, True), compile=True)
    assert count(compiled.net, ConvReLU2d) == 0  # inductor fuses on its own, from plain convolutions
    fused = predict_tiled(trained_same_unet, image, tile_size=128, halo="exact", amp=False)
    monkeypatch.setattr("unetseg.engines.graph.fuse_conv_relu", lambda model, x: model)
    unfused = predict_tiled(copy.deepcopy(trained_same_unet), image, tile_size=128, halo="exact", amp=False)
    np.testing.assert_array_equal(fused, unfused)
