"""Scratch arrays: what goes in comes back, for every dtype the object passes park (labels, levels, seeds)."""
import numpy as np
import pytest

from unetseg.io.scratch import ScratchArrays


@pytest.mark.parametrize("dtype", ["u1", "i1", "?", "<i4", ">u2", "<f4", "<i8"])
def test_arrays_come_back_equal_with_their_dtype_and_shape(tmp_path, rng, dtype):
    array = (rng.random((7, 5)) * 100).astype(dtype)
    with ScratchArrays.beside(tmp_path / "out.tif") as scratch:
        scratch.put("levels0", array)
        scratch.put(3, array[:0])
        back = scratch.get("levels0")
        assert back.dtype == array.dtype and back.shape == (7, 5)
        np.testing.assert_array_equal(back, array)
        assert scratch.get(3).shape == (0, 5)
    assert not scratch.folder.exists()
