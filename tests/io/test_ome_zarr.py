"""OME-Zarr labels out and zarr / OME-Zarr images in: round trips that keep the metadata."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from unetseg.errors import OutputError, UnetsegError
from unetseg.io.ome_zarr_labels import OmeZarrLabelsWriter, pyramid_levels
from unetseg.io.source import find_images, open_image

ome_zarr = pytest.importorskip("ome_zarr")


def test_labels_round_trip_through_ome_zarr_with_pyramid_and_metadata(tmp_path, rng):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    labels = rng.integers(0, 3, (100, 70)).astype(np.uint8)
    path = tmp_path / "x_index.ome.zarr"
    with OmeZarrLabelsWriter(path, labels.shape, np.uint8, (32, 32), levels=3, class_names=["bg", "a", "b"],
                             colors=[(0, 0, 0), (255, 0, 0), (0, 0, 255)], pixel_size=(0.5, 0.25),
                             unit="micrometer") as writer:
        writer[0:40] = labels[:40]  # row bands, as one process writes them
        writer[40:100] = labels[40:]
        assert not path.exists()  # only a complete pyramid gets the final name
    nodes = list(Reader(parse_url(str(path)))())
    data = [np.asarray(d) for d in nodes[0].data]
    assert [d.shape for d in data] == [(100, 70), (50, 35), (25, 18)]
    np.testing.assert_array_equal(data[0], labels)
    np.testing.assert_array_equal(data[1], labels[::2, ::2])  # nearest: labels stay labels
    np.testing.assert_array_equal(data[2], labels[::4, ::4])
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    scales = [d["coordinateTransformations"][0]["scale"] for d in attrs["multiscales"][0]["datasets"]]
    assert scales == [[0.5, 0.25], [1.0, 0.5], [2.0, 1.0]]
    assert attrs["multiscales"][0]["axes"][1] == {"name": "x", "type": "space", "unit": "micrometer"}
    label_meta = attrs["image-label"]
    assert [p["class"] for p in label_meta["properties"]] == ["bg", "a", "b"]
    assert label_meta["colors"][1] == {"label-value": 1, "rgba": [255, 0, 0, 255]}
    # the labels read back as an input image, with their pixel size, at any level
    source = open_image(path, level=1)
    assert source.shape == (50, 35) and source.pixel_size == (1.0, 0.5) and source.unit == "micrometer"
    np.testing.assert_array_equal(source.array[:, :], labels[::2, ::2])


def test_a_failed_write_leaves_no_folder_behind(tmp_path):
    path = tmp_path / "y_index.ome.zarr"
    with pytest.raises(RuntimeError), OmeZarrLabelsWriter(path, (10, 10), np.uint8, (8, 8)):
        raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError), OmeZarrLabelsWriter(tmp_path / "file" / "z.ome.zarr", (4, 4), np.uint8, (4, 4)):
        pass


def test_pyramid_stops_when_a_level_is_small():
    assert pyramid_levels((100, 70)) == 1
    assert pyramid_levels((16384, 9000)) == 7  # 16384 -> 256 in six halvings


def test_ome_zarr_image_input_any_level_with_channels(tmp_path, rng):
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    image = rng.integers(0, 256, (2, 64, 48), dtype=np.uint8)  # CYX
    group = zarr.open_group(str(tmp_path / "img.ome.zarr"), mode="w", zarr_format=2)
    write_image(image, group, axes="cyx", fmt=FormatV04(), scale={"c": 1.0, "y": 0.3, "x": 0.3},
                axes_units={"y": "micrometer", "x": "micrometer"}, scale_factors=(2,))
    source = open_image(tmp_path / "img.ome.zarr")
    assert source.shape == (64, 48, 2) and source.pixel_size == (0.3, 0.3) and source.unit == "micrometer"
    np.testing.assert_array_equal(source.array[5:9, 3:7], image[:, 5:9, 3:7].transpose(1, 2, 0))
    assert open_image(tmp_path / "img.ome.zarr", level=1).shape == (32, 24, 2)
    with pytest.raises(UnetsegError, match="level 5 does not exist"):
        open_image(tmp_path / "img.ome.zarr", level=5)
    assert find_images([tmp_path]) == [tmp_path / "img.ome.zarr"]  # a zarr folder is one input


def test_plain_zarr_arrays_bands_last_or_first(tmp_path, rng):
    yxc = rng.integers(0, 9, (20, 30, 3), dtype=np.uint16)
    zarr.open_array(str(tmp_path / "yxc.zarr"), mode="w", shape=yxc.shape, dtype=yxc.dtype)[:] = yxc
    cyx = rng.random((4, 20, 30), dtype=np.float32)
    zarr.open_array(str(tmp_path / "cyx.zarr"), mode="w", shape=cyx.shape, dtype=cyx.dtype)[:] = cyx
    np.testing.assert_array_equal(open_image(tmp_path / "yxc.zarr").array[:, :], yxc)
    np.testing.assert_array_equal(open_image(tmp_path / "cyx.zarr").array[:, :], cyx.transpose(1, 2, 0))
