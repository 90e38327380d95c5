"""OpenVINO IR export: the fp32 IR computes the model's probabilities at any size a same-padding model takes, the
int8 IR is calibrated on the user's images and agrees with fp32 (or is refused, writing nothing), and the
checkpoint's record travels in the XML."""
import json

import cv2
import numpy as np
import pytest
import torch

import unetseg
from unetseg.cli import main
from unetseg.data.samples import load_sample
from unetseg.errors import UnetsegError
from unetseg.export import export_model

from ..conftest import tiny_unet

ov = pytest.importorskip("openvino")


def run_ir(path, x: np.ndarray) -> np.ndarray:
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled({"image": x})["probs"]


@pytest.mark.parametrize("padding, classes, sizes", [("same", 3, (64, 96)), ("same", 1, (64,)), ("valid", 2, (60,))])
def test_fp32_ir_computes_the_models_probabilities(tmp_path, padding, classes, sizes):
    model = tiny_unet(padding, depth=2, num_classes=classes)
    path = export_model(model, tmp_path / "m.xml", format="openvino", tile_size=sizes[0])
    assert path == tmp_path / "m.xml" and (tmp_path / "m.bin").is_file()
    for n in sizes:  # same padding keeps height and width dynamic
        x = torch.randn(2, 1, n, n, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            logits = model(x)
        want = torch.sigmoid(logits) if classes == 1 else torch.softmax(logits, 1)
        np.testing.assert_allclose(run_ir(path, x.numpy()), want.numpy(), atol=1e-4)


def test_the_ir_carries_the_checkpoint_record(tmp_path):
    model = unetseg.UNet(3, 2, base_channels=4, depth=2, padding="same").eval()
    path = export_model(model, tmp_path / "m.xml", format="openvino")
    meta = json.loads(ov.Core().read_model(path).get_rt_info(["unetseg"]).astype(str))
    assert meta["config"]["kwargs"]["in_channels"] == 3 and meta["input_size"] == 512
    assert meta["geometry"]["padding"] == "same"


@pytest.fixture(scope="module")
def nuclei_folder(tmp_path_factory) -> tuple:
    folder = tmp_path_factory.mktemp("calibration")
    images = load_sample("nuclei", "train").images
    for i, image in enumerate(images[:3]):
        cv2.imwrite(str(folder / f"img{i}.png"), image)
    return folder, images[0]


def test_int8_ir_is_calibrated_on_the_images_and_agrees_with_fp32(tmp_path, trained_same_unet, nuclei_folder):
    pytest.importorskip("nncf")
    folder, image = nuclei_folder
    path = export_model(trained_same_unet, tmp_path / "q.xml", format="openvino-int8", tile_size=128,
                        calibration=[folder])
    ir = ov.Core().read_model(path)
    record = json.loads(ir.get_rt_info(["unetseg"]).astype(str))["int8"]
    assert record["calibration_tiles"] == 32 and record["label_agreement_with_fp32"] >= 0.995
    assert any(op.get_type_name() == "FakeQuantize" for op in ir.get_ordered_ops())
    x = (image[:256, :256].astype(np.float32) / 255)[None, None]
    with torch.no_grad():
        want = trained_same_unet(torch.from_numpy(x)).argmax(1).numpy()
    assert (run_ir(path, x).argmax(1) == want).mean() >= 0.99


@pytest.mark.parametrize("vnni", [True, False])
def test_int8_without_vnni_quantises_with_the_overflow_fix_on_every_layer(tmp_path, nuclei_folder, monkeypatch, vnni):
    """AVX2's int8 kernels sum products pairwise in saturating 16 bits: without VNNI every layer gets NNCF's overflow
    fix (7-bit weights); with VNNI only the first (NNCF's default)."""
    nncf = pytest.importorskip("nncf")
    from nncf.quantization.advanced_parameters import OverflowFix

    from unetseg.models import precision

    monkeypatch.setattr(precision, "cpu_has_vnni", lambda: vnni)
    seen, real = [], nncf.quantize

    def spy(*args, **kwargs):
        seen.append(kwargs["advanced_parameters"].overflow_fix)
        return real(*args, **kwargs)

    monkeypatch.setattr(nncf, "quantize", spy)
    monkeypatch.setattr("unetseg.engines.quantize.MIN_AGREEMENT", 0.0)  # the choice is checked, not the model
    export_model(tiny_unet("same", num_classes=2), tmp_path / "q.xml", format="openvino-int8", tile_size=64,
                 calibration=[nuclei_folder[0]])
    assert seen == [OverflowFix.FIRST_LAYER if vnni else OverflowFix.ENABLE]


def test_int8_under_the_agreement_bound_is_refused_and_writes_nothing(tmp_path, nuclei_folder, monkeypatch):
    pytest.importorskip("nncf")
    from unetseg.engines import quantize

    monkeypatch.setattr(quantize, "MIN_AGREEMENT", 1.01)  # nothing passes
    with pytest.raises(UnetsegError, match=r"^openvino-int8 export refused: .* use export --format openvino$"):
        export_model(tiny_unet("same", num_classes=2), tmp_path / "q.xml", format="openvino-int8", tile_size=64,
                     calibration=[nuclei_folder[0]])
    assert list(tmp_path.iterdir()) == []


def test_export_cli_errors_are_one_line(tmp_path, capsys, nuclei_folder):
    ckpt = unetseg.save_checkpoint(tiny_unet("same", depth=2, num_classes=2), tmp_path / "c.pt")
    base = ["export", "--checkpoint", str(ckpt), "--tile-size", "64"]
    cases = [(["--format", "openvino-int8", "--output", str(tmp_path / "q.xml")], "needs calibration images"),
             (["--format", "openvino", "--output", str(tmp_path / "m.onnx")], "m.onnx: an OpenVINO IR is an .xml"),
             (["--format", "openvino-int8", "--output", str(tmp_path / "q.xml"), "--calibration", str(tmp_path / "e")],
              "no such file")]
    (tmp_path / "rgb.png").write_bytes(cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))[1].tobytes())
    cases.append((["--format", "openvino-int8", "--output", str(tmp_path / "q.xml"), "--calibration",
                   str(tmp_path / "rgb.png")], "rgb.png: image has 3 channel(s) but the model expects 1"))
    for extra, message in cases:
        assert main(base + extra) != 0
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.xml")) and not list(tmp_path.glob("*.bin"))
    assert main(base + ["--format", "openvino", "--output", str(tmp_path / "m.xml")]) == 0
    assert (tmp_path / "m.xml").is_file() and (tmp_path / "m.bin").is_file()
