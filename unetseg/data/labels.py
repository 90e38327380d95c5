"""The one rule for label maps: how many label values a model's output takes, the label of invalid pixels,
and the integer type of a map that holds them. Every writer and both prediction paths (one process, Dask)
ask :func:`map_dtype`."""
from __future__ import annotations

import numpy as np

from ..errors import UnetsegError


def num_labels(num_classes: int) -> int:
    """Label values a model of ``num_classes`` output channels predicts: K (argmax), or 2 for one channel
    (sigmoid > 0.5 gives 0 or 1)."""
    return max(int(num_classes), 2)


def label_dtype(num_labels: int) -> np.dtype:
    """Smallest unsigned type holding labels ``0..num_labels-1``: uint8 (<= 256), uint16 (<= 65536), else uint32."""
    if num_labels <= 256:
        return np.dtype(np.uint8)
    if num_labels <= 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def nodata_label(num_classes: int, label: int | None = None) -> int:
    """The label of invalid (nodata) pixels in a map of ``num_classes`` classes: ``label`` if given, else 255
    (uint8 maps, up to 255 labels) or 65535 (uint16 maps). A label that is a class id (or the positive label
    of a one-channel model), or does not fit a uint16 map, is a one-line UnetsegError."""
    n = num_labels(num_classes)
    value = (255 if n <= 255 else 65535) if label is None else int(label)
    if value < n or value > 65535:
        raise UnetsegError(f"nodata label {value} collides with the {n} label values 0..{n - 1} or does not fit "
                           "a 16-bit map; choose a value >= the number of classes and <= 65535")
    return value


def map_dtype(num_classes: int, nodata: int | None = None) -> np.dtype:
    """The dtype of a label map of a ``num_classes`` model holding, if not None, the ``nodata`` label too."""
    return label_dtype(max(num_labels(num_classes), 0 if nodata is None else nodata + 1))


def label_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels per label value ``0..num_labels(num_classes)-1`` (int64); labels at or above that (the nodata
    label) are not counted, so the sum is the number of valid pixels."""
    n = num_labels(num_classes)
    return np.bincount(np.asarray(labels).ravel(), minlength=n)[:n].astype(np.int64, copy=False)
