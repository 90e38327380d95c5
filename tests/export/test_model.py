"""Exports: TorchScript and ONNX run like the model, and carry the checkpoint's record (ONNX: as metadata
properties, with the keys QGIS's Deepness plugin reads)."""
import json
import sys

import numpy as np
import pytest
import torch

import unetseg
from unetseg.data.nodata import Nodata
from unetseg.errors import UnetsegError
from unetseg.export import export_model


def test_onnx_without_the_onnx_package_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    model = unetseg.UNet(1, 2, base_channels=2, depth=2, padding="same").eval()
    with pytest.raises(UnetsegError, match="needs the 'onnx' package"):
        export_model(model, tmp_path / "m.onnx", format="onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_torchscript_export_round_trip_and_unknown_format(tmp_path):
    torch.manual_seed(0)
    model = unetseg.UNet(1, 2, base_channels=2, depth=2, padding="same").eval()
    path = export_model(model, tmp_path / "m.pt", format="torchscript", tile_size=64)
    loaded = torch.jit.load(str(path))
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(UnetsegError):
        export_model(model, tmp_path / "m.x", format="tflite")


@pytest.mark.parametrize("padding, side, other", [("same", 64, 96), ("valid", 60, None)])
def test_onnx_export_runs_in_onnxruntime_like_torch(tmp_path, padding, side, other):
    ort = pytest.importorskip("onnxruntime")  # the dev group installs the [onnx] extra
    torch.manual_seed(0)
    model = unetseg.UNet(1, 2, base_channels=4, depth=2, padding=padding).eval()
    path = export_model(model, tmp_path / "m.onnx", format="onnx", tile_size=side)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in [side] + ([other] if other else []):  # same-padding models keep dynamic height/width
        x = torch.randn(2, 1, n, n)
        (got,) = session.run(["probs"], {"image": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(got, torch.softmax(model(x), 1).numpy(), atol=1e-5)


def test_onnx_export_of_a_saved_checkpoint_at_the_default_tile(tmp_path):
    """A model rebuilt from its checkpoint (normalisation and meta attached), traced at the default 512 px: torch's
    dynamo exporter stopped on a data-dependent guard here (a planned nuclei run's U-Net)."""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    unetseg.save_checkpoint(unetseg.UNet(1, 2, base_channels=8, depth=3, padding="same"), tmp_path / "m.pt")
    model = unetseg.load_model(tmp_path / "m.pt")
    path = export_model(model, tmp_path / "m.onnx", format="onnx")
    assert not model.training  # the export leaves the caller's model as it found it
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 1, 96, 96)
    (got,) = session.run(["probs"], {"image": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, torch.softmax(model(x), 1).numpy(), atol=1e-5)


def test_export_cli(tmp_path):
    ckpt = unetseg.save_checkpoint(unetseg.UNet(1, 2, base_channels=2, depth=2, padding="same"), tmp_path / "c.pt")
    from unetseg.cli import main
    assert main(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--output", str(tmp_path / "t.pt"),
                 "--tile-size", "64"]) == 0
    assert (tmp_path / "t.pt").is_file()


def test_onnx_metadata_carries_classes_normalisation_and_deepness_keys(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = unetseg.UNet(3, 3, base_channels=4, depth=2, padding="same").eval()
    norm = unetseg.Normalization(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    ckpt = unetseg.save_checkpoint(model, tmp_path / "c.pt", class_names=["bg", "road", "roof"], normalization=norm,
                                   nodata=Nodata("auto", 0.0, "all"), pixel_size=0.3, pixel_unit="meter",
                                   halo={"pixels": 16})
    from unetseg.cli import main
    assert main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "--output", str(tmp_path / "m.onnx"),
                 "--tile-size", "256"]) == 0
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    record = json.loads(props["unetseg"])
    assert record["classes"]["names"] == ["bg", "road", "roof"] and len(record["classes"]["colors"]) == 3
    assert record["normalization"]["mean"] == [0.5, 0.4, 0.3] and record["nodata"]["rule"] == "all"
    assert record["halo"]["pixels"] == 16 and record["input_size"] == 256 and record["pixel_size"] == [0.3, 0.3]
    assert record["geometry"] == {"padding": "same", "stride": 4, "margin": 0, "halo": 16}
    # Deepness: JSON values, class names as an id -> name mapping, resolution in cm/px, overlap in percent
    assert json.loads(props["model_type"]) == "Segmentor"
    assert json.loads(props["class_names"]) == {"0": "bg", "1": "road", "2": "roof"}
    assert json.loads(props["standardization_mean"]) == [0.5, 0.4, 0.3]
    assert json.loads(props["standardization_std"]) == [0.2, 0.25, 0.3]
    assert json.loads(props["resolution"]) == pytest.approx(30.0) and json.loads(props["tile_size"]) == 256
    assert json.loads(props["tiles_overlap"]) == round(100 * 32 / 256)


def test_torchscript_extra_file_carries_the_record(tmp_path):
    model = unetseg.UNet(1, 2, base_channels=2, depth=2, padding="same").eval()
    model.class_names = ["bg", "cell"]
    path = export_model(model, tmp_path / "m.pt", format="torchscript", tile_size=64)
    extra = {"unetseg.json": ""}
    torch.jit.load(str(path), _extra_files=extra)
    record = json.loads(extra["unetseg.json"])
    assert record["classes"]["names"] == ["bg", "cell"] and record["input_size"] == 64
