import numpy as np
import pytest
import zarr

from unetseg.errors import UnetsegError
from unetseg.tiling.padding import PAD_MODES, gather_window, source_indices


@pytest.mark.parametrize("mode", PAD_MODES)
@pytest.mark.parametrize("n", [1, 2, 5, 37])
def test_index_map_equals_np_pad_for_pads_larger_than_the_image(mode, n):
    values = np.arange(1, n + 1)
    before, after = 3 * n + 4, 2 * n + 7
    if mode == "constant":
        expected = np.pad(values, (before, after), mode="constant")
        idx = source_indices(-before, n + after, n, mode)
        got = np.where(idx >= 0, values[np.clip(idx, 0, None)], 0)
    else:
        expected = np.pad(values, (before, after), mode=mode)
        got = values[source_indices(-before, n + after, n, mode)]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("mode", PAD_MODES)
def test_gather_window_matches_padded_image_for_numpy_and_zarr(rng, mode):
    image = rng.integers(0, 255, (37, 60, 3), dtype=np.uint8)
    padded = np.pad(image, ((200, 200), (150, 150), (0, 0)), mode=mode)
    lazy = zarr.array(image, chunks=(16, 16, 3))
    for rows, cols in [((-200, 237), (-150, 210)), ((-120, -90), (10, 205)), ((5, 20), (7, 50))]:
        expected = padded[rows[0] + 200 : rows[1] + 200, cols[0] + 150 : cols[1] + 150]
        np.testing.assert_array_equal(gather_window(image, rows, cols, mode), expected)
        np.testing.assert_array_equal(gather_window(lazy, rows, cols, mode), expected)


def test_gather_window_reads_one_bounding_box():
    reads = []

    class Recorder:
        shape, dtype = (37, 1500), np.dtype(np.uint8)

        def __getitem__(self, key):
            reads.append(key)
            return np.zeros((key[0].stop - key[0].start, key[1].stop - key[1].start), np.uint8)

    gather_window(Recorder(), (-92, 37 + 300), (-92, 600), "reflect")
    assert reads == [(slice(0, 37), slice(0, 600))]


def test_unknown_pad_mode_is_a_user_error():
    with pytest.raises(UnetsegError, match="wrap"):
        source_indices(0, 3, 3, "wrap")
