"""``predict_tiled``: overlap-tile inference of an image of any size, in memory or streamed, without seams.

The pipeline, in MONAI's shape: :func:`~unetseg.tiling.plan.plan_tiles` resolves a frozen plan ->
:mod:`.splitter` reads raw windows, moves them to the device and cuts tile batches there (in a background thread)
-> :mod:`.forward` normalises them and runs the model (precision, TTA, softmax or argmax) on the device ->
:mod:`.merger` keeps each tile's share, copies it back and hands finished row bands to the sink, which
:mod:`.behind` writes in another thread.
:func:`tiled` returns a :class:`~unetseg.tiling.result.TiledResult`; :func:`predict_tiled` its output.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import closing
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.normalization import Normalization
from ..engines.allocator import keep_freed_memory, release_between_batches, return_freed_memory
from ..engines.graph import inference_graph
from ..engines.registry import build_engine
from ..models.ensemble import as_model
from .behind import WriteBehind
from .forward import TileForward, Views
from .merger import Destination, Merger
from .options import DEFAULTS, TileOptions
from .plan import TilePlan, plan_tiles
from .result import TiledResult
from .splitter import prefetch, tile_batches
from .volume import plan_volume, run_volume, spatial_dims

D = DEFAULTS


def predict_tiled(
    model: nn.Module | Sequence[nn.Module],
    image: Any,
    *,
    tile_size: int | str = D.tile_size,
    batch_size: int | str = D.batch_size,
    blend: str = D.blend,
    pad_mode: str = D.pad_mode,
    halo: int | str = D.halo,
    tta: str | None = D.tta,
    output: str = D.output,
    amp: str | bool | None = D.amp,
    device: str | torch.device | None = D.device,
    normalization: Normalization | None = D.normalization,
    compile: bool | str = D.compile,
    nodata: Any = D.nodata,
    nodata_label: int | None = D.nodata_label,
    engine: str = D.engine,
    progress: bool | Callable[[int, int], Any] = False,
    out: Any = None,
    report: dict[str, Any] | None = None,
) -> Any:
    """Segment ``image`` of any size by overlap-tile inference; the result has no seams.

    Tiles start on multiples of ``model.stride`` and carry enough context that, with ``blend="crop"``,
    the result equals the model applied once to the whole mirror-padded image (up to float rounding).

    Args:
        model: a unetseg ``SegmentationModel`` (NCHW float -> NCHW logits), or any nn.Module doing the same
            (treated as same-padding with stride 32). Run in eval mode; the caller's mode and device are kept.
            A list of unetseg models (folds, seeds) is an ensemble (:class:`unetseg.models.ensemble.Ensemble`):
            their probabilities are averaged, each member seeing the image normalised as it was trained; members
            share their architecture's geometry and their classes.
        image: HxW or HxWxC array, uint8/uint16/float, numpy or lazy (anything with ``.shape``, ``.dtype``
            and numpy slicing: zarr, :func:`unetseg.io.open_image`). C must equal
            ``model.in_channels``. Read one tile row at a time.
        tile_size: model input side in pixels (rounded to a size the model accepts; shrunk per axis to what
            the image needs), or "auto" (default): the candidate (:data:`unetseg.tiling.autotile.CANDIDATES`,
            256..2048 px) with the shortest measured time for this image, model, device and precision, among
            those whose activations fit the memory budget (:func:`unetseg.tiling.autotile.auto_tile_size`).
        batch_size: tiles per forward pass, or "auto" (default): 1 on CPUs, 4 on GPUs
            (:func:`unetseg.tiling.autotile.auto_batch_size`).
        blend: "crop" (default): each tile contributes only its centre, tiles abut. "gaussian": tile outputs
            are averaged with a Gaussian importance map (sigma = tile/8), as MONAI and nnU-Net do.
        pad_mode: how context beyond the image border is extrapolated: "reflect" (default, the paper's
            mirroring, = numpy "reflect" / cv2 REFLECT_101), "symmetric", "edge", "constant" (zeros).
        halo: context per side of same-padding tiles: "auto" (default): the smallest halo measured after
            training to reproduce whole-image labels (>= 99.99 %, stored in the checkpoint), else "exact";
            "exact": the receptive-field radius (tiled == whole image; two strides for models of unknown
            receptive field such as smp encoders); or pixels (rounded up to the stride). Ignored for
            valid-padding models, whose context is their margin (the paper's exact overlap-tile).
        tta: "auto" (default: the TTA the model's training chose for its objects on the validation images, else
            none), None, "flips" (4 flips; 8 for volumes) or "d4" (8 rotations/flips); averaged in probability
            space.
        output: "labels" (default): HxW class indices, uint8 for <= 256 classes (uint16 <= 65536, else
            int32); a 1-class model gives (sigmoid > 0.5). "probs": HxWxK float32 probabilities (softmax;
            sigmoid when K == 1). "uncertainty": HxWx2 float32: the predictive entropy of the
            (averaged) probabilities in nats (0 to log K) and the disagreement of the views, the entropy minus
            the views' mean entropy (mutual information; views are an ensemble's members and TTA's transforms;
            0 for one view). Invalid pixels get 0.
        amp: "auto" (default: fp16 on CUDA, bf16 on CPUs with AMX/AVX512-BF16, else fp32), False/"off"
            (fp32), "bf16", "fp16", or "int8" (convolutions quantised with NNCF on the OpenVINO engine, once per
            process and model, calibrated on tiles of the first image it segments; refused when its labels agree
            with fp32's on fewer than 99.5 % of the calibration pixels). A batch whose fp16 activations overflow is
            recomputed in fp32.
        device: torch device; default the model's.
        normalization: input normalisation; default ``model.normalization`` if present, else by dtype
            (uint8 / 255, uint16 / 65535, float as given).
        compile: run the model through ``torch.compile`` (inductor, frozen weights; compiled once per tile
            shape): True, False, or "auto" (default): when the image's estimated eager time exceeds
            ``COMPILE_AFTER_SECONDS``, which compiling more than pays back. Batch norm is folded into the
            convolutions and weights are cast to the inference dtype either way
            (:class:`unetseg.engines.graph.InferenceGraph`). A failed compile falls back to eager with a notice.
        nodata: "auto" (default): the image's own ``nodata`` attribute (a TIFF's GDAL_NODATA tag through
            :func:`unetseg.io.open_image`), else the value and band rule the checkpoint was trained with; a number;
            or None. NaN/Inf are invalid whatever this says. Invalid pixels are filled with 0 (the normalised
            mean) before the model sees them, and get ``nodata_label`` (labels) or probabilities 0 (probs). No
            extra pass is made over an integer image without a nodata value.
        engine: what runs the model (:mod:`unetseg.engines.registry`): "auto" (default): of the installed
            engines that run this device and precision, the one measured fastest on this model and tile shape
            (once per process; torch for images that would not repay converting the model, and on GPUs);
            "torch", "openvino" (CPUs; ``unetseg[openvino]``) or "onnxruntime" (fp32; ``unetseg[onnx]``).
        nodata_label: label of invalid pixels; default 255 (up to 255 classes: uint8) or 65535 (uint16). A value
            that is a class id is refused.
        progress: True: show a tqdm bar over tiles; or a callable ``progress(tiles_done, tiles_total)``, called
            after each merged batch (a GUI's progress bar); an exception it raises stops the run (a Cancel
            button) and propagates, with nothing left running.
        out: optional preallocated destination of the result's shape (numpy array, zarr array, or a
            streaming writer such as :class:`unetseg.io.TiffTileWriter`), or a band sink (an
            :class:`unetseg.outputs.OutputSet`). Rows are written in increasing bands (``out[r0:r1] = band``), so a
            streaming destination never holds the image.
        report: kept for compatibility: a dict that receives :meth:`TileReport.as_dict` of the settings used.
            :func:`tiled` returns them (and the class counts) in a :class:`~unetseg.tiling.result.TiledResult`.

    Returns:
        ``out`` if given, else a numpy array: labels HxW or probs HxWxK float32.

    Examples:
        >>> import numpy as np, unetseg
        >>> model = unetseg.UNet(in_channels=1, num_classes=3, base_channels=4, depth=2, padding="same").eval()
        >>> image = np.zeros((100, 70), dtype=np.uint8)
        >>> labels = unetseg.predict_tiled(model, image, tile_size=64)
        >>> labels.shape, labels.dtype
        ((100, 70), dtype('uint8'))
        >>> unetseg.predict_tiled(model, image, tile_size=64, output="probs").shape
        (100, 70, 3)
    """
    options = TileOptions(tile_size=tile_size, batch_size=batch_size, blend=blend, pad_mode=pad_mode, halo=halo,
                          tta=tta, output=output, amp=amp, device=device, normalization=normalization,
                          compile=compile, nodata=nodata, nodata_label=nodata_label, engine=engine)
    result = tiled(model, image, options, out=out, progress=progress).check_valid()
    if report is not None:
        report.update(result.report.as_dict())
    return result.output


def tiled(model: nn.Module | Sequence[nn.Module], image: Any, options: TileOptions = DEFAULTS, *, out: Any = None,
          progress: bool | Callable[[int, int], Any] = False) -> TiledResult:
    """:func:`predict_tiled` as a result object: plan, run, and return output, settings and class counts.

    A result whose image held no valid pixel is returned as it is (:meth:`TiledResult.check_valid` raises)."""
    model = as_model(model)
    if spatial_dims(model) == 3:
        return run_volume(model, image, plan_volume(model, image, options), out=out, progress=progress)
    return run_tiles(model, image, plan_tiles(model, image, options), out=out, progress=progress)


def run_tiles(model: nn.Module, image: Any, plan: TilePlan, *, out: Any = None,
              progress: bool | Callable[[int, int], Any] = False) -> TiledResult:
    """Read the tiles of ``plan.grid`` from ``image`` -> the forward stage on the plan's device -> merge into ``out``
    (None: a new numpy array).

    Three threads overlap: the reader prepares the next batches (read, to the device, mirrored, cut), this thread
    runs the model on one batch while it merges the one before (an asynchronous engine or a CUDA stream computes
    meanwhile), and the writer writes finished bands behind them."""
    views = Views.of(model, plan.output, len(plan.transforms))
    engine = build_engine(inference_graph(views.model, plan.device, plan.precision, compile=plan.compile),
                          plan.engine, plan.quantized)
    if engine.name == "torch" and plan.device.type == "cpu":
        keep_freed_memory()  # torch's per-layer buffers come from malloc: 1.2-1.35x (see .allocator)
    else:
        return_freed_memory()  # the engine plans its own memory: the pipeline's buffers go straight back
    forward = TileForward(engine, plan.spec)
    grid = plan.grid
    destination = Destination(out, plan.output, (grid.rows.length, grid.cols.length))
    bar = TileProgress(grid.num_tiles, progress)
    batches = tile_batches(image, grid, plan.batch_size, plan.pad_mode, plan.device, plan.spec.dtype)
    running = None  # the batch the engine runs while the one before it is merged
    try:
        # closing: a stopped run (an error, a progress callback's Cancel) ends the reader thread before returning
        with torch.inference_mode(), bar, closing(prefetch(batches)) as ahead, \
                WriteBehind(destination.write) as writer:
            merger = Merger(grid, plan.blend, plan.output, writer.put, nodata=plan.nodata_label,
                            spread=views.spread, device=plan.device, prepare=destination.prepare,
                            planes=destination.planes)
            previous = None
            for batch in ahead:
                running = forward.start(batch.tiles())
                staged = (merger.stage(running, batch.index), len(batch.index))
                release_between_batches()
                if previous is not None:
                    _finish(bar, *previous)
                previous = staged
            if previous is not None:
                running = None
                _finish(bar, *previous)
            counts = merger.finish()
        running = None
    finally:
        if running is not None:  # a failed merge or write: let the running batch finish before its input is freed
            try:
                running()
            except Exception:  # noqa: BLE001  the first error is the one to report
                pass
    pixels = grid.rows.length * grid.cols.length
    return TiledResult(destination.out, plan.report(compiled=engine.compiled), pixels, counts,
                       merger.uncertainty_sums if merger.uncertainty else None)


class TileProgress:
    """Tiles merged so far, shown as a tqdm bar (``progress=True``) or handed to a callback."""

    def __init__(self, total: int, progress: bool | Callable[[int, int], Any]) -> None:
        self.total, self.done = total, 0
        self.callback = progress if callable(progress) else None
        self.bar = tqdm(total=total, desc="tiles", unit="tile", disable=progress is not True, leave=False)

    def __enter__(self) -> TileProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()

    def update(self, tiles: int) -> None:
        self.done += tiles
        self.bar.update(tiles)
        if self.callback is not None:
            self.callback(self.done, self.total)


def _finish(bar: TileProgress, staged: Callable[[], None], tiles: int) -> None:
    staged()
    bar.update(tiles)
