"""Invalid pixels: the one rule that decides which image pixels hold no data.

A pixel is invalid where any band (``rule="any"``, the default) or every band (``rule="all"``) equals the
nodata value, or is not finite (NaN and +-Inf are invalid whatever the nodata setting). Normalisation
statistics, training labels, tiled prediction and the prediction summary all ask :func:`valid_mask`.

The nodata *setting* (``data.nodata``, ``predict_tiled(nodata=...)``, ``--nodata``) is ``"auto"`` (the
file's GDAL_NODATA tag, else the value the checkpoint was trained with), a number, or None (only NaN/Inf).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import UnetsegError

NODATA_RULES = ("any", "all")


def needs_check(dtype: Any, nodata: float | None) -> bool:
    """False when no pixel of ``dtype`` can be invalid: an integer image without a nodata value it can hold."""
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        return True
    if nodata is None or not math.isfinite(nodata) or nodata != round(nodata):
        return False
    info = np.iinfo(dtype)
    return info.min <= nodata <= info.max


def valid_mask(image: np.ndarray, nodata: float | None, rule: str = "any") -> np.ndarray:
    """HxW bool, True where the pixel holds data.

    Args:
        image: HxW or HxWxC array of any numeric dtype.
        nodata: the nodata value (compared in the image's dtype), or None: only NaN/Inf are invalid.
        rule: ``"any"`` (default): invalid where any band is nodata; ``"all"``: where every band is. A NaN/Inf in
            any band makes the pixel invalid under either rule (the model cannot take it).
    """
    if rule not in NODATA_RULES:
        raise UnetsegError(f"nodata rule {rule!r} is not one of {', '.join(NODATA_RULES)}")
    image = np.asarray(image)
    shape = image.shape[:2]
    if not needs_check(image.dtype, nodata):
        return np.ones(shape, bool)
    bands = image.reshape(shape[0], shape[1], -1)
    bad = np.zeros(shape, bool) if np.issubdtype(image.dtype, np.integer) else ~np.isfinite(bands).all(axis=2)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        equal = bands == nodata
        bad |= equal.any(axis=2) if rule == "any" else equal.all(axis=2)
    return ~bad


def invalid_pixels(tiles: torch.Tensor, nodata: float | None, rule: str = "any") -> torch.Tensor:
    """:func:`valid_mask`'s rule, negated, on a batch of raw tiles on any device: N x H x W x C (the image's own
    dtype) -> N x H x W bool, True where the pixel holds no data."""
    if rule not in NODATA_RULES:
        raise UnetsegError(f"nodata rule {rule!r} is not one of {', '.join(NODATA_RULES)}")
    floating = tiles.is_floating_point()
    bad = (~torch.isfinite(tiles)).any(-1) if floating else torch.zeros(tiles.shape[:-1], dtype=torch.bool,
                                                                         device=tiles.device)
    holdable = floating or needs_check(torch.empty(0, dtype=tiles.dtype).numpy().dtype, nodata)
    if nodata is not None and not math.isnan(nodata) and holdable:
        # compared in the tiles' own dtype (an integer image's nodata is an integer it can hold: needs_check)
        equal = tiles == (torch.tensor(nodata, dtype=tiles.dtype) if floating else int(nodata))
        bad |= equal.any(-1) if rule == "any" else equal.all(-1)
    return bad


@dataclass(frozen=True)
class Nodata:
    """A nodata setting as stored in a checkpoint: ``setting`` ("auto" | number | None), the ``value`` it
    resolved to on the training files (None when none), and the band ``rule``."""

    setting: str | float | None = "auto"
    value: float | None = None
    rule: str = "any"

    def to_dict(self) -> dict[str, Any]:
        return {"setting": self.setting, "value": self.value, "rule": self.rule}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Nodata:
        if not data:
            return cls()
        return cls(data.get("setting", "auto"), data.get("value"), data.get("rule", "any"))


def resolve_nodata(setting: Any, file_value: float | None, trained: Nodata | None = None) -> float | None:
    """The nodata value to apply to one image.

    ``setting`` "auto": the file's own tag (``file_value``), else the checkpoint's (``trained``): its value when
    it was trained with "auto" or a number, none when it was trained with nodata switched off. A number: that
    number. None: no nodata value (NaN/Inf stay invalid).
    """
    if setting is None or isinstance(setting, (int, float)):
        return None if setting is None else float(setting)
    if setting != "auto":
        raise UnetsegError(f"nodata={setting!r} must be 'auto', a number or None")
    if trained is not None and trained.setting is None:
        return None
    if file_value is not None:
        return float(file_value)
    return None if trained is None else trained.value


def check_has_valid(valid: np.ndarray, name: Any) -> None:
    """One-line error naming ``name`` when ``valid`` has no True pixel."""
    if not valid.any():
        raise UnetsegError(f"{name}: no valid pixel (every pixel is nodata, NaN or Inf)")


def fill_value(mean_raw: np.ndarray, dtype: Any) -> np.ndarray:
    """Per-band fill for invalid pixels in the image's own units: the mean, rounded for integer dtypes."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(mean_raw), info.min, info.max).astype(dtype)
    return np.asarray(mean_raw, dtype)


def fill_invalid(image: np.ndarray, valid: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """``image`` with its invalid pixels set to ``fill`` (one value per band); the input is not modified."""
    if valid.all():
        return image
    out = image.copy()
    out[~valid] = fill if out.ndim == 3 else fill.reshape(-1)[0]
    return out
