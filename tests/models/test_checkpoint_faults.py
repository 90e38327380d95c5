"""Every malformed checkpoint is one line naming the file and what is wrong, in every command that reads one:
never a traceback, never advice to turn weights-only loading off."""
import shutil

import cv2
import numpy as np
import pytest
import torch
import yaml

import unetseg
from unetseg.cli import main
from unetseg.export import export_model
from unetseg.models.checkpoint import CHECKPOINT_FORMAT

from ..training.conftest import TINY


class _Evil:
    def __reduce__(self):
        return (print, ("code ran while loading",))


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory):
    """name -> (file, words the one-line message must hold)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    model = unetseg.UNet(1, 2, base_channels=4, depth=2, padding="same")
    good = unetseg.save_checkpoint(model, folder / "good.pt")
    payload = torch.load(good, weights_only=True)
    data = good.read_bytes()
    files = {}

    def raw(name, content, *words):
        (folder / name).write_bytes(content)
        files[name] = (folder / name, words)

    def saved(name, change, *words):
        edited = {**payload, **change}
        torch.save({k: v for k, v in edited.items() if v is not None}, folder / name)
        files[name] = (folder / name, words)

    raw("empty.pt", b"", "empty (0 bytes)")
    raw("random.pt", np.random.default_rng(0).bytes(4000), "not a PyTorch checkpoint")
    raw("truncated.pt", data[: len(data) // 2], "not a PyTorch checkpoint")
    damaged = bytearray(data)
    middle = len(damaged) // 2
    damaged[middle : middle + 64] = bytes(64)
    raw("damaged.pt", bytes(damaged), "damaged")
    saved("no_model.pt", {"model": None}, "'model' entry")
    saved("no_weights.pt", {"state_dict": None}, "'state_dict' entry")
    saved("wrong_keys.pt", {"state_dict": {"x": torch.zeros(1)}}, "weights do not fit", "missing")
    saved("changed_kwargs.pt", {"model": {"name": "unet", "kwargs": {**payload["model"]["kwargs"],
                                                                      "base_channels": 8}}}, "wrong-shape")
    saved("bad_kwargs.pt", {"model": {"name": "unet", "kwargs": {"colour": "red"}}}, "cannot be built", "colour")
    saved("unknown_model.pt", {"model": {"name": "resnet-9000", "kwargs": {}}}, "resnet-9000", "known:")
    saved("not_unetseg.pt", {"format": "something-else"}, f"no '{CHECKPOINT_FORMAT}' format tag")
    torch.save({"format": CHECKPOINT_FORMAT, "x": _Evil()}, folder / "pickled_code.pt")
    files["pickled_code.pt"] = (folder / "pickled_code.pt", ("weights-only",))
    export_model(model, folder / "torchscript.pt", format="torchscript", tile_size=32)
    files["torchscript.pt"] = (folder / "torchscript.pt", ("TorchScript",))
    export_model(model, folder / "model.onnx", format="onnx", tile_size=32)
    shutil.copy(folder / "model.onnx", folder / "onnx.pt")
    files["onnx.pt"] = (folder / "onnx.pt", ("ONNX",))
    return files


KINDS = ["empty.pt", "random.pt", "truncated.pt", "damaged.pt", "no_model.pt", "no_weights.pt", "wrong_keys.pt",
         "changed_kwargs.pt", "bad_kwargs.pt", "unknown_model.pt", "not_unetseg.pt", "pickled_code.pt",
         "torchscript.pt", "onnx.pt"]


def _command(name, path, tmp_path):
    if name == "predict":
        (tmp_path / "in").mkdir()
        cv2.imwrite(str(tmp_path / "in" / "a.png"), np.zeros((16, 16, 3), np.uint8))  # an input to get as far
        return ["predict", "--checkpoint", path, "--input", tmp_path / "in", "--output", tmp_path / "out"]
    if name == "evaluate":
        return ["evaluate", "--checkpoint", path, "--images", tmp_path, "--masks", tmp_path]
    if name == "export":
        return ["export", "--checkpoint", path, "--format", "torchscript", "--output", tmp_path / "m.ts"]
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(path, run / "last.pt")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(TINY))
    return ["train", config, "--resume", run]


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "train"])
@pytest.mark.parametrize("kind", KINDS)
def test_malformed_checkpoint_is_one_line(bad_checkpoints, tmp_path, capsys, kind, command):
    path, words = bad_checkpoints[kind]
    code = main([str(a) for a in _command(command, path, tmp_path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "code ran" not in captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1, captured.err
    line = lines[0]
    assert line.startswith(f"unetseg {command}: error: ")
    shown = tmp_path / "run" / "last.pt" if command == "train" else path
    assert str(shown) in line
    if command == "train" and kind in ("changed_kwargs.pt", "bad_kwargs.pt", "wrong_keys.pt"):
        words = ("holds no training state",)  # a sound format: what --resume misses is the state to continue
    for word in words:
        assert word in line, line
    assert "weights_only=False" not in line and "weights_only" not in line
