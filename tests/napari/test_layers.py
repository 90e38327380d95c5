"""Layer data <-> unetseg: codings of Labels layers, model inputs of image layers, pyramid placement."""
import numpy as np
import pytest

from unetseg.data.classes import ClassTable
from unetseg.errors import UnetsegError
from unetseg.napari.layers import (
    UNLABELLED,
    class_layer_kwargs,
    class_table_of,
    level_placement,
    model_input,
    training_mask,
)


def test_painted_labels_become_class_ids_with_unlabelled_ignored():
    painted = np.array([[0, 1, 2], [2, 0, 1]], np.uint32)
    mask, names = training_mask(painted)
    assert names is None
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, [[UNLABELLED, 0, 1], [1, UNLABELLED, 0]])


def test_class_coded_layer_keeps_ids_and_its_nodata_label_is_unlabelled():
    table = ClassTable(("bg", "cell"), ((0, 0, 0), (255, 0, 0)))
    meta = class_layer_kwargs(table, "x", nodata_label=255)["metadata"]
    data = np.array([[0, 1, 255], [1, 0, 0]], np.uint8)
    mask, names = training_mask(data, meta)
    assert names == ["bg", "cell"]
    np.testing.assert_array_equal(mask, [[0, 1, UNLABELLED], [1, 0, 0]])
    assert class_table_of(meta) == table


@pytest.mark.parametrize("data, message", [
    (np.zeros((4, 4), np.uint8), "no labelled pixel"),
    (np.full((4, 4), 300, np.uint16), "label 300"),
    (np.full((2, 2, 4, 4), 1, np.uint8), "a 2-D labels layer .* or a 3-D one"),
    (np.full((4, 4), -1, np.int32), "negative label"),
])
def test_unusable_labels_are_one_line_errors_naming_the_layer(data, message):
    with pytest.raises(UnetsegError, match=message) as err:
        training_mask(data, None, "my labels")
    assert "'my labels'" in str(err.value) and "\n" not in str(err.value)


def test_class_layer_colours_names_and_transparent_background():
    table = ClassTable(("background", "cell", "edge"), ((0, 0, 0), (255, 0, 0), (0, 0, 255)))
    kwargs = class_layer_kwargs(table, "seg", nodata_label=255)
    colors = kwargs["colormap"].color_dict
    np.testing.assert_allclose(colors[1], [1, 0, 0, 1])
    np.testing.assert_allclose(colors[2], [0, 0, 1, 1])
    assert colors[0][3] == 0 and colors[255][3] == 0  # black background and nodata: see-through
    assert kwargs["features"] == {"index": [0, 1, 2], "class": ["background", "cell", "edge"]}


def test_model_input_layouts(rng):
    rgb = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    assert model_input(rgb, True, 3) is rgb
    rgba = rng.integers(0, 255, (20, 30, 4), dtype=np.uint8)
    np.testing.assert_array_equal(model_input(rgba, True, 3)[2:5, 1:4], rgba[2:5, 1:4, :3])
    bands_first = rng.random((5, 20, 30)).astype(np.float32)
    view = model_input(bands_first, False, 5)
    assert view.shape == (20, 30, 5)
    np.testing.assert_array_equal(view[3:7, 10:12], np.moveaxis(bands_first[:, 3:7, 10:12], 0, -1))
    stack = rng.random((7, 20, 30)).astype(np.float32)
    plane = model_input(stack, False, 1, leading=(4,))
    assert plane.shape == (20, 30)
    np.testing.assert_array_equal(plane[0:5, 0:5], stack[4, 0:5, 0:5])
    with pytest.raises(UnetsegError, match="'img'.*4 bands"):
        model_input(stack, False, 4, name="img")
    with pytest.raises(UnetsegError, match="RGB; the model takes 1 band"):
        model_input(rgb, True, 1)


def test_lazy_input_is_read_by_windows_only():
    da = pytest.importorskip("dask.array")
    big = da.zeros((3, 4000, 5000), dtype=np.uint16, chunks=(3, 500, 500))
    view = model_input(big, False, 3)
    window = view[100:110, 200:205]
    assert isinstance(window, np.ndarray) and window.shape == (10, 5, 3)


def test_level_placement_puts_level_pixels_over_their_base_pixels():
    scale, translate = level_placement((1000, 800), (250, 200), (0.5, 0.5), (10.0, 0.0))
    assert scale == (2.0, 2.0)
    # level pixel 0 covers base pixels 0..3, whose centres (world 10.0..11.5) have their mean at 10.75
    assert translate == (10.75, 0.75)
