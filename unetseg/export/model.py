"""Model export for deployment: TorchScript (torch.jit.trace) or ONNX (torch.onnx.export)."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import UnetsegError
from ..io.maps import write_bytes
from ..inference.grid import Geometry
from ..models.base import SegmentationModel

EXPORT_FORMATS = ("onnx", "torchscript")


def example_size(model: nn.Module, tile_size: int | None = None) -> int:
    """Example input side: ``tile_size`` (rounded to a size the model accepts), else 572 (valid) / 512 (same)."""
    geometry = Geometry.of(model)
    wanted = tile_size or (572 if geometry.padding == "valid" else 512)
    return geometry.nearest_valid(int(wanted))


def export_model(model: nn.Module, path: str | os.PathLike, format: str = "onnx", tile_size: int | None = None) -> Path:
    """Export ``model`` (NCHW float -> NCHW logits) to ``path``.

    Args:
        model: the model (exported in eval mode, on CPU, fp32).
        path: output file (written atomically).
        format: "onnx" (needs the ``onnx`` package; batch, height and width are dynamic axes for
            same-padding models, batch only for valid ones) or "torchscript" (torch.jit.trace; the
            checkpoint meta -- normalisation, class names/colours -- travels as ``unetseg.json`` extra file).
        tile_size: side of the example input used for tracing; default 572 (valid) or 512 (same).
    """
    if format not in EXPORT_FORMATS:
        raise UnetsegError(f"export format {format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    path = Path(path)
    model = model.to("cpu").eval()
    in_channels = model.in_channels if isinstance(model, SegmentationModel) else 3
    side = example_size(model, tile_size)
    x = torch.zeros(1, in_channels, side, side)
    known = isinstance(model, SegmentationModel)
    meta = {"normalization": model.normalization.to_dict() if known and model.normalization else None,
            "classes": model.class_table.to_dict() if known else None,
            "config": model.config if known else None, "input_size": side}
    # Both formats are encoded in memory and written with plain writes: torch's own file writer aborts the
    # process (a C++ terminate, no message) when the disk fills up under it.
    if format == "torchscript":
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(model, x)
        encoded = io.BytesIO()
        torch.jit.save(traced, encoded, _extra_files={"unetseg.json": json.dumps(meta, default=str)})
        return write_bytes(path, encoded.getvalue())
    try:
        import onnx  # noqa: F401  (torch.onnx needs it to build the graph)
    except ImportError:
        raise UnetsegError("ONNX export needs the 'onnx' package: install it (e.g. `uv pip install onnx`)") from None
    spatial = Geometry.of(model).padding == "same"
    axes = {0: "batch", 2: "height", 3: "width"} if spatial else {0: "batch"}
    encoded = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (x,), encoded, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": axes, "logits": axes})
    return write_bytes(path, encoded.getvalue())
