"""One version, pyproject.toml's: ``unetseg --version``, ``unetseg.__version__``, checkpoints and summaries."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import unetseg
from unetseg.cli import main
from unetseg.outputs import predict_file

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_version() -> str:
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_package_version_is_pyprojects():
    assert unetseg.__version__ == _pyproject_version()


def test_version_flag_prints_it(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"unetseg {_pyproject_version()}"


def test_checkpoints_and_summaries_record_it(tmp_path):
    model = unetseg.UNet(1, 2, base_channels=2, depth=1, padding="same").eval()
    path = unetseg.save_checkpoint(model, tmp_path / "m.pt")
    loaded = unetseg.load_model(path)
    assert loaded.meta.unetseg_version == _pyproject_version()
    image = (np.arange(40 * 48).reshape(40, 48) % 251).astype(np.uint8)
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), image)
    written = predict_file(loaded, tmp_path / "a.png", tmp_path / "out" / "a", ["summary"])
    summary = json.loads(written[0].read_text())
    assert summary["unetseg_version"] == _pyproject_version() and summary["height"] == 40


def test_py_typed_ships_in_the_package():
    """PEP 561: type checkers read unetseg's annotations (hatchling puts every file of the package in the wheel)."""
    assert (Path(unetseg.__file__).parent / "py.typed").is_file()
