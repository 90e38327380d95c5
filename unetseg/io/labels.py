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
