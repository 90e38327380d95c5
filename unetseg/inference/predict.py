"""``predict_tiled``: overlap-tile inference of an image of any size, in memory or streamed, without seams.

The pipeline: :mod:`.tiles` reads mirrored windows and batches them (in a background thread) ->
:mod:`.forward` runs the model (precision, TTA) -> :mod:`.stitch` keeps each tile's share and hands
finished row bands to the destination. :mod:`.grid` decides where the tiles go.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.nodata import Nodata, needs_check, resolve_nodata
from ..data.normalization import Normalization
from ..errors import UnetsegError
from ..io.labels import nodata_label as nodata_label_of
from ..models.base import SegmentationModel
from .amp import Precision, resolve_precision
from .autotile import auto_batch_size, auto_tile_size, model_key, seconds_per_tile
from .forward import TileForward
from .graph import InferenceGraph, inference_graph, model_device
from .grid import Geometry, TileGrid
from .padding import check_pad_mode
from .stitch import Stitcher
from .tiles import InvalidRule, prefetch, tile_batches
from .tta import Transform, tta_transforms

BLENDS = ("crop", "gaussian")
# compile="auto" compiles when the image's estimated eager time exceeds this: compiling costs ~5-20 s on a
# 2-core CPU (cold cache) and saves ~10-20 % of each forward, so it pays back on minutes of work.
COMPILE_AFTER_SECONDS = 120.0
MIN_TILES_TO_COMPILE = 16  # below this the estimate is not worth its two timing forwards
OUTPUTS = ("labels", "probs")


def image_channels(image: Any) -> int:
    shape = tuple(image.shape)
    if len(shape) == 2:
        return 1
    if len(shape) == 3:
        return int(shape[2])
    raise UnetsegError(f"image must be HxW or HxWxC, got shape {shape}")


def positive_int_or_auto(name: str, value: Any) -> int | str:
    """``value`` if it is "auto" or a positive integer (ints and numpy integers, not floats or strings)."""
    if isinstance(value, str) and value == "auto":
        return value
    try:
        number = operator.index(value)
    except TypeError:
        number = 0
    if number < 1:
        raise UnetsegError(f"{name}={value!r} must be a positive integer or 'auto'")
    return number


class NoValidPixel(UnetsegError):
    def __init__(self, nodata: Any) -> None:
        super().__init__(f"no valid pixel in the image (every pixel is nodata {nodata}, NaN or Inf)")


@dataclass(frozen=True)
class Settings:
    """Everything one tiled prediction runs with, resolved (no "auto" left). Plain data, so it travels to Dask
    workers; the model's :class:`~unetseg.inference.graph.InferenceGraph` is built (and cached) where it runs."""

    grid: TileGrid
    batch_size: int
    blend: str
    pad_mode: str
    transforms: list[Transform]
    output: str
    precision: Precision
    device: torch.device
    normalization: Normalization
    compile: bool
    invalid: InvalidRule | None  # None: no pixel of this image can be invalid (integer dtype, no nodata value)
    nodata_label: int | None

    def report(self) -> dict[str, Any]:
        """The settings a summary records (see ``report`` of :func:`predict_tiled`)."""
        return dict(tile_shape=list(self.grid.tile_shape), context=self.grid.rows.context,
                    num_tiles=self.grid.num_tiles, batch_size=self.batch_size, precision=self.precision.name,
                    device=str(self.device), compiled=self.compile,
                    nodata=None if self.invalid is None else self.invalid.nodata)


def invalid_rule(model: nn.Module, image: Any, nodata: Any) -> InvalidRule | None:
    """The invalid-pixel rule for ``image``, or None when none of its pixels can be invalid.

    ``nodata`` "auto": the image's own ``nodata`` attribute (a file's GDAL_NODATA tag, e.g. from
    :func:`unetseg.io.open_image`), else the value the checkpoint was trained with; the checkpoint's band rule.
    """
    meta = getattr(model, "meta", None) or {}
    trained = Nodata.from_dict(meta.get("nodata")) if meta.get("nodata") else None
    value = resolve_nodata(nodata, getattr(image, "nodata", None), trained)
    if not needs_check(image.dtype, value):
        return None
    return InvalidRule(value, trained.rule if trained is not None else "any")


def predict_tiled(
    model: nn.Module,
    image: Any,
    *,
    tile_size: int | str = "auto",
    batch_size: int | str = "auto",
    blend: str = "crop",
    pad_mode: str = "reflect",
    halo: int | str = "auto",
    tta: str | None = None,
    output: str = "labels",
    amp: str | bool | None = "auto",
    device: str | torch.device | None = None,
    normalization: Normalization | None = None,
    compile: bool | str = "auto",
    nodata: Any = "auto",
    nodata_label: int | None = None,
    progress: bool = False,
    out: Any = None,
    report: dict[str, Any] | None = None,
) -> Any:
    """Segment ``image`` of any size by overlap-tile inference; the result has no seams.

    Tiles start on multiples of ``model.stride`` and carry enough context that, with ``blend="crop"``,
    the result equals the model applied once to the whole mirror-padded image (up to float rounding).

    Args:
        model: a unetseg ``SegmentationModel`` (NCHW float -> NCHW logits), or any nn.Module doing the same
            (treated as same-padding with stride 32). Run in eval mode; the caller's mode and device are kept.
        image: HxW or HxWxC array, uint8/uint16/float, numpy or lazy (anything with ``.shape``, ``.dtype``
            and numpy slicing: zarr, :func:`unetseg.io.open_image`). C must equal
            ``model.in_channels``. Read one tile row at a time.
        tile_size: model input side in pixels (rounded to a size the model accepts; shrunk per axis to what
            the image needs), or "auto" (default): the candidate (256..1024 px) with the shortest measured time
            for this image, model, device and precision (:func:`unetseg.inference.autotile.auto_tile_size`).
        batch_size: tiles per forward pass, or "auto" (default): 1 on CPUs, 4 on GPUs
            (:func:`unetseg.inference.autotile.auto_batch_size`).
        blend: "crop" (default): each tile contributes only its centre, tiles abut. "gaussian": tile outputs
            are averaged with a Gaussian importance map (sigma = tile/8), as MONAI and nnU-Net do.
        pad_mode: how context beyond the image border is extrapolated: "reflect" (default, the paper's
            mirroring, = numpy "reflect" / cv2 REFLECT_101), "symmetric", "edge", "constant" (zeros).
        halo: context per side of same-padding tiles: "auto" (default): the smallest halo measured after
            training to reproduce whole-image labels (>= 99.99 %, stored in the checkpoint), else "exact";
            "exact": the receptive-field radius (tiled == whole image; two strides for models of unknown
            receptive field such as smp encoders); or pixels (rounded up to the stride). Ignored for
            valid-padding models, whose context is their margin (the paper's exact overlap-tile).
        tta: None (default), "flips" (4 flips) or "d4" (8 rotations/flips); averaged in probability space.
        output: "labels" (default): HxW class indices, uint8 for <= 256 classes (uint16 <= 65536, else
            int32); a 1-class model gives (sigmoid > 0.5). "probs": HxWxK float32 probabilities (softmax;
            sigmoid when K == 1).
        amp: "auto" (default: fp16 on CUDA, bf16 on CPUs with AMX/AVX512-BF16, else fp32), False/"off"
            (fp32), "bf16", "fp16". A batch whose fp16 activations overflow is recomputed in fp32. Inputs
            always go in channels_last.
        device: torch device; default the model's.
        normalization: input normalisation; default ``model.normalization`` if present, else by dtype
            (uint8 / 255, uint16 / 65535, float as given).
        compile: run the model through ``torch.compile`` (inductor, frozen weights; compiled once per tile
            shape): True, False, or "auto" (default): when the image's estimated eager time exceeds
            ``COMPILE_AFTER_SECONDS``, which compiling more than pays back. Batch norm is folded into the
            convolutions and weights are cast to the inference dtype either way
            (:class:`unetseg.inference.graph.InferenceGraph`). A failed compile falls back to eager with a notice.
        nodata: "auto" (default): the image's own ``nodata`` attribute (a TIFF's GDAL_NODATA tag through
            :func:`unetseg.io.open_image`), else the value and band rule the checkpoint was trained with; a number;
            or None. NaN/Inf are invalid whatever this says. Invalid pixels are filled with 0 (the normalised
            mean) before the model sees them, and get ``nodata_label`` (labels) or probabilities 0 (probs). No
            extra pass is made over an integer image without a nodata value.
        nodata_label: label of invalid pixels; default 255 (up to 255 classes: uint8) or 65535 (uint16). A value
            that is a class id is refused.
        progress: show a tqdm bar over tiles.
        out: optional preallocated destination of the result's shape (numpy array, zarr array, or a
            streaming writer such as :class:`unetseg.io.TiffTileWriter`). Rows are written in
            increasing bands (``out[r0:r1] = band``), so a streaming destination never holds the image.
        report: optional dict, filled with the settings actually used (e.g. for a JSON summary):
            ``tile_shape`` [h, w], ``context`` (margin or halo, px per side), ``num_tiles``, ``batch_size``,
            ``precision`` ("fp32" | "bf16" | "fp16"), ``device`` and ``nodata`` (the value applied, or None).

    Returns:
        ``out`` if given, else a numpy array: labels HxW or probs HxWxK float32.
    """
    settings = tiled_settings(model, image, tile_size=tile_size, batch_size=batch_size, blend=blend,
                              pad_mode=pad_mode, halo=halo, tta=tta, output=output, amp=amp, device=device,
                              normalization=normalization, compile=compile, nodata=nodata, nodata_label=nodata_label)
    if report is not None:
        report.update(settings.report())
    return run_tiles(model, image, settings, progress, out, report=report)


def tiled_settings(model: nn.Module, image: Any, *, tile_size: int | str = "auto", batch_size: int | str = "auto",
                   blend: str = "crop", pad_mode: str = "reflect", halo: int | str = "auto", tta: str | None = None,
                   output: str = "labels", amp: str | bool | None = "auto", device: str | torch.device | None = None,
                   normalization: Normalization | None = None, compile: bool | str = "auto", nodata: Any = "auto",
                   nodata_label: int | None = None) -> Settings:
    """Check the options of :func:`predict_tiled` against ``model`` and ``image`` and resolve every "auto".

    The arguments mean what they mean for :func:`predict_tiled`; the tile grid covers the whole image.
    """
    if blend not in BLENDS:
        raise UnetsegError(f"blend={blend!r} is not one of {', '.join(BLENDS)}")
    if output not in OUTPUTS:
        raise UnetsegError(f"output={output!r} is not one of {', '.join(OUTPUTS)}")
    check_pad_mode(pad_mode)
    if not isinstance(compile, bool) and compile != "auto":
        raise UnetsegError(f"compile={compile!r} must be True, False or 'auto'")
    transforms = tta_transforms(tta)
    tile = positive_int_or_auto("tile_size", tile_size)
    batch = positive_int_or_auto("batch_size", batch_size)
    channels = image_channels(image)
    known = isinstance(model, SegmentationModel)
    if known and channels != model.in_channels:
        raise UnetsegError(f"image has {channels} channel(s) but the model expects {model.in_channels}")
    height, width = int(image.shape[0]), int(image.shape[1])
    if height < 1 or width < 1:
        raise UnetsegError(f"image is empty: shape {tuple(image.shape)}")
    norm = normalization or (model.normalization if known else None) or Normalization()
    if len(norm.mean) not in (1, channels):
        raise UnetsegError(f"normalization has {len(norm.mean)} channel statistics but the image has {channels} channels")

    invalid = invalid_rule(model, image, nodata)
    if known and invalid is not None and output == "labels":
        nodata_label_of(model.num_classes, nodata_label)  # refuse a colliding label before any work
    dev = torch.device(device) if device is not None else model_device(model)
    precision = resolve_precision(amp, dev)
    geometry = Geometry.of(model)
    if batch == "auto":
        batch = auto_batch_size(dev)
    graph = inference_graph(model, dev, precision)
    key = model_key(model)
    if tile == "auto":
        tile = auto_tile_size(graph, key, (height, width), geometry, channels=channels, batch_size=batch, halo=halo)
    grid = TileGrid.build((height, width), tile, geometry, halo)
    return Settings(grid, batch, blend, pad_mode, transforms, output, precision, dev, norm,
                    _should_compile(compile, graph, key, grid, channels, batch), invalid, nodata_label)


def _should_compile(compile: bool | str, graph: InferenceGraph, key: str, grid: TileGrid, channels: int,
                    batch: int) -> bool:
    if isinstance(compile, bool):
        return compile
    if grid.num_tiles < MIN_TILES_TO_COMPILE:
        return False
    seconds = seconds_per_tile(graph, key, grid.tile_shape, channels=channels, batch_size=batch)
    return seconds is not None and seconds * grid.num_tiles > COMPILE_AFTER_SECONDS


def run_tiles(model: nn.Module, image: Any, s: Settings, progress: bool = False, out: Any = None, *,
              validity: list[bool] | None = None, report: dict[str, Any] | None = None) -> Any:
    """Read the tiles of ``s.grid`` from ``image`` -> the model's inference graph -> stitch into ``out``, with the
    reading one batch ahead in a background thread. Returns ``out`` (a new numpy array if None).

    ``validity``: None raises when no pixel of ``image`` is valid; a list gets whether any was appended instead
    (a Dask block may be all nodata, its image not).
    ``report``: its ``compiled`` entry is corrected if compiling failed and the graph fell back to eager.
    """
    graph = inference_graph(model, s.device, s.precision, compile=s.compile)
    invalid = None if s.invalid is None else replace(s.invalid, valid_seen=False)
    forward = TileForward(graph, s.transforms)
    stitcher = Stitcher(s.grid, s.blend, s.output, out, invalid=invalid is not None, nodata=s.nodata_label)
    batches = tile_batches(image, s.grid, s.batch_size, s.pad_mode, s.normalization, s.precision.channels_last,
                           invalid)
    bar = tqdm(total=s.grid.num_tiles, desc="tiles", unit="tile", disable=not progress, leave=False)
    with torch.inference_mode(), bar:
        for x, index, tile_invalid in prefetch(batches):
            stitcher.add(forward(x), index, tile_invalid)
            bar.update(len(index))
    if report is not None:
        report["compiled"] = graph.compiled
    valid_seen = invalid is None or invalid.valid_seen
    if validity is not None:
        validity.append(valid_seen)
    elif not valid_seen:
        raise NoValidPixel(invalid.nodata)
    return stitcher.out
