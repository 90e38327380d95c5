"""``predict_tiled``: overlap-tile inference of an image of any size, in memory or streamed, without seams.

The pipeline: :mod:`.tiles` reads mirrored windows and batches them (in a background thread) ->
:mod:`.forward` runs the model (precision, TTA) -> :mod:`.stitch` keeps each tile's share and hands
finished row bands to the destination. :mod:`.grid` decides where the tiles go.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.normalization import Normalization
from ..errors import UnetsegError
from ..models.base import SegmentationModel
from .amp import Precision, resolve_precision
from .autotile import auto_batch_size, auto_tile_size
from .forward import TileForward, inference_model, model_device
from .grid import Geometry, TileGrid
from .padding import check_pad_mode
from .stitch import Stitcher
from .tiles import prefetch, tile_batches
from .tta import Transform, tta_transforms

BLENDS = ("crop", "gaussian")
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


@dataclass(frozen=True)
class Settings:
    """Everything one tiled prediction runs with, resolved (no "auto" left)."""

    grid: TileGrid
    batch_size: int
    blend: str
    pad_mode: str
    transforms: list[Transform]
    output: str
    precision: Precision
    device: torch.device
    normalization: Normalization

    def report(self) -> dict[str, Any]:
        """The settings a summary records (see ``report`` of :func:`predict_tiled`)."""
        return dict(tile_shape=list(self.grid.tile_shape), context=self.grid.rows.context,
                    num_tiles=self.grid.num_tiles, batch_size=self.batch_size, precision=self.precision.name,
                    device=str(self.device))


def predict_tiled(
    model: nn.Module,
    image: Any,
    *,
    tile_size: int | str = 512,
    batch_size: int | str = "auto",
    blend: str = "crop",
    pad_mode: str = "reflect",
    halo: int | str = "auto",
    tta: str | None = None,
    output: str = "labels",
    amp: str | bool | None = "auto",
    device: str | torch.device | None = None,
    normalization: Normalization | None = None,
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
            the image needs), or "auto": the fastest measured size for this model and device
            (:func:`unetseg.inference.autotile.auto_tile_size`). Default 512.
        batch_size: tiles per forward pass, or "auto" (default): 1 on CPUs, 4 on GPUs
            (:func:`unetseg.inference.autotile.auto_batch_size`).
        blend: "crop" (default): each tile contributes only its centre, tiles abut. "gaussian": tile outputs
            are averaged with a Gaussian importance map (sigma = tile/8), as MONAI and nnU-Net do.
        pad_mode: how context beyond the image border is extrapolated: "reflect" (default, the paper's
            mirroring, = numpy "reflect" / cv2 REFLECT_101), "symmetric", "edge", "constant" (zeros).
        halo: overlap per side of same-padding tiles, "auto" (default) or pixels (rounded up to the stride).
            "auto" is the receptive-field radius rounded up to the stride for UNet/autoencoder (exact) and
            two strides (64 px) for other models (smp). Ignored for valid-padding models, whose context is
            their margin.
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
        progress: show a tqdm bar over tiles.
        out: optional preallocated destination of the result's shape (numpy array, zarr array, or a
            streaming writer such as :class:`unetseg.io.TiffTileWriter`). Rows are written in
            increasing bands (``out[r0:r1] = band``), so a streaming destination never holds the image.
        report: optional dict, filled with the settings actually used (e.g. for a JSON summary):
            ``tile_shape`` [h, w], ``context`` (margin or halo, px per side), ``num_tiles``, ``batch_size``,
            ``precision`` ("fp32" | "bf16" | "fp16") and ``device``.

    Returns:
        ``out`` if given, else a numpy array: labels HxW or probs HxWxK float32.
    """
    settings = tiled_settings(model, image, tile_size=tile_size, batch_size=batch_size, blend=blend,
                              pad_mode=pad_mode, halo=halo, tta=tta, output=output, amp=amp, device=device,
                              normalization=normalization)
    if report is not None:
        report.update(settings.report())
    with inference_model(model, settings.device) as net:
        return run_tiles(net, image, settings, progress, out)


def tiled_settings(model: nn.Module, image: Any, *, tile_size: int | str = 512, batch_size: int | str = "auto",
                   blend: str = "crop", pad_mode: str = "reflect", halo: int | str = "auto", tta: str | None = None,
                   output: str = "labels", amp: str | bool | None = "auto", device: str | torch.device | None = None,
                   normalization: Normalization | None = None) -> Settings:
    """Check the options of :func:`predict_tiled` against ``model`` and ``image`` and resolve every "auto".

    The arguments mean what they mean for :func:`predict_tiled`; the tile grid covers the whole image.
    """
    if blend not in BLENDS:
        raise UnetsegError(f"blend={blend!r} is not one of {', '.join(BLENDS)}")
    if output not in OUTPUTS:
        raise UnetsegError(f"output={output!r} is not one of {', '.join(OUTPUTS)}")
    check_pad_mode(pad_mode)
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

    dev = torch.device(device) if device is not None else model_device(model)
    precision = resolve_precision(amp, dev)
    if batch == "auto":
        batch = auto_batch_size(dev)
    if tile == "auto":
        with inference_model(model, dev) as net:
            tile = auto_tile_size(net, (height, width), channels=channels, batch_size=batch,
                                  device=dev, precision=precision, halo=halo)
    grid = TileGrid.build((height, width), tile, Geometry.of(model), halo)
    return Settings(grid, batch, blend, pad_mode, transforms, output, precision, dev, norm)


def run_tiles(model: nn.Module, image: Any, s: Settings, progress: bool = False, out: Any = None) -> Any:
    """Read the tiles of ``s.grid`` from ``image`` -> ``model`` (eval mode, on ``s.device``) -> stitch into ``out``,
    with the reading one batch ahead in a background thread. Returns ``out`` (a new numpy array if None)."""
    forward = TileForward(model, s.transforms, s.precision, s.device)
    stitcher = Stitcher(s.grid, s.blend, s.output, out)
    batches = tile_batches(image, s.grid, s.batch_size, s.pad_mode, s.normalization, s.precision.channels_last)
    bar = tqdm(total=s.grid.num_tiles, desc="tiles", unit="tile", disable=not progress, leave=False)
    with torch.inference_mode(), bar:
        for x, index in prefetch(batches):
            stitcher.add(forward(x), index)
            bar.update(len(index))
    return stitcher.out
