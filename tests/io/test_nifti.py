"""NIfTI volumes: lazy (Z, Y, X) reads of nibabel's (X, Y, Z) files, labels written slab by slab with the input's
affine, qform/sform codes, spacing and axis order, atomically and checked; one-line errors for bad files."""
import nibabel as nib
import numpy as np
import pytest

from unetseg.errors import OutputError, UnetsegError
from unetseg.io.nifti import label_writer, open_nifti, write_nifti, write_nifti_labels

# an oblique-free but non-identity orientation (axes permuted and flipped) with anisotropic voxels
AFFINE = np.array([[0.0, 0.0, -3.0, 10.0], [0.0, 0.8, 0.0, -20.0], [0.7, 0.0, 0.0, 5.0], [0.0, 0.0, 0.0, 1.0]])


def saved(tmp_path, data, name="vol.nii.gz", affine=AFFINE, slope=None):
    image = nib.Nifti1Image(data, affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=4)
    if slope is not None:
        image.header.set_slope_inter(slope, 10.0)
    nib.save(image, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz"])
def test_reads_are_lazy_windows_in_zyx_order(tmp_path, rng, name):
    data = rng.integers(-500, 1500, (11, 13, 7), dtype=np.int16)  # nibabel's (X, Y, Z)
    volume = open_nifti(saved(tmp_path, data, name))
    zyx = data.transpose(2, 1, 0)
    assert volume.shape == (7, 13, 11) and volume.dtype == np.int16
    assert volume.spacing == pytest.approx((3.0, 0.8, 0.7))
    np.testing.assert_array_equal(volume[2:5, 3:9, 1:4], zyx[2:5, 3:9, 1:4])
    np.testing.assert_array_equal(np.asarray(volume), zyx)


def test_scaled_values_read_as_float32(tmp_path, rng):
    data = rng.integers(0, 100, (6, 5, 4), dtype=np.int16)
    volume = open_nifti(saved(tmp_path, data, slope=0.5))
    assert volume.dtype == np.float32
    np.testing.assert_allclose(volume[:, :, :], data.transpose(2, 1, 0) * 0.5 + 10.0)


@pytest.mark.parametrize("name", ["labels.nii", "labels.nii.gz"])
def test_labels_keep_the_inputs_geometry(tmp_path, rng, name):
    volume = open_nifti(saved(tmp_path, rng.random((11, 13, 7), dtype=np.float32)))
    labels = rng.integers(0, 3, volume.shape, dtype=np.uint8)
    write_nifti_labels(tmp_path / name, labels, volume)
    out = nib.load(tmp_path / name)
    assert out.shape == (11, 13, 7) and out.get_data_dtype() == np.uint8
    np.testing.assert_allclose(out.affine, AFFINE)
    assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 4
    np.testing.assert_allclose(out.header.get_zooms(), (0.7, 0.8, 3.0), rtol=1e-6)
    assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(AFFINE)
    np.testing.assert_array_equal(np.asarray(out.dataobj), labels.transpose(2, 1, 0))
    assert out.header.get_intent()[0] == "label"


def test_slab_writer_streams_and_leaves_nothing_when_stopped(tmp_path, rng):
    volume = open_nifti(saved(tmp_path, rng.random((8, 9, 10), dtype=np.float32)))
    labels = rng.integers(0, 5, volume.shape, dtype=np.uint8)
    writer = label_writer(tmp_path / "l.nii.gz", volume, np.uint8)
    writer[0:4] = labels[0:4]
    with pytest.raises(ValueError, match="in order"):
        writer[6:10] = labels[6:10]
    writer[4:10] = labels[4:10]
    writer.close()
    np.testing.assert_array_equal(open_nifti(tmp_path / "l.nii.gz")[:, :, :], labels)
    stopped = label_writer(tmp_path / "s.nii.gz", volume, np.uint8)
    stopped[0:3] = labels[0:3]
    with pytest.raises(OutputError, match="only 3 of 10 slices"):
        stopped.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.nii.gz", "vol.nii.gz"]  # no temporary left


def test_write_nifti_round_trip(tmp_path, rng):
    data = rng.integers(0, 255, (5, 6, 7), dtype=np.uint8)
    write_nifti(tmp_path / "v.nii.gz", data, AFFINE)
    volume = open_nifti(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(volume[:, :, :], data)
    np.testing.assert_allclose(volume.affine, AFFINE)
    assert volume.spacing == pytest.approx((3.0, 0.8, 0.7))


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz"])
def test_write_nifti_with_channels_round_trips_through_nibabel_and_the_reader(tmp_path, rng, name):
    data = rng.normal(size=(5, 6, 7, 2)).astype(np.float32)
    write_nifti(tmp_path / name, data, AFFINE)
    image = nib.load(tmp_path / name)
    assert image.shape == (7, 6, 5, 2)  # (X, Y, Z, C) in nibabel
    np.testing.assert_array_equal(np.asarray(image.dataobj)[..., 1], data[..., 1].transpose(2, 1, 0))
    volume = open_nifti(tmp_path / name)
    assert volume.shape == (5, 6, 7, 2)
    np.testing.assert_array_equal(volume[1:4, :, 2:5], data[1:4, :, 2:5])
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_bad_files_are_one_line_errors(tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    for path, message in [(tmp_path / "broken.nii.gz", "not a readable NIfTI"), (tmp_path / "none.nii", "no such")]:
        with pytest.raises(UnetsegError, match=message) as err:
            open_nifti(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)
    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.uint8), np.eye(4)), tmp_path / "flat.nii")
    with pytest.raises(UnetsegError, match="must be 3D"):
        open_nifti(tmp_path / "flat.nii")
