"""The one rule for label maps: label values, the nodata label and the map dtype."""
import numpy as np
import pytest

from unetseg.data.labels import label_counts, map_dtype, nodata_label, num_labels
from unetseg.errors import UnetsegError


@pytest.mark.parametrize("classes, nodata, dtype", [
    (1, None, np.uint8), (2, 255, np.uint8), (255, 255, np.uint8), (256, None, np.uint8),
    (256, 65535, np.uint16), (300, None, np.uint16), (300, 65535, np.uint16), (70000, None, np.uint32),
])
def test_map_dtype_holds_every_class_and_the_nodata_label(classes, nodata, dtype):
    assert map_dtype(classes, nodata) == dtype


def test_nodata_label_defaults_and_collisions():
    assert nodata_label(2) == 255 and nodata_label(255) == 255 and nodata_label(256) == 65535
    assert nodata_label(3, 7) == 7
    for classes, label in ((3, 2), (1, 1), (300, 255), (3, 70000)):  # a class id (or the sigmoid's 1), or too big
        with pytest.raises(UnetsegError, match=f"nodata label {label} collides"):
            nodata_label(classes, label)


def test_label_counts_leave_the_nodata_label_out():
    labels = np.array([[0, 1, 255], [1, 1, 255]], np.uint8)
    assert label_counts(labels, 3).tolist() == [1, 3, 0] and num_labels(1) == 2
    assert label_counts(np.array([[1, 0, 1]], np.uint8), 1).tolist() == [1, 2]  # one sigmoid channel: 0 and 1
