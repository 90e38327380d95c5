"""The plan of a tiled prediction: everything one run needs, resolved for one image and model (no "auto" left,
no run state). Plain frozen data, so it travels to Dask workers; the model's
:class:`~unetseg.engines.graph.InferenceGraph` is built (and cached) where it runs."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from ..data.labels import nodata_label as resolve_nodata_label
from ..data.nodata import needs_check, resolve_nodata
from ..data.normalization import Normalization
from ..engines.contract import ForwardSpec, InvalidRule
from ..engines.graph import InferenceGraph, inference_graph, model_device
from ..engines.quantize import QuantizedModel
from ..engines.registry import quantized_model
from ..engines.tta import Transform, resolve_tta, tta_transforms
from ..errors import UnetsegError
from ..models.base import SegmentationModel
from ..models.ensemble import member_count
from ..models.geometry import Geometry
from ..models.precision import Precision, resolve_precision
from .autotile import auto_batch_size, engine_and_tile, model_key, seconds_per_tile
from .calibration import calibration_tiles
from .forward import Views
from .grid import TileGrid, warn_wasteful
from .options import DEFAULTS, TileOptions
from .result import TileReport
from .splitter import travel_dtype

# compile="auto" compiles when the image's estimated eager time exceeds this: compiling costs ~5-20 s on a
# 2-core CPU (cold cache) and saves ~10-20 % of each forward, so it pays back on minutes of work.
COMPILE_AFTER_SECONDS = 120.0
MIN_TILES_TO_COMPILE = 16  # below this the estimate is not worth its two timing forwards


def image_channels(image: Any) -> int:
    shape = tuple(image.shape)
    if len(shape) == 2:
        return 1
    if len(shape) == 3:
        return int(shape[2])
    raise UnetsegError(f"image must be HxW or HxWxC, got shape {shape}")


def invalid_rule(model: nn.Module, image: Any, nodata: Any) -> InvalidRule | None:
    """The invalid-pixel rule for ``image``, or None when none of its pixels can be invalid.

    ``nodata`` "auto": the image's own ``nodata`` attribute (a file's GDAL_NODATA tag, e.g. from
    :func:`unetseg.io.open_image`), else the value the checkpoint was trained with; the checkpoint's band rule.
    """
    trained = model.meta.nodata if isinstance(model, SegmentationModel) else None
    value = resolve_nodata(nodata, getattr(image, "nodata", None), trained)
    if not needs_check(image.dtype, value):
        return None
    return InvalidRule(value, trained.rule if trained is not None else "any")


@dataclass(frozen=True)
class TilePlan:
    """One tiled prediction, resolved: the tile grid (geometry, halo), batch size, blending, border mode, TTA,
    output kind, precision, device, normalisation, whether to compile, the invalid-pixel rule (None: no pixel
    of this image can be invalid), the label of invalid pixels (None: decided from the model's output), the
    engine that runs the model, with its int8 model under amp="int8", and what the forward stage computes on the
    device (:class:`~unetseg.engines.contract.ForwardSpec`: the raw tiles' dtype, the normalisation, labels or
    probabilities)."""

    grid: TileGrid
    batch_size: int
    blend: str
    pad_mode: str
    tta: str | None
    output: str
    precision: Precision
    device: torch.device
    normalization: Normalization
    compile: bool
    invalid: InvalidRule | None
    nodata_label: int | None
    spec: ForwardSpec
    engine: str = "torch"
    quantized: QuantizedModel | None = None

    @property
    def transforms(self) -> list[Transform]:
        return tta_transforms(self.tta)

    def on_grid(self, grid: TileGrid) -> TilePlan:
        """The same plan over another grid (a Dask block's tiles)."""
        return replace(self, grid=grid)

    def report(self, compiled: bool | None = None) -> TileReport:
        """The settings as a summary records them; ``compiled``: whether the graph really ran compiled."""
        return TileReport(self.grid.tile_shape, self.grid.rows.context, self.grid.num_tiles, self.batch_size,
                          self.precision.name, str(self.device), self.compile if compiled is None else compiled,
                          None if self.invalid is None else self.invalid.nodata, self.engine, self.tta)


def plan_tiles(model: nn.Module, image: Any, options: TileOptions = DEFAULTS) -> TilePlan:
    """Check ``options`` against ``model`` and ``image`` and resolve every "auto" (timing tile sizes on this
    model if need be); the grid covers the whole image. Bad combinations are one-line UnetsegErrors."""
    channels = image_channels(image)
    known = isinstance(model, SegmentationModel)
    options = model_options(model, options)
    if known and channels != model.in_channels:
        raise UnetsegError(f"image has {channels} channel(s) but the model expects {model.in_channels}")
    height, width = int(image.shape[0]), int(image.shape[1])
    if height < 1 or width < 1:
        raise UnetsegError(f"image is empty: shape {tuple(image.shape)}")
    norm, invalid, label, device = input_settings(model, image, options, channels)
    precision = resolve_precision(options.amp, device)
    geometry = Geometry.of(model)
    batch = auto_batch_size(device) if options.batch_size == "auto" else options.batch_size
    views = Views.of(model, options.output, len(tta_transforms(options.tta)))
    spec = ForwardSpec.of(norm, image.dtype, travel_dtype(image.dtype), channels, invalid=invalid,
                          labels=options.output == "labels" and options.blend == "crop", tta=options.tta,
                          spread=views.spread, entropy_channel=views.entropy_channel)
    graph = inference_graph(views.model, device, precision)
    key = model_key(model)
    choice = engine_and_tile(graph, key, (height, width), geometry, engine=options.engine,
                             tile_size=options.tile_size, spec=spec, batch_size=batch, halo=options.halo)
    engine_name = choice.engine
    grid = TileGrid.build((height, width), choice.tile, geometry, options.halo)
    warn_wasteful(grid, options.tile_size)
    compile = engine_name == "torch" and _should_compile(options.compile, graph, key, grid, spec, batch,
                                                         choice.seconds)
    quantized = None
    if precision.int8 and "uncertainty" in options.output and member_count(model) > 1:
        raise UnetsegError("amp='int8' quantises the ensemble's averaged output, which cannot give its members' "
                           "disagreement; run the uncertainty output with amp='auto' or False")
    if precision.int8:
        quantized = quantized_model(graph, grid.tile_shape, lambda: calibration_tiles(
            image, grid.tile_shape, norm, options.pad_mode, invalid))
    return TilePlan(grid, batch, options.blend, options.pad_mode, options.tta, options.output, precision, device,
                    norm, compile, invalid, label, spec, engine_name, quantized)


def input_settings(model: nn.Module, image: Any, options: TileOptions, channels: int, what: str = "image"
                   ) -> tuple[Normalization, InvalidRule | None, int | None, torch.device]:
    """What the input needs, checked against the model before any work: the normalisation (the option, else the
    checkpoint's, else by dtype), the invalid-pixel rule, the label of invalid pixels (a colliding one refused)
    and the device."""
    known = isinstance(model, SegmentationModel)
    norm = options.normalization or (model.normalization if known else None) or Normalization()
    norm = norm.resolve(image, int(getattr(model, "spatial_dims", 2)))  # per-image statistics (zscore)
    if len(norm.mean) not in (1, channels):
        raise UnetsegError(f"normalization has {len(norm.mean)} channel statistics but the {what} has {channels} "
                           "channels")
    invalid = invalid_rule(model, image, options.nodata)
    label = options.nodata_label
    if known and invalid is not None:
        label = resolve_nodata_label(model.num_classes, label)
    device = torch.device(options.device) if options.device is not None else model_device(model)
    return norm, invalid, label, device


def model_options(model: nn.Module, options: TileOptions) -> TileOptions:
    """``options`` with what ``model`` decides: tta="auto" its tuned TTA (:func:`unetseg.engines.tta.resolve_tta`),
    and the engine and tile size of a deployed model (:func:`deployed_options`)."""
    return deployed_options(model, replace(options, tta=resolve_tta(model, options.tta)))


def deployed_options(model: nn.Module, options: TileOptions) -> TileOptions:
    """``options`` for a model that runs on certain engines only (an exported OpenVINO IR,
    :class:`unetseg.models.deployed.IRModel`): engine="auto" becomes its engine, tile_size="auto" the only size a
    valid-padding IR takes; another engine, another tile size or amp='int8' is a one-line UnetsegError."""
    runs_on = getattr(model, "runs_on", None)
    if not runs_on:
        return options
    source = getattr(model, "source", "the model")
    if options.engine != "auto" and options.engine not in runs_on:
        raise UnetsegError(f"{source}: an OpenVINO IR runs on engine={runs_on[0]!r}, not {options.engine!r}")
    if options.amp == "int8":
        raise UnetsegError(f"{source}: amp='int8' quantises a checkpoint; an IR is quantised once by "
                           "`unetseg export --format openvino-int8`")
    fixed = getattr(model, "fixed_size", None)
    if fixed and options.tile_size not in ("auto", fixed):
        raise UnetsegError(f"{source}: this valid-padding IR takes tiles of {fixed} px only (its export size), "
                           f"not tile_size={options.tile_size}")
    return replace(options, engine=runs_on[0] if options.engine == "auto" else options.engine,
                   tile_size=fixed or options.tile_size)


def _should_compile(compile: bool | str, graph: InferenceGraph, key: str, grid: TileGrid, spec: ForwardSpec,
                    batch: int, estimate: float | None) -> bool:
    """compile="auto": True when the image's eager time (``estimate``, seconds, when the choice of engine and tile
    measured it; else timed here) exceeds :data:`COMPILE_AFTER_SECONDS`."""
    if isinstance(compile, bool):
        return compile
    if grid.num_tiles < MIN_TILES_TO_COMPILE:
        return False
    if estimate is None:
        seconds = seconds_per_tile(graph, key, grid.tile_shape, spec=spec, batch_size=batch)
        estimate = None if seconds is None else seconds * grid.num_tiles
    return estimate is not None and estimate > COMPILE_AFTER_SECONDS
