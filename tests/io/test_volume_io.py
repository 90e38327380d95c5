"""Volumes from TIFF z-stacks (OME-TIFF, ImageJ, plain) and OME-Zarr behind one lazy interface with their axes and
spacing; OME-TIFF and OME-Zarr label volumes written slab by slab with the input's geometry; one-line errors."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile
import zarr

from unetseg.errors import OutputError, UnetsegError
from unetseg.io import Volume, open_volume
from unetseg.io.nifti import NiftiVolume, label_writer
from unetseg.io.ome_zarr_labels import OmeZarrLabelsWriter, level_factors
from unetseg.io.volume import is_volume_file
from unetseg.io.volume_tiff import OmeTiffSlabWriter, write_tiff_labels

from .test_nifti import saved

SPACING = (3.0, 0.5, 0.5)  # (dz, dy, dx) micrometres: thick slices
ZYX = (12, 20, 24)


def ome_tiff(path, data, axes, spacing=SPACING, unit="µm", **kwargs):
    meta = {"axes": axes, **{f"PhysicalSize{a}": s for a, s in zip("ZYX", spacing, strict=True)},
            **{f"PhysicalSize{a}Unit": unit for a in "ZYX"}}
    tifffile.imwrite(path, data, ome=True, metadata=meta, **kwargs)
    return path


def ome_zarr_image(path, data, axes="zyx", scale=SPACING, unit="micrometer"):
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", data=data, chunks=tuple(max(1, n // 2) for n in data.shape),
                       chunk_key_encoding={"name": "v2", "separator": "/"})
    full = [1.0 if a == "c" else scale["zyx".index(a)] for a in axes]
    group.attrs["multiscales"] = [{
        "version": "0.4", "name": "img",
        "axes": [{"name": a, "type": "channel"} if a == "c" else {"name": a, "type": "space", "unit": unit}
                 for a in axes],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": full}]}]}]
    return path


@pytest.mark.parametrize("axes,layout,compression", [
    ("ZYX", lambda v: v, None), ("ZCYX", lambda v: v.transpose(0, 3, 1, 2), "zlib"),
    ("CZYX", lambda v: v.transpose(3, 0, 1, 2), None), ("ZYXC", lambda v: v, "zlib"),
])
def test_ome_tiff_stacks_read_lazily_in_zyxc_order_with_spacing(tmp_path, rng, axes, layout, compression):
    channels = "C" in axes
    volume_zyxc = rng.integers(0, 60000, (*ZYX, 2) if channels else ZYX, dtype=np.uint16)
    path = ome_tiff(tmp_path / "s.ome.tif", layout(volume_zyxc), axes, compression=compression,
                    **({"photometric": "minisblack", "planarconfig": "contig"} if axes == "ZYXC" else {}))
    volume = open_volume(path)
    assert isinstance(volume, Volume)
    assert volume.shape == volume_zyxc.shape and volume.ndim == volume_zyxc.ndim and volume.dtype == np.uint16
    assert volume.spacing == pytest.approx(SPACING) and volume.unit == "micrometer"
    np.testing.assert_array_equal(volume[2:7, 3:11, 5:17], volume_zyxc[2:7, 3:11, 5:17])
    np.testing.assert_array_equal(np.asarray(volume), volume_zyxc)
    np.testing.assert_allclose(volume.affine, np.diag([0.5, 0.5, 3.0, 1.0]))
    # lazy: a memory map of an uncompressed file, else tifffile's zarr store (decoded chunk by chunk)
    assert isinstance(volume._array, np.memmap if compression is None else zarr.Array)


def test_ome_units_are_converted_to_micrometres(tmp_path, rng):
    path = ome_tiff(tmp_path / "nm.ome.tif", rng.integers(0, 9, ZYX, dtype=np.uint8), "ZYX",
                    spacing=(2000.0, 250.0, 250.0), unit="nm")
    volume = open_volume(path)
    assert volume.spacing == pytest.approx((2.0, 0.25, 0.25)) and volume.unit == "micrometer"


def test_imagej_hyperstacks_read_with_spacing_from_resolution_and_slice_spacing(tmp_path, rng):
    data = rng.integers(0, 255, (ZYX[0], 3, *ZYX[1:]), dtype=np.uint8)  # ImageJ's ZCYX
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.5, 1 / 0.25),
                     metadata={"spacing": 3.0, "unit": "um", "axes": "ZCYX"})
    volume = open_volume(path)
    assert volume.shape == (*ZYX, 3) and volume.spacing == pytest.approx((3.0, 0.25, 0.5))
    assert volume.unit == "micrometer"
    np.testing.assert_array_equal(volume[4:9, :, 2:8], data.transpose(0, 2, 3, 1)[4:9, :, 2:8])


def test_stacks_without_spacing_get_one_and_no_unit(tmp_path, rng):
    data = rng.integers(0, 255, ZYX, dtype=np.uint8)
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, data)  # axes QYX: its pages are the slices
    volume = open_volume(path)
    assert volume.shape == ZYX and volume.spacing == (1.0, 1.0, 1.0) and volume.unit is None
    np.testing.assert_array_equal(volume[3:5], data[3:5])


def test_time_series_and_two_d_tiffs_are_one_line_errors(tmp_path, rng):
    series = ome_tiff(tmp_path / "t.ome.tif", rng.integers(0, 9, (3, *ZYX), dtype=np.uint8), "TZYX")
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, rng.integers(0, 9, ZYX[1:], dtype=np.uint8))
    for path, words in ((series, "'TZYX'"), (flat, "'YX'")):
        with pytest.raises(UnetsegError) as err:
            open_volume(path)
        message = str(err.value)
        assert "\n" not in message and str(path) in message and words in message
    assert "T=3" in str(pytest.raises(UnetsegError, open_volume, series).value)
    with pytest.raises(UnetsegError, match="not a volume file"):
        (tmp_path / "x.png").write_bytes(b"\x89PNG")
        open_volume(tmp_path / "x.png")


def test_one_time_point_is_dropped(tmp_path, rng):
    data = rng.integers(0, 9, (1, *ZYX), dtype=np.uint8)
    volume = open_volume(ome_tiff(tmp_path / "t1.ome.tif", data, "TZYX"))
    assert volume.shape == ZYX
    np.testing.assert_array_equal(np.asarray(volume), data[0])


@pytest.mark.parametrize("axes", ["zyx", "czyx"])
def test_ome_zarr_images_read_lazily_with_their_scale(tmp_path, rng, axes):
    zyxc = rng.integers(0, 255, (*ZYX, 2) if "c" in axes else ZYX, dtype=np.uint8)
    stored = zyxc.transpose(3, 0, 1, 2) if "c" in axes else zyxc
    path = ome_zarr_image(tmp_path / "v.ome.zarr", stored, axes, scale=(0.003, 0.0005, 0.0005), unit="millimeter")
    volume = open_volume(path)
    assert isinstance(volume, Volume) and volume.shape == zyxc.shape
    assert volume.spacing == pytest.approx(SPACING) and volume.unit == "micrometer"
    np.testing.assert_array_equal(volume[1:9, 4:6, 7:23], zyxc[1:9, 4:6, 7:23])
    assert isinstance(volume._array, zarr.Array)  # lazy: chunks are read when a window needs them
    assert is_volume_file(path)


def test_nifti_dispatches_and_is_a_volume(tmp_path, rng):
    path = saved(tmp_path, rng.integers(0, 9, (11, 13, 7), dtype=np.uint8))
    volume = open_volume(path)
    assert isinstance(volume, NiftiVolume) and isinstance(volume, Volume)
    assert volume.unit == "millimeter" and volume.spacing == pytest.approx((3.0, 0.8, 0.7))
    assert is_volume_file(path)


def test_ome_tiff_labels_keep_spacing_and_zyx_and_stream_slabs(tmp_path, rng):
    like = open_volume(ome_tiff(tmp_path / "in.ome.tif", rng.integers(0, 9, ZYX, dtype=np.uint8), "ZYX"))
    labels = rng.integers(0, 300, ZYX).astype(np.uint16)
    path = tmp_path / "l.ome.tif"
    writer = OmeTiffSlabWriter(path, ZYX, np.uint16, like.spacing, like.unit)
    writer[5:12] = labels[5:12]
    writer[0:5] = labels[0:5]
    assert not path.exists()
    writer.close()
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and tif.series[0].axes == "ZYX"
    back = open_volume(path)
    assert back.shape == ZYX and back.spacing == pytest.approx(SPACING) and back.unit == "micrometer"
    np.testing.assert_array_equal(np.asarray(back), labels)


def test_tiff_labels_of_a_nifti_are_in_millimetres_and_incomplete_ones_leave_nothing(tmp_path, rng):
    like = open_volume(saved(tmp_path, rng.integers(0, 9, (11, 13, 7), dtype=np.uint8)))
    labels = rng.integers(0, 3, like.shape, dtype=np.uint8)
    back = open_volume(write_tiff_labels(tmp_path / "n.ome.tif", labels, like))
    assert back.spacing == pytest.approx((3000.0, 800.0, 700.0), rel=1e-6) and back.unit == "micrometer"
    np.testing.assert_array_equal(np.asarray(back), labels)
    writer = OmeTiffSlabWriter(tmp_path / "half.ome.tif", like.shape, np.uint8, like.spacing, like.unit)
    writer[0:3] = labels[0:3]
    with pytest.raises(OutputError, match="only 3 of 7 slices"):
        writer.close()
    assert list(tmp_path.glob("*half*")) == []


def test_nifti_labels_of_other_inputs_have_a_diagonal_affine_in_their_unit(tmp_path, rng):
    like = open_volume(ome_tiff(tmp_path / "in.ome.tif", rng.integers(0, 9, ZYX, dtype=np.uint8), "ZYX"))
    labels = rng.integers(0, 3, ZYX, dtype=np.uint8)
    writer = label_writer(tmp_path / "l.nii.gz", like, np.uint8)
    writer[0:12] = labels
    writer.close()
    out = nib.load(tmp_path / "l.nii.gz")
    np.testing.assert_allclose(out.affine, np.diag([0.5, 0.5, 3.0, 1.0]))
    assert out.header.get_xyzt_units()[0] == "micron"
    np.testing.assert_array_equal(np.asarray(out.dataobj), labels.transpose(2, 1, 0))


def test_pyramid_is_in_plane_only_while_z_is_coarse():
    assert level_factors(3, 4, SPACING) == [(1, 2, 2), (1, 2, 2), (2, 2, 2)]  # z 3.0 vs 0.5 -> 1.0 -> 2.0
    assert level_factors(3, 3, (1.0, 1.0, 1.0)) == [(2, 2, 2), (2, 2, 2)]
    assert level_factors(2, 3, (0.5, 0.25)) == [(2, 2), (2, 2)]


@pytest.mark.parametrize("spacing,expected", [
    (SPACING, [(12, 20, 24), (12, 10, 12), (12, 5, 6)]),
    ((1.0, 1.0, 1.0), [(12, 20, 24), (6, 10, 12), (3, 5, 6)]),
])
def test_ome_zarr_label_volumes_keep_the_scale_and_slabs(tmp_path, rng, spacing, expected):
    labels = rng.integers(0, 3, ZYX, dtype=np.uint8)
    path = tmp_path / "l.ome.zarr"
    with OmeZarrLabelsWriter(path, ZYX, np.uint8, (5, 8, 8), levels=3, class_names=["bg", "a", "b"],
                             colors=[(0, 0, 0), (255, 0, 0), (0, 0, 255)], pixel_size=spacing,
                             unit="micrometer") as writer:
        writer[0:7] = labels[0:7]  # slabs that do not meet chunk boundaries
        writer[7:12] = labels[7:12]
    group = zarr.open_group(str(path), mode="r")
    ms = dict(group.attrs)["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["unit"] == "micrometer" for a in ms["axes"])
    levels = [np.asarray(group[d["path"]]) for d in ms["datasets"]]
    assert [lv.shape for lv in levels] == expected
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales[0] == pytest.approx(list(spacing))
    for level, scale in zip(levels, scales, strict=True):  # each level's scale spans the same physical extent
        step = [round(s / b) for s, b in zip(scale, spacing, strict=True)]
        assert [-(-n // f) for n, f in zip(ZYX, step, strict=True)] == list(level.shape)
        np.testing.assert_array_equal(level, labels[:: step[0], :: step[1], :: step[2]])
    assert dict(group.attrs)["image-label"]["colors"][2]["rgba"] == [0, 0, 255, 255]
    back = open_volume(path)
    assert back.spacing == pytest.approx(spacing) and back.unit == "micrometer"
