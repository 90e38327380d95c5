"""Deprecated alias (until 0.2): ``unetseg.inference`` became :mod:`unetseg.tiling` (the tiler),
:mod:`unetseg.engines`, :mod:`unetseg.objects`, :mod:`unetseg.scale` and :mod:`unetseg.export` (the deployable
graph). Its public names still resolve here, with a :class:`DeprecationWarning` naming the new home."""
from __future__ import annotations

import importlib
import warnings
from typing import Any

MOVED = {name: "unetseg.tiling" for name in (
    "DEFAULTS", "Band", "BandSink", "NoValidPixel", "TileOptions", "TileReport", "TiledResult", "input_pixels",
    "predict_tiled", "probs_to_labels", "run_tiles", "tiled", "to_labels")} | {
    name: "unetseg.export.deploy" for name in ("DeployedModel", "calibration_tiles_from", "openvino_model")}

__all__: list[str] = []


def __getattr__(name: str) -> Any:
    if name not in MOVED:
        raise AttributeError(f"module 'unetseg.inference' has no attribute {name!r} (the package moved: "
                             "see unetseg.tiling, unetseg.engines, unetseg.objects, unetseg.scale)")
    warnings.warn(f"unetseg.inference.{name} moved to {MOVED[name]}.{name}; the alias goes in 0.2",
                  DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(MOVED[name]), name)
