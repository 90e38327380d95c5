"""An exported OpenVINO IR as a model: `load_model("m.xml")` predicts what its checkpoint predicts (same and valid
padding, labels and probabilities, the CLI too), an int8 IR runs as it is (no re-quantising), and every misuse is
one line naming the file."""
import pickle

import cv2
import numpy as np
import pytest
import tifffile
import torch

import unetseg
from unetseg.cli import main
from unetseg.data.samples import load_sample
from unetseg.errors import UnetsegError
from unetseg.export import export_model
from unetseg.models.deployed import IRModel

from ..conftest import tiny_unet

ov = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def nuclei() -> np.ndarray:
    return load_sample("nuclei", "train").images[0][:200, :180]


@pytest.fixture(scope="module")
def same_ir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ir")
    model = tiny_unet("same", depth=2, num_classes=3).eval()
    return model, export_model(model, folder / "m.xml", format="openvino", tile_size=64)


def test_ir_predicts_what_its_checkpoint_predicts(same_ir, nuclei):
    model, path = same_ir
    ir = unetseg.load_model(path)
    assert isinstance(ir, IRModel) and ir.num_classes == 3 and ir.in_channels == 1 and ir.padding == "same"
    for output in ("labels", "probs"):
        want = unetseg.predict_tiled(model, nuclei, tile_size=64, amp=False, engine="torch", output=output)
        got = unetseg.predict_tiled(ir, nuclei, tile_size=64, amp=False, output=output)
        if output == "labels":
            assert (np.asarray(got) == np.asarray(want)).mean() >= 0.999
        else:
            np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), atol=1e-4)


def test_ir_survives_pickling_for_dask_workers(same_ir, nuclei):
    ir = unetseg.load_model(same_ir[1])
    want = unetseg.predict_tiled(ir, nuclei, tile_size=64, amp=False)  # compiles a request, which stays behind
    ir.forward(torch.zeros(1, 1, 32, 32))
    again = pickle.loads(pickle.dumps(ir))
    np.testing.assert_array_equal(unetseg.predict_tiled(again, nuclei, tile_size=64, amp=False), want)


def test_valid_ir_takes_its_export_size_only(tmp_path, nuclei):
    model = tiny_unet("valid", depth=2, num_classes=2).eval()
    path = export_model(model, tmp_path / "v.xml", format="openvino", tile_size=124)
    ir = unetseg.load_model(path)
    assert ir.fixed_size == 124
    want = unetseg.predict_tiled(model, nuclei, tile_size=124, amp=False, engine="torch")
    assert (unetseg.predict_tiled(ir, nuclei, amp=False) == want).mean() >= 0.999
    for options, message in [(dict(tile_size=188), "takes tiles of 124 px only"),
                             (dict(engine="torch"), "runs on engine='openvino', not 'torch'"),
                             (dict(amp="int8"), "an IR is quantised once by `unetseg export")]:
        with pytest.raises(UnetsegError, match="v.xml") as err:
            unetseg.predict_tiled(ir, nuclei, **options)
        assert message in str(err.value) and "\n" not in str(err.value)


def test_int8_ir_runs_as_exported_without_quantising_again(tmp_path, trained_same_unet, monkeypatch):
    pytest.importorskip("nncf")
    from unetseg.engines import quantize
    from unetseg.engines import registry as engines

    image = load_sample("nuclei", "train").images[0]
    folder = tmp_path / "cal"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), image)
    path = export_model(trained_same_unet, tmp_path / "q.xml", format="openvino-int8", tile_size=128,
                        calibration=[folder])

    def refuse(*args, **kwargs):
        raise AssertionError("an int8 IR was quantised again")

    monkeypatch.setattr(quantize, "quantize", refuse)
    monkeypatch.setattr(engines, "quantize", refuse)
    ir = unetseg.load_model(path)
    assert ir.int8["calibration_tiles"] > 0
    got = unetseg.predict_tiled(ir, image, tile_size=128)
    want = unetseg.predict_tiled(trained_same_unet, image, tile_size=128, amp=False, engine="torch")
    assert (got == want).mean() >= 0.99


def test_predict_cli_runs_an_ir(tmp_path, same_ir, nuclei, capsys):
    model, path = same_ir
    tifffile.imwrite(tmp_path / "a.tif", nuclei)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(path), "--input", str(tmp_path / "a.tif"), "--output", str(out),
                 "--tile-size", "64", "--amp", "off", "--format", "index"]) == 0
    want = unetseg.predict_tiled(model, nuclei, tile_size=64, amp=False, engine="torch")
    assert (tifffile.imread(out / "a_index.tif") == want).mean() >= 0.999
    assert main(["predict", "--checkpoint", str(path), "--input", str(tmp_path / "a.tif"), "--output", str(out),
                 "--engine", "torch"]) != 0
    err = capsys.readouterr().err.strip()
    assert "m.xml: an OpenVINO IR runs on engine='openvino'" in err and "Traceback" not in err


def test_bad_irs_are_one_line_errors(tmp_path, same_ir):
    model, path = same_ir
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(path.read_bytes())
    damaged = tmp_path / "damaged.xml"
    damaged.write_bytes(b"<net>not quite")
    (tmp_path / "damaged.bin").write_bytes(b"")
    foreign = tmp_path / "foreign.xml"  # an IR from elsewhere: no unetseg record
    param = ov.opset13.parameter([1, 1, 8, 8], ov.Type.f32)
    ov.save_model(ov.Model([ov.opset13.relu(param)], [param]), foreign)
    cases = [(lonely, "lonely.bin: no such file"), (damaged, "damaged.xml: not a readable OpenVINO IR"),
             (foreign, "foreign.xml: this IR was not exported by unetseg")]
    for bad, message in cases:
        with pytest.raises(UnetsegError) as err:
            unetseg.load_model(bad)
        assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UnetsegError, match="an OpenVINO IR runs on the CPU, not cuda"):
        unetseg.load_model(path, device="cuda")
    ir = unetseg.load_model(path)
    with pytest.raises(UnetsegError, match="is an exported OpenVINO IR already"):
        export_model(ir, tmp_path / "again.onnx")
    with pytest.raises(UnetsegError, match="ensemble member 0 is an exported graph"):
        unetseg.models.ensemble.as_model([ir, unetseg.load_model(path)])
