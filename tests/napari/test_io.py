"""The reader opens unetseg's maps with class names and colours; the writer saves labels as training masks."""
import numpy as np
import pytest

import unetseg
from unetseg.cli import main as cli
from unetseg.data.samples import load_sample
from unetseg.errors import UnetsegError
from unetseg.io.images import file_nodata, read_image
from unetseg.napari.io import get_reader, write_labels
from unetseg.napari.layers import UNLABELLED, class_layer_kwargs


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, trained_same_unet):
    """index/palette TIFF maps, OME-Zarr labels and the summary of the nuclei image, from `unetseg predict`."""
    from unetseg.data.classes import ClassTable

    folder = tmp_path_factory.mktemp("maps")
    model = trained_same_unet
    table = ClassTable(("background", "nucleus"), ((0, 0, 0), (200, 30, 90)))
    ckpt = unetseg.save_checkpoint(model, folder / "m.pt", classes=table)
    image = load_sample("nuclei", "train").images[0]
    import tifffile

    tifffile.imwrite(folder / "cells.tif", image)
    assert cli(["predict", "--checkpoint", str(ckpt), "--input", str(folder / "cells.tif"), "--output",
                str(folder / "out"), "--format", "index,palette,ome-zarr,summary", "--tile-size", "256"]) == 0
    return folder / "out", unetseg.predict_tiled(model, image, tile_size=256), table


@pytest.mark.parametrize("name", ["cells_index.tif", "cells_palette.tif", "cells_index.ome.zarr"])
def test_maps_open_with_their_classes(outputs, name):
    out, expected, table = outputs
    reader = get_reader(str(out / name))
    assert reader is not None
    (data, kwargs, kind), = reader(str(out / name))
    assert kind == "labels"
    full = np.asarray(data[0] if isinstance(data, list) else data)
    np.testing.assert_array_equal(full, expected)
    assert kwargs["features"]["class"] == ["background", "nucleus"]
    np.testing.assert_allclose(kwargs["colormap"].color_dict[1][:3], np.array([200, 30, 90]) / 255, atol=1e-6)
    if name.endswith(".zarr"):
        assert kwargs["multiscale"] and len(data) > 1  # lazy levels, not one array


def test_other_files_are_left_to_other_readers(tmp_path):
    (tmp_path / "photo.tif").write_bytes(b"")
    assert get_reader(str(tmp_path / "photo.tif")) is None
    assert get_reader(str(tmp_path)) is None


def test_painted_layer_saves_as_a_mask_training_reads(tmp_path):
    painted = np.zeros((40, 50), np.int32)
    painted[5:10, 5:10], painted[20:30, 20:40] = 1, 2
    path, = write_labels(str(tmp_path / "mask.tif"), painted, {"name": "paint", "metadata": {}})
    mask = read_image(path)
    assert file_nodata(path) == UNLABELLED
    np.testing.assert_array_equal(mask, np.where(painted > 0, painted - 1, UNLABELLED))


def test_a_corrected_segmentation_saves_its_class_ids(tmp_path):
    from unetseg.data.classes import ClassTable

    meta = class_layer_kwargs(ClassTable.default(3), "seg", 255)["metadata"]
    seg = np.array([[0, 1, 2], [255, 2, 0]], np.uint8)
    path, = write_labels(str(tmp_path / "seg.tif"), seg, {"name": "seg", "metadata": meta})
    np.testing.assert_array_equal(read_image(path), seg)  # 255 was nodata there too: unlabelled here


def test_writer_refuses_png_in_one_line(tmp_path):
    with pytest.raises(UnetsegError, match=r"\.tif"):
        write_labels(str(tmp_path / "mask.png"), np.ones((4, 4), np.uint8), {"name": "x", "metadata": {}})


@pytest.mark.parametrize("dtype", [np.int32, np.uint32])
def test_wide_index_maps_open_as_integer_labels(tmp_path, dtype):
    import tifffile

    labels = np.zeros((16, 24), dtype)
    labels[4:8, 2:9], labels[10:, 12:] = 1, 2
    tifffile.imwrite(tmp_path / "scan_index.tif", labels)
    (data, kwargs, kind), = get_reader(str(tmp_path / "scan_index.tif"))(str(tmp_path / "scan_index.tif"))
    assert kind == "labels" and data.dtype == dtype  # float32 before: napari's Labels layer refuses floats
    np.testing.assert_array_equal(data, labels)
    assert kwargs["features"]["class"] == ["background", "class1", "class2"]
