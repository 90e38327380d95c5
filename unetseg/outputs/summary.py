"""The JSON summary of one prediction: image size, the settings used, per-class pixel counts, invalid pixels."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..tiling.result import TiledResult


def summary(result: TiledResult, shape: Sequence[int], names: Sequence[str], settings: dict[str, Any],
            nodata_label: int | None = None, colors: Sequence[Sequence[int]] | None = None) -> dict[str, Any]:
    """JSON-able summary: image size, valid pixels, ``settings`` (options, input, the resolved tile settings),
    then (when pixels may be invalid: ``nodata_label`` set) the nodata label and invalid-pixel count, then each
    class's name, display colour (RGB, when ``colors`` are given), pixel count and fraction of the valid pixels:
    what a viewer needs to show the maps (:mod:`unetseg.napari`)."""
    total = result.valid_pixels
    classes = [
        {"id": i, "name": names[i] if i < len(names) else f"class{i}",
         **({"color": [int(v) for v in colors[i]]} if colors is not None and i < len(colors) else {}),
         "pixels": int(n),
         "fraction": float(n) / total if total else 0.0}
        for i, n in enumerate(result.class_counts)
    ]
    invalid = {} if nodata_label is None else {"nodata_label": nodata_label, "nodata_pixels": result.invalid_pixels}
    return {"height": int(shape[0]), "width": int(shape[1]), "pixels": total, **settings, **invalid,
            "classes": classes}
