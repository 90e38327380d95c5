import json

import cv2
import numpy as np
import pytest

import unetseg
from unetseg.errors import UnetsegError
from unetseg.io import display, maps
from unetseg.io.atomic import atomic_path


@pytest.fixture
def labels():
    return np.random.default_rng(0).integers(0, 4, (37, 53)).astype(np.uint8)


def test_index_png_and_tiff_round_trip(tmp_path, labels):
    maps.write_index(tmp_path / "i.png", labels)
    maps.write_index(tmp_path / "i.tif", labels)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "i.png"), cv2.IMREAD_UNCHANGED), labels)
    import tifffile
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "i.tif"), labels)
    many = (labels.astype(np.uint16) * 100)  # a uint16 map (> 256 labels) -> 16-bit PNG
    maps.write_index(tmp_path / "m.png", many)
    back = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and np.array_equal(back, many)
    with pytest.raises(UnetsegError, match="uint8 or uint16"):
        maps.write_index(tmp_path / "w.png", many.astype(np.uint32))


def test_palette_png_is_paletted_and_colours_equal_the_table(tmp_path, labels):
    table = unetseg.ClassTable.default(4)
    path = maps.write_palette_png(tmp_path / "p.png", labels, table.palette())
    data = path.read_bytes()
    assert data[25] == 3  # IHDR colour type 3: palette
    rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(rgb, table.palette()[labels])
    assert tuple(table.palette()[0]) == (0, 0, 0)


def test_class_table_uses_checkpoint_colours():
    model = unetseg.UNet(1, 2, base_channels=2, depth=1)
    model.class_names, model.class_colors = ["bg", "cell"], [[1, 2, 3], [4, 5, 6]]
    table = model.class_table
    assert table.names == ("bg", "cell") and table.palette().tolist() == [[1, 2, 3], [4, 5, 6]]


def test_overlay_tints_every_class_but_the_transparent_ones(labels):
    image = np.full((37, 53), 100, np.uint8)  # constant: stretched to 0
    palette = np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0], [0, 0, 200]], np.uint8)
    out = display.overlay(image, labels, palette, alpha=0.5)
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[labels == 1], [[100, 0, 0]] * int((labels == 1).sum()))
    palette[0] = (40, 80, 120)
    np.testing.assert_array_equal(display.overlay(image, labels, palette)[labels == 0], [[20, 40, 60]] * int((labels == 0).sum()))
    clear = display.overlay(image, labels, palette, transparent=[0])
    np.testing.assert_array_equal(clear[labels == 0], 0)


def test_probs_npy_and_json_round_trip(tmp_path):
    probs = np.random.default_rng(1).random((37, 53, 4)).astype(np.float32)
    maps.write_probs(tmp_path / "p.npy", probs)
    back = np.load(tmp_path / "p.npy")
    assert back.dtype == np.float16 and np.allclose(back, probs, atol=1e-3)
    maps.write_json(tmp_path / "s.json", {"a": [1, 2], "b": "x"})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": [1, 2], "b": "x"}


def test_atomic_write_leaves_nothing_when_the_writer_raises(tmp_path, labels, monkeypatch):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.png") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    monkeypatch.setattr(cv2, "imencode", lambda *a, **k: (False, None))
    with pytest.raises(UnetsegError):
        maps.write_index(tmp_path / "y.png", labels)
    assert list(tmp_path.iterdir()) == []
