"""The options of a tiled prediction, each default defined once (:class:`TileOptions`), checked as they come in.

:func:`unetseg.predict_tiled`'s keyword defaults, ``predict_dask``'s ``**options``, the CLI's defaults and the
summary's record of them all read :data:`DEFAULTS`.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, fields
from typing import Any

import torch

from ..data.normalization import Normalization
from ..engines.registry import check_engine
from ..engines.tta import check_tta
from ..errors import UnetsegError
from ..models.geometry import parse_halo, setting
from ..models.precision import amp_choice
from .padding import check_pad_mode

BLENDS = ("crop", "gaussian")
# what a prediction hands out: labels; + probabilities; + uncertainty (predictive entropy and the disagreement of
# an ensemble's members or TTA's views); "probs+uncertainty" feeds a band sink (the outputs layer) both
OUTPUTS = ("labels", "probs", "uncertainty", "probs+uncertainty")
COMPILE_CHOICES = ("auto", "on", "off")
# options a prediction summary records (next to the settings the run resolved them to)
RECORDED = ("tile_size", "batch_size", "tta", "halo", "amp", "engine")


def int_or_auto(value: Any, name: str) -> int | str:
    """``value`` if it is "auto" or a positive integer (ints, numpy integers, or their decimal text from a
    command line; not floats or bools); else a one-line UnetsegError naming ``name``."""
    if isinstance(value, str) and value == "auto":
        return value
    try:
        number = int(value, 10) if isinstance(value, str) else operator.index(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or isinstance(value, bool):
        raise UnetsegError(f"{setting(name, value)} must be a positive integer or 'auto'")
    return number


def compile_choice(value: Any) -> bool | str:
    """``compile``: True, False or "auto" (the CLI's "on"/"off" mean True/False)."""
    value = {"on": True, "off": False}.get(value, value) if isinstance(value, str) else value
    if not isinstance(value, bool) and value != "auto":
        raise UnetsegError(f"compile={value!r} must be True, False or 'auto'")
    return value


@dataclass(frozen=True)
class TileOptions:
    """What a caller may set for a tiled prediction; see :func:`unetseg.predict_tiled` for each one's meaning.

    Checked on creation (a bad value is a one-line UnetsegError naming it); "auto" values are resolved per
    image and model by :func:`unetseg.tiling.plan.plan_tiles`.
    """

    tile_size: int | str = "auto"
    batch_size: int | str = "auto"
    blend: str = "crop"
    pad_mode: str = "reflect"
    halo: int | str = "auto"
    tta: str | None = "auto"
    output: str = "labels"
    amp: str | bool | None = "auto"
    device: str | torch.device | None = None
    normalization: Normalization | None = None
    compile: bool | str = "auto"
    nodata: Any = "auto"
    nodata_label: int | None = None
    engine: str = "auto"

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the values once, here
        set_(self, "tile_size", int_or_auto(self.tile_size, "tile_size"))
        set_(self, "batch_size", int_or_auto(self.batch_size, "batch_size"))
        set_(self, "halo", parse_halo(self.halo))
        set_(self, "compile", compile_choice(self.compile))
        if self.blend not in BLENDS:
            raise UnetsegError(f"blend={self.blend!r} is not one of {', '.join(BLENDS)}")
        if self.output not in OUTPUTS:
            raise UnetsegError(f"output={self.output!r} is not one of {', '.join(OUTPUTS)}")
        check_pad_mode(self.pad_mode)
        check_tta(self.tta)
        check_engine(self.engine)
        amp_choice(self.amp)
        if self.nodata_label is not None:
            try:
                set_(self, "nodata_label", operator.index(self.nodata_label))
            except TypeError:
                raise UnetsegError(f"nodata_label={self.nodata_label!r} must be an integer") from None
        if self.normalization is not None and not isinstance(self.normalization, Normalization):
            raise UnetsegError(f"normalization= must be a unetseg Normalization, got {type(self.normalization).__name__}")

    @classmethod
    def of(cls, where: str, **options: Any) -> TileOptions:
        """Options given by name to ``where`` (e.g. "predict_dask"); an unknown name is a one-line UnetsegError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UnetsegError(f"{where} does not take {', '.join(f'{n}=' for n in unknown)} "
                               f"(options: {', '.join(sorted(known))})")
        return cls(**options)

    def recorded(self) -> dict[str, Any]:
        """The options a prediction summary records, as given (``tile_size``, ``batch_size``, ``tta``, ``halo``,
        ``amp``, ``engine``)."""
        return {name: getattr(self, name) for name in RECORDED}


DEFAULTS = TileOptions()
