"""The inference graph: rewritten (see test_fusion), weights pre-cast, compiled, never touching the caller's model."""
import warnings

import numpy as np
import pytest
import torch

import unetseg
from unetseg.data.samples import load_sample
from unetseg.engines.graph import InferenceGraph
from unetseg.models.geometry import Geometry
from unetseg.models.precision import Precision
from unetseg.tiling import TileOptions, predict_tiled, tiled

from ..conftest import tiny_unet, whole_image_probs


def count_bn(model):
    return sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_graph_leaves_the_callers_model_alone_and_casts_weights_once():
    model = tiny_unet("same", depth=2).train()
    graph = InferenceGraph(model, torch.device("cpu"), Precision(torch.bfloat16, True))
    assert model.training and count_bn(model) > 0 and next(model.parameters()).dtype == torch.float32
    assert graph.cast and next(graph.net.parameters()).dtype == torch.bfloat16
    logits = graph(torch.rand(1, 1, 64, 64))
    assert logits.dtype == torch.float32 and logits.shape == (1, 3, 64, 64)


def test_group_norm_models_keep_autocast():
    model = unetseg.UNet(1, 2, base_channels=4, depth=2, padding="same", norm="group").eval()
    graph = InferenceGraph(model, torch.device("cpu"), Precision(torch.bfloat16, True))
    assert not graph.cast and next(graph.net.parameters()).dtype == torch.float32


@pytest.fixture(scope="module")
def nuclei_image():
    return load_sample("nuclei", "train").images[0][:256, :320]


def test_folded_labels_equal_eager_labels(trained_same_unet, nuclei_image):
    """fp32: folded == eager up to float rounding. bf16: the folded, pre-cast graph is as close to fp32 as eager
    autocast is (two bf16 roundings of one model differ by more than either differs from fp32 at near-ties)."""
    model = trained_same_unet
    context = Geometry.of(model).halo_for("exact")
    fp32 = whole_image_probs(model, nuclei_image, context).argmax(-1)
    autocast = whole_image_probs(model, nuclei_image, context, autocast=torch.bfloat16).argmax(-1)
    folded32 = predict_tiled(model, nuclei_image, tile_size=512, halo="exact", amp=False)
    folded16 = predict_tiled(model, nuclei_image, tile_size=512, halo="exact", amp="bf16")
    assert (folded32 == fp32).mean() >= 0.9999
    assert (folded16 == fp32).mean() >= min(0.999, (autocast == fp32).mean() - 0.0005)


def test_compiled_labels_equal_eager_labels(trained_same_unet, nuclei_image):
    eager = predict_tiled(trained_same_unet, nuclei_image, tile_size=128, amp=False, compile=False)
    result = tiled(trained_same_unet, nuclei_image, TileOptions(tile_size=128, amp=False, compile=True))
    assert result.report.compiled is True
    assert (result.output == eager).mean() >= 0.9999


def test_a_failing_compile_falls_back_to_eager_with_a_notice(monkeypatch, nuclei_image):
    model = tiny_unet("same", depth=2)

    def broken(module, **kwargs):
        def run(x):
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    expected = predict_tiled(model, nuclei_image, tile_size=64, amp=False, compile=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = predict_tiled(model, nuclei_image, tile_size=64, amp=False, compile=True)
    np.testing.assert_array_equal(got, expected)
    assert any("torch.compile failed" in str(w.message) for w in caught)


def test_compile_argument_is_checked():
    with pytest.raises(unetseg.UnetsegError, match="compile="):
        predict_tiled(tiny_unet("same", depth=2), np.zeros((8, 8), np.uint8), compile="yes")


def test_graphs_are_cached_per_precision_and_rebuilt_when_the_weights_change():
    from unetseg.engines.graph import inference_graph

    model = unetseg.UNet(1, 2, base_channels=4, depth=2).eval()
    cpu, fp32, bf16 = torch.device("cpu"), Precision(None, True), Precision(torch.bfloat16, True)
    first = inference_graph(model, cpu, fp32)
    assert inference_graph(model, cpu, bf16) is not first
    assert inference_graph(model, cpu, fp32) is first  # alternating precisions reuses both
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert inference_graph(model, cpu, fp32) is not first
