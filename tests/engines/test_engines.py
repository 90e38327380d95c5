"""Engines: every engine's labels agree with torch's, tiled == whole on each, "auto" chooses by measurement,
int8 is checked before use, and each refusal is one line."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import unetseg
from unetseg.data.samples import load_sample
from unetseg.engines import registry as engines
from unetseg.errors import UnetsegError
from unetseg.models.precision import Precision
from unetseg.tiling import autotile
from unetseg.tiling.options import TileOptions
from unetseg.tiling.plan import plan_tiles
from unetseg.tiling.predict import tiled

from ..conftest import CONVERT_AFTER_SECONDS, briefly_trained_unet, tiny_unet

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def nuclei() -> np.ndarray:
    return load_sample("nuclei", "train").images[0][:200, :232]


@pytest.fixture(scope="module")
def valid_unet() -> unetseg.UNet:
    return briefly_trained_unet("valid", steps=40)


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_engines_match_torch_in_fp32(engine, trained_same_unet, nuclei):
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime")
    want = unetseg.predict_tiled(trained_same_unet, nuclei, tile_size=128, amp=False, engine="torch", output="probs")
    result = tiled(trained_same_unet, nuclei, TileOptions(tile_size=128, amp=False, engine=engine, output="probs"))
    assert result.report.engine == engine and result.report.precision == "fp32"
    np.testing.assert_allclose(result.output, want, atol=2e-4)


def test_an_ensemble_runs_on_openvino_as_one_graph(trained_same_unet, nuclei):
    other = briefly_trained_unet("same", steps=20, seed=1)
    members = [trained_same_unet, other]
    options = dict(tile_size=128, amp=False, output="uncertainty")
    want = unetseg.predict_tiled(members, nuclei, engine="torch", **options)
    got = tiled(members, nuclei, TileOptions(engine="openvino", **options))
    assert got.report.engine == "openvino"
    np.testing.assert_allclose(got.output, want, atol=1e-3)


def test_openvino_bf16_labels_agree_with_torch_as_bf16_does(trained_same_unet, nuclei):
    fp32 = unetseg.predict_tiled(trained_same_unet, nuclei, amp=False, engine="torch", tile_size=128)
    torch_bf16 = unetseg.predict_tiled(trained_same_unet, nuclei, amp="bf16", engine="torch", tile_size=128)
    ov_bf16 = unetseg.predict_tiled(trained_same_unet, nuclei, amp="bf16", engine="openvino", tile_size=128)
    bound = min((torch_bf16 == fp32).mean(), 0.999)
    assert (ov_bf16 == fp32).mean() >= bound - 1e-3


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_openvino_tiled_equals_one_tile(padding, trained_same_unet, valid_unet, nuclei):
    model = trained_same_unet if padding == "same" else valid_unet
    whole = unetseg.predict_tiled(model, nuclei, tile_size=512, halo="exact", amp=False, engine="openvino",
                                  output="probs")
    parts = tiled(model, nuclei, TileOptions(tile_size=192 if padding == "same" else 124, halo="exact", amp=False,
                                             engine="openvino", output="probs"))
    assert parts.report.num_tiles > 4
    np.testing.assert_allclose(parts.output, whole, atol=2e-4)


def test_openvino_runs_batches_and_a_short_last_batch(trained_same_unet, nuclei):
    one = unetseg.predict_tiled(trained_same_unet, nuclei, tile_size=192, amp=False, engine="openvino", batch_size=1)
    three = unetseg.predict_tiled(trained_same_unet, nuclei, tile_size=192, amp=False, engine="openvino", batch_size=3)
    assert (one == three).mean() > 0.9999


def test_auto_keeps_torch_for_an_image_too_small_to_repay_converting(trained_same_unet, nuclei, monkeypatch):
    monkeypatch.setattr(autotile, "CONVERT_AFTER_SECONDS", CONVERT_AFTER_SECONDS)
    result = tiled(trained_same_unet, nuclei[:64, :64], TileOptions(engine="auto"))
    assert result.report.engine == "torch"


def test_auto_converts_once_the_models_images_together_repay_it(trained_same_unet, nuclei, monkeypatch):
    """Each image alone is under the threshold; the third one's torch work with the two before it reaches it, and from
    then on the faster engine runs (a program segmenting many small images converts once)."""
    speed = {"torch": 1.0, "openvino": 0.25, "onnxruntime": 2.0}
    monkeypatch.setattr(autotile, "seconds_per_tile", lambda engine, *a, **k: speed[engine.name])
    monkeypatch.setattr(autotile, "_TORCH_WORK", {})
    options = TileOptions(engine="auto", tile_size=192)
    per_image = plan_tiles(trained_same_unet, nuclei, TileOptions(engine="torch", tile_size=192)).grid.num_tiles
    monkeypatch.setattr(autotile, "CONVERT_AFTER_SECONDS", 2.5 * per_image)
    engines_run = [plan_tiles(trained_same_unet, nuclei, options).engine for _ in range(4)]
    assert engines_run == ["torch", "torch", "openvino", "openvino"]
    other = plan_tiles(trained_same_unet, nuclei, TileOptions(engine="auto", tile_size=192, amp=False))
    assert other.engine == "torch"  # another precision is another graph: its work counts apart


def test_auto_takes_the_engine_measured_fastest(trained_same_unet, nuclei, monkeypatch):
    monkeypatch.setattr(autotile, "CONVERT_AFTER_SECONDS", 0.0)
    speed = {"torch": 1.0, "openvino": 0.5, "onnxruntime": 2.0}
    monkeypatch.setattr(autotile, "seconds_per_tile",
                        lambda engine, *a, **k: speed[engine.name])
    plan = plan_tiles(trained_same_unet, nuclei, TileOptions(engine="auto", amp=False, tile_size=192))
    assert plan.engine == "openvino"
    speed["torch"] = 0.1
    plan = plan_tiles(trained_same_unet, nuclei, TileOptions(engine="auto", amp=False, tile_size=192))
    assert plan.engine == "torch"


def test_auto_uses_torch_only_on_gpus_and_never_onnxruntime_outside_fp32():
    assert "onnxruntime" not in engines.usable_engines(torch.device("cpu"), Precision(torch.bfloat16, True))
    assert engines.usable_engines(torch.device("cuda"), Precision(torch.float16, True))[0] == "torch"


@pytest.mark.parametrize("options, message", [
    (dict(engine="tensorrt"), "engine='tensorrt' is not one of auto, torch, openvino, onnxruntime"),
    (dict(engine="torch", amp="int8"), "engine='torch' does not run amp='int8'"),
    (dict(engine="onnxruntime", amp="bf16"), "engine='onnxruntime' does not run amp='bf16'"),
])
def test_bad_engine_settings_are_one_line(options, message, trained_same_unet, nuclei):
    with pytest.raises(UnetsegError, match=message.replace("(", r"\(")):
        unetseg.predict_tiled(trained_same_unet, nuclei, tile_size=192, **options)


def test_a_missing_engine_package_says_what_to_install(trained_same_unet, nuclei, monkeypatch):
    spec = engines.ENGINES["openvino"]
    monkeypatch.setitem(engines.ENGINES, "openvino", engines.EngineSpec(
        spec.name, ("openvino_not_installed", "onnx"), spec.devices, spec.precisions, spec.build, spec.help))
    assert "openvino" not in engines.usable_engines(torch.device("cpu"), Precision(None, True))
    with pytest.raises(UnetsegError, match=r"needs the 'openvino_not_installed' package\(s\): install unetseg\[openvino\]"):
        unetseg.predict_tiled(trained_same_unet, nuclei, tile_size=192, engine="openvino")


def test_int8_is_quantised_once_checked_and_agrees_with_fp32(trained_same_unet, nuclei):
    pytest.importorskip("nncf")
    fp32 = unetseg.predict_tiled(trained_same_unet, nuclei, amp=False, engine="torch", tile_size=192)
    first = tiled(trained_same_unet, nuclei, TileOptions(amp="int8", tile_size=192))
    plan = plan_tiles(trained_same_unet, nuclei, TileOptions(amp="int8", tile_size=192))
    assert first.report.engine == "openvino" and first.report.precision == "int8"
    assert plan.quantized is not None and plan.quantized.agreement >= 0.995
    assert plan_tiles(trained_same_unet, nuclei, TileOptions(amp="int8", tile_size=192)).quantized is plan.quantized
    assert (first.output == fp32).mean() >= 0.99


def test_int8_under_the_agreement_bound_is_refused(nuclei, monkeypatch):
    pytest.importorskip("nncf")
    from unetseg.engines import quantize

    monkeypatch.setattr(quantize, "MIN_AGREEMENT", 1.01)  # nothing passes
    with pytest.raises(UnetsegError, match=r"amp='int8' refused: the quantised model's labels agree with fp32 on "):
        unetseg.predict_tiled(tiny_unet("same", num_classes=2), nuclei, amp="int8", tile_size=192)


@pytest.mark.parametrize("amp", [False, "int8"])
def test_openvino_on_dask_workers_equals_one_process(amp, trained_same_unet, nuclei, dask_client, tmp_path):
    """Threaded workers share one engine; int8 workers run the plan's quantised model, not their own."""
    pytest.importorskip("nncf")
    options = dict(amp=amp, engine="openvino", tile_size=192, batch_size=1)
    one = unetseg.predict_tiled(trained_same_unet, nuclei, **options)
    out = unetseg.predict_dask(trained_same_unet, nuclei, tmp_path / "l.zarr", chunk=64, client=dask_client,
                               **options)
    np.testing.assert_array_equal(out[:], one)


def test_a_write_failing_while_the_next_batch_runs_leaves_the_engine_usable(trained_same_unet, nuclei):
    """The batch running asynchronously when a write fails is waited for before its input is freed, and its infer
    request goes back to the pool: the next run on the same engine is normal."""
    class FullDisk:
        shape, dtype = nuclei.shape, np.dtype(np.uint8)

        def __setitem__(self, key, value):
            raise OSError(28, "No space left on device")

    options = dict(tile_size=192, engine="openvino", amp=False, batch_size=1)
    with pytest.raises(OSError, match="No space left"):
        unetseg.predict_tiled(trained_same_unet, nuclei, out=FullDisk(), **options)
    again = unetseg.predict_tiled(trained_same_unet, nuclei, **options)
    np.testing.assert_array_equal(again, unetseg.predict_tiled(trained_same_unet, nuclei, **options))


def test_openvino_leaves_threads_unpinned_in_a_process_with_part_of_the_cores(monkeypatch):
    """Dask workers each get part of the cores; OpenVINO's default pinning put every worker's threads on the same
    first cores (two 1-thread workers on 2 cores ran at half speed)."""
    pytest.importorskip("openvino")
    import os

    from unetseg.engines.registry import OpenVINOEngine
    from unetseg.models.precision import resolve_precision

    engine = OpenVINOEngine.__new__(OpenVINOEngine)
    engine.precision = resolve_precision(False, torch.device("cpu"))
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert engine.config()["ENABLE_CPU_PINNING"] == "NO"
    monkeypatch.setattr(os, "cpu_count", lambda: torch.get_num_threads())
    assert "ENABLE_CPU_PINNING" not in engine.config()


def test_openvino_runs_the_whole_forward_stage_in_its_graph(trained_same_unet, nuclei):
    """uint8 tiles in, labels (or probabilities) out of OpenVINO's graph; the same answers as torch's stage."""
    from unetseg.data.normalization import Normalization
    from unetseg.engines.contract import ForwardSpec
    from unetseg.engines.graph import inference_graph
    from unetseg.engines.registry import build_engine
    from unetseg.models.precision import resolve_precision
    from unetseg.tiling.forward import TileForward

    cpu = torch.device("cpu")
    graph = inference_graph(trained_same_unet, cpu, resolve_precision(False, cpu))
    engine = build_engine(graph, "openvino")
    spec = ForwardSpec.of(Normalization(), np.uint8, np.dtype(np.uint8), 1, labels=True)
    assert TileForward(engine, spec).fused
    assert not TileForward(engine, ForwardSpec.of(Normalization(), np.uint8, np.dtype(np.uint8), 1, tta="flips")).fused
    options = dict(tile_size=192, amp=False)
    for output in ("labels", "probs"):
        want = unetseg.predict_tiled(trained_same_unet, nuclei, engine="torch", output=output, **options)
        got = unetseg.predict_tiled(trained_same_unet, nuclei, engine="openvino", output=output, **options)
        if output == "probs":
            np.testing.assert_allclose(got, want, atol=2e-4)
        else:
            assert (got == want).mean() > 0.9999


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_openvino_fused_stage_takes_other_dtypes_and_invalid_pixels(trained_same_unet, nuclei, dtype):
    image = (nuclei.astype(np.float32) * (257 if dtype == np.uint16 else 1 / 255)).astype(dtype)
    image[20:40, 50:90] = 0
    options = dict(tile_size=192, amp=False, nodata=0)
    want = unetseg.predict_tiled(trained_same_unet, image, engine="torch", output="probs", **options)
    got = unetseg.predict_tiled(trained_same_unet, image, engine="openvino", output="probs", **options)
    np.testing.assert_allclose(got, want, atol=2e-4)
    labels = unetseg.predict_tiled(trained_same_unet, image, engine="openvino", **options)
    assert (labels[20:40, 50:90] == 255).all()
