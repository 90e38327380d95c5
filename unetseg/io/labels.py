"""The one rule for the integer type of a label map."""
from __future__ import annotations

import numpy as np


def label_dtype(num_labels: int) -> np.dtype:
    """Smallest unsigned type holding labels ``0..num_labels-1``: uint8 (<= 256), uint16 (<= 65536), else int32."""
    if num_labels <= 256:
        return np.dtype(np.uint8)
    if num_labels <= 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def nodata_label(num_classes: int, label: int | None = None) -> int:
    """The label of invalid (nodata) pixels in a map of ``num_classes`` classes: ``label`` if given, else 255
    (uint8 maps, up to 255 classes) or 65535 (uint16 maps). A label that is a class id, or does not fit a
    uint16 map, is a one-line UnetsegError."""
    from ..errors import UnetsegError

    value = (255 if num_classes <= 255 else 65535) if label is None else int(label)
    if value < num_classes or value > 65535:
        raise UnetsegError(f"nodata label {value} collides with the {num_classes} class ids 0..{num_classes - 1} or "
                           "does not fit a 16-bit map; choose a value >= the number of classes and <= 65535")
    return value


def map_dtype(num_classes: int, nodata: int | None) -> np.dtype:
    """The dtype of a label map holding ``num_classes`` classes and, if not None, the ``nodata`` label."""
    return label_dtype(max(num_classes, 0 if nodata is None else nodata + 1))
