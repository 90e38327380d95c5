"""Overlap-tile inference: segment an image of any size, in memory or streamed, without seams."""
from __future__ import annotations

import contextlib
import copy
import operator
import queue
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.normalization import Normalization
from ..errors import UnetsegError
from .amp import Precision, resolve_precision
from .autotile import auto_batch_size, auto_tile_size
from .grid import AxisPlan, Geometry, TileGrid
from .padding import check_pad_mode, gather_window

BLENDS = ("crop", "gaussian")
OUTPUTS = ("labels", "probs")
TTAS = (None, "flips", "d4")

Transform = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def label_dtype(num_classes: int) -> np.dtype:
    """uint8 for <= 256 classes, uint16 for <= 65536, else int32."""
    if num_classes <= 256:
        return np.dtype(np.uint8)
    if num_classes <= 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def tta_transforms(tta: str | None) -> list[Transform]:
    """(forward, inverse) pairs on NCHW tensors: identity; + 3 flips ("flips"); + the 8 of the dihedral group ("d4")."""
    def flip(dims: tuple[int, ...]) -> Transform:
        return (lambda x: torch.flip(x, dims)), (lambda y: torch.flip(y, dims))

    def rot(k: int, flip_w: bool) -> Transform:
        def forward(x: torch.Tensor) -> torch.Tensor:
            return torch.rot90(torch.flip(x, (3,)) if flip_w else x, k, (2, 3))

        def inverse(y: torch.Tensor) -> torch.Tensor:
            y = torch.rot90(y, -k, (2, 3))
            return torch.flip(y, (3,)) if flip_w else y
        return forward, inverse

    identity: Transform = (lambda x: x), (lambda y: y)
    if tta is None:
        return [identity]
    if tta == "flips":
        return [identity, flip((3,)), flip((2,)), flip((2, 3))]
    if tta == "d4":
        return [rot(k, f) for f in (False, True) for k in range(4)]
    raise UnetsegError(f"tta={tta!r} is not one of None, 'flips', 'd4'")


def gaussian_weights(height: int, width: int) -> np.ndarray:
    """Separable Gaussian importance map (float32 HxW, max 1, sigma = side/8 as in MONAI and nnU-Net)."""
    def axis(n: int) -> np.ndarray:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        return np.exp(-0.5 * (x / max(n / 8, 1e-6)) ** 2)
    w = np.outer(axis(height), axis(width)).astype(np.float32)
    return np.maximum(w, 1e-6)  # every pixel keeps a positive weight, so no division by zero at borders


def image_channels(image: Any) -> int:
    shape = tuple(image.shape)
    if len(shape) == 2:
        return 1
    if len(shape) == 3:
        return int(shape[2])
    raise UnetsegError(f"image must be HxW or HxWxC, got shape {shape}")


def model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextlib.contextmanager
def inference_model(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """The model in eval mode on ``device``; the caller's model keeps its device and train/eval state."""
    if model_device(model) != device:
        model = copy.deepcopy(model).to(device)
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def to_labels(probs: torch.Tensor) -> torch.Tensor:
    """NKHW probabilities -> NHW class indices (uint8 when K <= 256, else int32); K == 1 means sigmoid > 0.5.

    Ties go to the lower class index, as with argmax.
    """
    k = probs.shape[1]
    if k == 1:
        return (probs[:, 0] > 0.5).to(torch.uint8)
    if k > 32:
        return probs.argmax(1).to(torch.uint8 if k <= 256 else torch.int32)
    # A running maximum over the classes: argmax over a short channel axis of a (channels_last) tile crop is
    # several times slower on CPU (18 ms vs ~2 ms for 2 x 324^2).
    best, labels = probs[:, 0], torch.zeros(probs[:, 0].shape, dtype=torch.uint8, device=probs.device)
    for c in range(1, k):
        better = probs[:, c] > best
        labels.masked_fill_(better, c)
        best = torch.where(better, probs[:, c], best)
    return labels


class _RowAccumulator:
    """Stitched results of the rows ``[top, top + len)`` not yet handed out: HxW[xK] of ``dtype``.

    Holds probabilities (HxWxK float32, optionally with blend weights) or, for crop blending to labels,
    class indices (HxW), which the device computes so only one byte per pixel crosses back to the host.
    """

    def __init__(self, width: int, trailing: tuple[int, ...], dtype: np.dtype, weighted: bool) -> None:
        self.top = 0
        self.acc = np.zeros((0, width, *trailing), dtype)
        self.wsum = np.zeros((0, width), np.float32) if weighted else None

    def _reserve(self, stop: int) -> None:
        extra = stop - self.top - len(self.acc)
        if extra > 0:
            self.acc = np.concatenate([self.acc, np.zeros((extra, *self.acc.shape[1:]), self.acc.dtype)])
            if self.wsum is not None:
                self.wsum = np.concatenate([self.wsum, np.zeros((extra, self.wsum.shape[1]), np.float32)])

    def put(self, rows: tuple[int, int], cols: tuple[int, int], probs: np.ndarray) -> None:
        self._reserve(rows[1])
        self.acc[rows[0] - self.top : rows[1] - self.top, cols[0] : cols[1]] = probs

    def add(self, rows: tuple[int, int], cols: tuple[int, int], probs: np.ndarray, weight: np.ndarray) -> None:
        assert self.wsum is not None
        self._reserve(rows[1])
        r = slice(rows[0] - self.top, rows[1] - self.top)
        self.acc[r, cols[0] : cols[1]] += probs * weight[..., None]
        self.wsum[r, cols[0] : cols[1]] += weight

    def flush(self, upto: int) -> np.ndarray:
        """Hand out the finished rows ``[top, upto)`` (normalised by the blend weights) and forget them."""
        n = upto - self.top
        self._reserve(upto)
        done, self.acc = self.acc[:n], self.acc[n:].copy()
        if self.wsum is not None:
            weight, self.wsum = self.wsum[:n], self.wsum[n:].copy()
            done = done / weight[..., None]
        self.top = upto
        return done


# Image columns per window read. Bounds the read buffer whatever the image width (a full-width band of a
# 16384 px RGB image is 25 MiB per copy); only the TIFF tiles straddling two windows are decoded twice.
READ_COLUMNS = 4096


def _tiles(image: Any, grid: TileGrid, pad_mode: str) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """Raw input tiles (views of the mirrored image) in row-major order, with their (row, col) tile indices.

    Each tile row is read in windows (``gather_window``) about ``READ_COLUMNS`` wide, which are cut into tiles.
    """
    rows, cols = grid.rows, grid.cols
    tiles_per_read = max(1, READ_COLUMNS // cols.step)
    for i in range(rows.count):
        r0 = rows.input_start(i)
        for first in range(0, cols.count, tiles_per_read):
            last = min(first + tiles_per_read, cols.count) - 1
            c_start = cols.input_start(first)
            window = gather_window(image, (r0, r0 + rows.tile), (c_start, cols.input_start(last) + cols.tile), pad_mode)
            for j in range(first, last + 1):
                c0 = cols.input_start(j) - c_start
                yield (i, j), window[:, c0 : c0 + cols.tile]


def _tile_batches(image: Any, grid: TileGrid, batch_size: int, pad_mode: str, norm: Normalization,
                  channels_last: bool) -> Iterator[tuple[torch.Tensor, list[tuple[int, int]]]]:
    """Normalised NCHW float32 tile batches in row-major order, with their (row, col) tile indices."""
    tiles: list[np.ndarray] = []
    index: list[tuple[int, int]] = []

    def emit() -> tuple[torch.Tensor, list[tuple[int, int]]]:
        x = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2)  # NHWC memory = channels_last
        return (x if channels_last else x.contiguous()), list(index)

    for ij, tile in _tiles(image, grid, pad_mode):
        tiles.append(norm.apply(tile))
        index.append(ij)
        if len(tiles) == batch_size:
            yield emit()
            tiles.clear()
            index.clear()
    if tiles:
        yield emit()


def _prefetch(iterator: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``iterator`` in a background thread, ``depth`` items ahead (torch and numpy release the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def work() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((True, end))
        except BaseException as err:  # handed to the consumer, which re-raises it
            q.put((False, err))

    thread = threading.Thread(target=work, name="unetseg-tile-reader", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _positive_int_or_auto(name: str, value: Any) -> int | str:
    if isinstance(value, str) and value == "auto":
        return value
    try:
        number = operator.index(value)  # ints and numpy integers, not floats or strings
    except TypeError:
        number = 0
    if number < 1:
        raise UnetsegError(f"{name}={value!r} must be a positive integer or 'auto'")
    return number


def _check_out(out: Any, shape: tuple[int, ...]) -> None:
    got = getattr(out, "shape", None)
    if got is not None and tuple(got) != shape:
        raise UnetsegError(f"out has shape {tuple(got)}, expected {shape}")


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
            and numpy slicing: zarr, :func:`unetseg.inference.io.open_image`). C must equal
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
            streaming writer such as :class:`unetseg.inference.io.TiffTileWriter`). Rows are written in
            increasing bands (``out[r0:r1] = band``), so a streaming destination never holds the image.
        report: optional dict, filled with the settings actually used (e.g. for a JSON summary):
            ``tile_shape`` [h, w], ``context`` (margin or halo, px per side), ``num_tiles``, ``batch_size``,
            ``precision`` ("fp32" | "bf16" | "fp16") and ``device``.

    Returns:
        ``out`` if given, else a numpy array: labels HxW or probs HxWxK float32.
    """
    if blend not in BLENDS:
        raise UnetsegError(f"blend={blend!r} is not one of {', '.join(BLENDS)}")
    if output not in OUTPUTS:
        raise UnetsegError(f"output={output!r} is not one of {', '.join(OUTPUTS)}")
    check_pad_mode(pad_mode)
    transforms = tta_transforms(tta)
    tile = _positive_int_or_auto("tile_size", tile_size)
    batch = _positive_int_or_auto("batch_size", batch_size)
    channels = image_channels(image)
    expected = getattr(model, "in_channels", None)
    if expected is not None and channels != expected:
        raise UnetsegError(f"image has {channels} channel(s) but the model expects {expected}")
    height, width = int(image.shape[0]), int(image.shape[1])
    if height < 1 or width < 1:
        raise UnetsegError(f"image is empty: shape {tuple(image.shape)}")
    norm = normalization or getattr(model, "normalization", None) or Normalization()
    if len(norm.mean) not in (1, channels):
        raise UnetsegError(f"normalization has {len(norm.mean)} channel statistics but the image has {channels} channels")

    dev = torch.device(device) if device is not None else model_device(model)
    precision = resolve_precision(amp, dev)
    geometry = Geometry.of(model)
    if batch == "auto":
        batch = auto_batch_size(dev)
    with inference_model(model, dev) as net:
        if tile == "auto":
            tile = auto_tile_size(net, (height, width), channels=channels, batch_size=batch,
                                  device=dev, precision=precision, halo=halo)
        grid = TileGrid.build((height, width), tile, geometry, halo)
        if report is not None:
            report.update(tile_shape=list(grid.tile_shape), context=grid.rows.context, num_tiles=grid.num_tiles,
                          batch_size=batch, precision=precision.name, device=str(dev))
        return _run(net, image, grid, batch, blend, pad_mode, transforms, output, precision, dev, norm,
                    progress, out)


def _run(model: nn.Module, image: Any, grid: TileGrid, batch_size: int, blend: str, pad_mode: str,
         transforms: list[Transform], output: str, precision: Precision, device: torch.device,
         norm: Normalization, progress: bool, out: Any) -> Any:
    rows, cols = grid.rows, grid.cols
    height, width = rows.length, cols.length
    weights = gaussian_weights(rows.out_size, cols.out_size) if blend == "gaussian" else None
    acc: _RowAccumulator | None = None
    done_in_row = [0] * rows.count
    next_row = 0

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device, non_blocking=True)
        total = None
        for fwd, inv in transforms:
            with precision.autocast(device):
                logits = model(fwd(x))
            if precision.dtype == torch.float16 and not bool(torch.isfinite(logits).all()):
                warnings.warn("fp16 overflowed in a tile batch; recomputing it in fp32 (amp=False or amp='bf16' "
                              "avoids the double work)", RuntimeWarning, stacklevel=2)
                logits = model(fwd(x))  # fp16 overflowed (|activation| > 65504): this batch again in fp32
            logits = inv(logits.float())
            p = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
            total = p if total is None else total.add_(p)
        assert total is not None
        if len(transforms) > 1:
            total /= len(transforms)
        return total

    labels_on_device = output == "labels" and weights is None

    def finish(band: np.ndarray, r0: int) -> None:
        if band.shape[0] == 0:
            return
        if output == "labels" and not labels_on_device:
            band = to_labels(torch.from_numpy(band).permute(2, 0, 1)[None])[0].numpy()
        dtype = getattr(out, "dtype", None)
        out[r0 : r0 + band.shape[0]] = band if dtype is None else band.astype(dtype, copy=False)

    bar = tqdm(total=grid.num_tiles, desc="tiles", unit="tile", disable=not progress, leave=False)
    with torch.inference_mode(), bar:
        for x, index in _prefetch(_tile_batches(image, grid, batch_size, pad_mode, norm, precision.channels_last)):
            probs = forward(x)
            if probs.shape[-2:] != (rows.out_size, cols.out_size):
                raise RuntimeError(f"model output {tuple(probs.shape[-2:])} for input {grid.tile_shape}, expected "
                                   f"{(rows.out_size, cols.out_size)}: the model's geometry attributes are wrong")
            if acc is None:
                k = probs.shape[1]
                if labels_on_device:
                    acc = _RowAccumulator(width, (), np.dtype(np.uint8 if k <= 256 else np.int32), weighted=False)
                else:
                    acc = _RowAccumulator(width, (k,), np.dtype(np.float32), weighted=weights is not None)
                shape = (height, width) if output == "labels" else (height, width, k)
                if out is None:
                    out = np.zeros(shape, label_dtype(k) if output == "labels" else np.float32)
                _check_out(out, shape)
            if weights is None:  # crop: keep each tile's centre, cut on the device before the copy back
                for n, (i, j) in enumerate(index):
                    (a, b), (c, d) = rows.kept(i), cols.kept(j)
                    pa, pc = a - rows.output_range(i)[0], c - cols.output_range(j)[0]
                    kept = probs[n : n + 1, :, pa : pa + b - a, pc : pc + d - c]
                    kept = to_labels(kept)[0] if labels_on_device else kept[0].permute(1, 2, 0)
                    acc.put((a, b), (c, d), kept.cpu().numpy())
                    done_in_row[i] += 1
            else:
                for (i, j), p in zip(index, probs.permute(0, 2, 3, 1).cpu().numpy()):
                    (a, b), (c, d) = _clip(rows, i), _clip(cols, j)
                    pa, pc = a - rows.output_range(i)[0], c - cols.output_range(j)[0]
                    acc.add((a, b), (c, d), p[pa : pa + b - a, pc : pc + d - c],
                            weights[pa : pa + b - a, pc : pc + d - c])
                    done_in_row[i] += 1
            bar.update(len(index))
            while next_row < rows.count and done_in_row[next_row] == cols.count:
                if next_row == rows.count - 1:
                    upto = height
                elif weights is None:
                    upto = rows.kept(next_row + 1)[0]
                else:
                    upto = min(max(rows.output_range(next_row + 1)[0], acc.top), height)
                top = acc.top
                finish(acc.flush(upto), top)
                next_row += 1
    return out


def _clip(plan: AxisPlan, i: int) -> tuple[int, int]:
    a, b = plan.output_range(i)
    return max(a, 0), min(b, plan.length)
