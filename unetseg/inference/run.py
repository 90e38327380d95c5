"""``unetseg predict``: segment image files/folders with a checkpoint and write segmentation maps.

In-memory inputs (PNG, JPEG, ...) are predicted whole and written as PNGs. TIFF inputs take the
streaming path: they are read lazily window by window and every requested map is written band by band
(tiled BigTIFFs, GeoTIFF tags copied; probabilities as a float16 .npy memmap), so memory does not grow
with the image.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import UnetsegError
from ..export import maps
from ..fileio import atomic_path
from ..models import load_model
from .io import ImageSource, TiffTileWriter, find_images, open_image
from .predict import image_channels, label_dtype, predict_tiled


def parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in maps.MAP_FORMATS]
    if bad or not formats:
        raise UnetsegError(f"--format {text!r}: choose from {','.join(maps.MAP_FORMATS)}")
    return formats


def parse_int_or_auto(flag: str, text: str | int) -> int | str:
    """The value of a ``--tile-size``/``--batch-size`` style option: a positive integer or "auto"."""
    if str(text) == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UnetsegError(f"{flag} {text!r}: must be a positive integer or 'auto'")
    return value


class _BandSink:
    """``out`` for predict_tiled that fans each finished row band out to several writers."""

    def __init__(self, shape: tuple[int, ...], handlers: list[Callable[[int, np.ndarray], None]]) -> None:
        self.shape = shape
        self.handlers = handlers

    def __setitem__(self, key: slice, band: np.ndarray) -> None:
        for handler in self.handlers:
            handler(key.start, band)


def _labels_of(band: np.ndarray, num_classes: int, probs: bool) -> np.ndarray:
    if not probs:
        return band
    if num_classes == 1:
        return (band[..., 0] > 0.5).astype(np.uint8)
    return band.argmax(-1).astype(label_dtype(num_classes))


def predict_file(model: nn.Module, path: Path, out_dir: Path, formats: list[str], **options: Any) -> list[Path]:
    """Segment one image file and write the requested maps into ``out_dir``; returns the written paths."""
    source = open_image(path)
    channels = image_channels(source.array)
    if channels != model.in_channels:
        raise UnetsegError(f"{path}: image has {channels} channel(s) but the model expects {model.in_channels}")
    num_classes = int(model.num_classes)
    table = maps.class_table(model, num_classes)
    palette = table.palette()
    want_probs = "probs" in formats
    output = "probs" if want_probs else "labels"
    stem = out_dir / path.stem
    settings = {k: v for k, v in options.items() if k in ("tile_size", "batch_size", "tta", "amp")}
    settings["input"] = str(path)
    if source.is_tiff:
        return _predict_streaming(model, source, stem, formats, palette, table.names, output, settings, options)

    result = predict_tiled(model, source.array, output=output, progress=True, report=settings, **options)
    labels = _labels_of(result, num_classes, want_probs)
    written = []
    if "index" in formats:
        written.append(maps.write_index(f"{stem}_index.png", labels))
    if "palette" in formats:
        if num_classes <= 256:
            written.append(maps.write_palette_png(f"{stem}_palette.png", labels, palette))
        else:
            written.append(maps.write_rgb(f"{stem}_palette.png", maps.colorize(labels, palette)))
    if "overlay" in formats:
        written.append(maps.write_rgb(f"{stem}_overlay.png", maps.overlay(source.array, labels, palette)))
    if want_probs:
        written.append(maps.write_probs(f"{stem}_probs.npy", result))
    if "summary" in formats:
        counts = maps.class_counts([labels], num_classes)
        written.append(maps.write_json(f"{stem}_summary.json",
                                       maps.summary(labels.shape, counts, table.names, **settings)))
    return written


def _predict_streaming(model: nn.Module, source: ImageSource, stem: Path, formats: list[str], palette: np.ndarray,
                       names: tuple[str, ...], output: str, settings: dict[str, Any], options: dict[str, Any]) -> list[Path]:
    height, width = source.shape[:2]
    num_classes = int(model.num_classes)
    ldtype = label_dtype(num_classes)
    as_probs = output == "probs"
    counts = np.zeros(num_classes, np.int64)
    handlers: list[Callable[[int, np.ndarray], None]] = []
    written: list[Path] = []
    with ExitStack() as stack:
        def tiff(suffix: str, shape: tuple[int, ...], dtype: Any, **kw: Any) -> TiffTileWriter:
            path = Path(f"{stem}_{suffix}.tif")
            written.append(path)
            return stack.enter_context(TiffTileWriter(path, shape, dtype, extratags=source.geotags, **kw))

        if "index" in formats:
            w_index = tiff("index", (height, width), ldtype)
            handlers.append(lambda r0, b: w_index.__setitem__(slice(r0, r0 + len(b)), _labels_of(b, num_classes, as_probs)))
        if "palette" in formats:
            if num_classes <= 256:
                w_pal = tiff("palette", (height, width), np.uint8, colormap=palette)
                handlers.append(lambda r0, b: w_pal.__setitem__(slice(r0, r0 + len(b)), _labels_of(b, num_classes, as_probs)))
            else:
                w_pal = tiff("palette", (height, width, 3), np.uint8)
                handlers.append(lambda r0, b: w_pal.__setitem__(
                    slice(r0, r0 + len(b)), maps.colorize(_labels_of(b, num_classes, as_probs), palette)))
        if "overlay" in formats:
            w_over = tiff("overlay", (height, width, 3), np.uint8)

            def add_overlay(r0: int, b: np.ndarray) -> None:
                image = np.asarray(source.array[r0 : r0 + len(b), :])
                w_over[r0 : r0 + len(b)] = maps.overlay(image, _labels_of(b, num_classes, as_probs), palette)
            handlers.append(add_overlay)
        if as_probs:
            probs_path = Path(f"{stem}_probs.npy")
            tmp = stack.enter_context(atomic_path(probs_path))
            memmap = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(height, width, num_classes))
            stack.callback(memmap.flush)
            written.append(probs_path)
            handlers.append(lambda r0, b: memmap.__setitem__(slice(r0, r0 + len(b)), b))
        if "summary" in formats:
            def count(r0: int, b: np.ndarray) -> None:
                counts[:] += maps.class_counts([_labels_of(b, num_classes, as_probs)], num_classes)[:num_classes]
            handlers.append(count)
        shape = (height, width, num_classes) if as_probs else (height, width)
        predict_tiled(model, source.array, output=output, progress=True, out=_BandSink(shape, handlers),
                      report=settings, **options)
    if "summary" in formats:
        written.append(maps.write_json(f"{stem}_summary.json", maps.summary((height, width), counts, names, **settings)))
    return written


def predict_command(args: argparse.Namespace) -> int:
    """Handler of ``unetseg predict``; returns 0, or 1 when any input file failed (each reported on one line)."""
    formats = parse_formats(args.format)
    tile_size = parse_int_or_auto("--tile-size", args.tile_size)
    batch_size = parse_int_or_auto("--batch-size", args.batch_size)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UnetsegError(f"--device {args.device!r}: not a torch device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UnetsegError(f"--device {args.device}: CUDA is not available on this machine")
    model = load_model(args.checkpoint, device=device)
    out_dir = Path(args.output)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UnetsegError(f"--output {out_dir}: cannot create folder ({err.strerror})") from None
    files = find_images(args.input)
    if not files:
        raise UnetsegError(f"--input {' '.join(args.input)}: no image files found")
    options = dict(tile_size=tile_size, batch_size=batch_size, tta=args.tta,
                   amp=False if args.amp == "off" else args.amp, device=device)
    failed = 0
    for path in tqdm(files, desc="images", unit="file", disable=len(files) < 2):
        try:
            predict_file(model, path, out_dir, formats, **options)
        except (UnetsegError, OSError) as err:
            failed += 1
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            if str(path) not in message:
                message = f"{path}: {message}"
            tqdm.write(f"unetseg predict: error: {message}", file=sys.stderr)
    if failed:
        tqdm.write(f"unetseg predict: {failed} of {len(files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0
