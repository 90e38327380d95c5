"""The JSON summary of one prediction: image size, the settings used, per-class pixel counts."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def class_counts(bands: Iterable[np.ndarray], num_classes: int) -> np.ndarray:
    """Per-class pixel counts (int64, length >= num_classes) over label bands (or one whole label map)."""
    counts = np.zeros(num_classes, np.int64)
    for band in bands:
        c = np.bincount(np.asarray(band).ravel(), minlength=num_classes)
        if len(c) > len(counts):
            counts = np.concatenate([counts, np.zeros(len(c) - len(counts), np.int64)])
        counts[: len(c)] += c
    return counts


def summary(shape: Sequence[int], counts: np.ndarray, names: Sequence[str], **settings: Any) -> dict[str, Any]:
    """JSON-able summary: image size, the given settings (tile size, ...), per-class pixel counts and fractions."""
    total = int(counts.sum())
    classes = [
        {"id": i, "name": names[i] if i < len(names) else f"class{i}", "pixels": int(n),
         "fraction": float(n) / total if total else 0.0}
        for i, n in enumerate(counts)
    ]
    return {"height": int(shape[0]), "width": int(shape[1]), "pixels": total, **settings, "classes": classes}
