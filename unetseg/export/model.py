"""Model export for deployment: ONNX (with its metadata as ONNX metadata properties), TorchScript, or an
OpenVINO IR in fp32 or int8 (:mod:`.openvino`).

Both carry the checkpoint's record (:class:`~unetseg.models.meta.CheckpointMeta`: class names and colours,
normalisation, nodata rule, measured halo, pixel size) and the model's input sizes, so an exported file is
usable without unetseg: TorchScript as the ``unetseg.json`` extra file, ONNX as metadata properties, among them
the keys QGIS's Deepness plugin reads for segmentation models (``model_type``, ``class_names``,
``standardization_mean``/``_std``, ``resolution``, ``tile_size``, ``tiles_overlap``, ``seg_thresh``).
"""
from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UnetsegError
from ..io.maps import write_bytes
from ..models.base import SegmentationModel
from ..models.geometry import Geometry
from .openvino import OPENVINO_FORMATS, check_ir_path, openvino_ir, write_openvino

EXPORT_FORMATS = ("onnx", "torchscript", *OPENVINO_FORMATS)
DEEPNESS_THRESHOLD = 0.5  # Deepness's seg_thresh: a class wins where its probability is at least this


class Probabilities(nn.Module):
    """The model followed by softmax over classes (sigmoid for one class): the ONNX graph's output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def export_metadata(model: nn.Module, side: int) -> dict[str, Any]:
    """What an export records: the checkpoint's meta record, the model config and geometry, the example input
    side, the input scale, and for ONNX the Deepness keys (see the module docstring)."""
    geometry = Geometry.of(model)
    known = isinstance(model, SegmentationModel)
    record = model.meta.to_dict() if known else {}
    halo = geometry.halo_for("auto")
    return {
        **record,
        "config": model.config if known else None,
        "input_size": side,
        "geometry": {"padding": geometry.padding, "stride": geometry.stride, "margin": geometry.margin,
                     "halo": halo},
        "input": "N x C x H x W float32 pixel values divided by the dtype scale (uint8 255, uint16 65535, float 1),"
                 " then (x - normalization.mean) / normalization.std",
    }


def deepness_properties(model: nn.Module, side: int) -> dict[str, str]:
    """The metadata keys QGIS's Deepness plugin reads for segmentation models, JSON-encoded as it expects."""
    geometry = Geometry.of(model)
    properties: dict[str, Any] = {"model_type": "Segmentor", "tile_size": side, "seg_thresh": DEEPNESS_THRESHOLD,
                                  "seg_small_segment": 0}
    context = geometry.margin if geometry.padding == "valid" else geometry.halo_for("auto")
    properties["tiles_overlap"] = int(round(100 * 2 * context / side))
    if isinstance(model, SegmentationModel):
        properties["class_names"] = {str(i): n for i, n in enumerate(model.class_table.names)}
        norm = model.normalization
        if norm is not None:
            properties["standardization_mean"] = [float(m) for m in norm.mean] * (
                model.in_channels if len(norm.mean) == 1 else 1)
            properties["standardization_std"] = [float(s) for s in norm.std] * (
                model.in_channels if len(norm.std) == 1 else 1)
        size_um = model.meta.pixel_size_um()
        if size_um is not None:
            properties["resolution"] = size_um / 1e4  # centimetres per pixel
    return {key: json.dumps(value) for key, value in properties.items()}


def export_model(model: nn.Module, path: str | os.PathLike, format: str = "onnx", tile_size: int | None = None,
                 calibration: Sequence[str | os.PathLike] | None = None) -> Path:
    """Export ``model`` to ``path``.

    Args:
        model: the model (exported in eval mode, on CPU, fp32).
        path: output file (written atomically).
        format: "onnx" (needs the ``onnx`` package): input ``image``, output ``probs`` (softmax; sigmoid for one
            class); batch, height and width are dynamic axes for same-padding models, batch only for valid ones;
            the metadata as properties (a ``unetseg`` JSON record and Deepness's keys). "torchscript"
            (torch.jit.trace of the logits model; the metadata as the ``unetseg.json`` extra file). "openvino" /
            "openvino-int8": an IR (``path`` .xml, weights beside it as .bin) with the ONNX export's input and
            output, the metadata as runtime info ``unetseg`` (:mod:`unetseg.export.openvino`).
        tile_size: side of the example input used for tracing (int8: of the calibration tiles); default 572
            (valid) or 512 (same).
        calibration: image files or folders to calibrate "openvino-int8" on (the training images, say); up to
            32 tiles spread over them.

    Returns the written path (the .xml for OpenVINO).
    """
    if format not in EXPORT_FORMATS:
        raise UnetsegError(f"export format {format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    path = Path(path)
    if getattr(model, "runs_on", None):  # an IRModel: already an export, its weights are not torch's
        raise UnetsegError(f"{getattr(model, 'source', 'the model')}: is an exported OpenVINO IR already; export "
                           "from the checkpoint it came from")
    if format in OPENVINO_FORMATS:
        check_ir_path(path)
    model = model.to("cpu").eval()
    in_channels = model.in_channels if isinstance(model, SegmentationModel) else 3
    geometry = Geometry.of(model)
    side = geometry.example_size(tile_size)
    x = torch.zeros(1, in_channels, side, side)
    meta = export_metadata(model, side)
    # Both formats are encoded in memory and written with plain writes: torch's own file writer aborts the
    # process (a C++ terminate, no message) when the disk fills up under it.
    if format in OPENVINO_FORMATS:
        return write_openvino(openvino_ir(model, in_channels, side, meta, calibration, format == "openvino-int8"),
                              path)
    if format == "torchscript":
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(model, x)
        encoded = io.BytesIO()
        torch.jit.save(traced, encoded, _extra_files={"unetseg.json": json.dumps(meta, default=str)})
        return write_bytes(path, encoded.getvalue())
    try:
        import onnx
    except ImportError:
        raise UnetsegError("ONNX export needs the 'onnx' package: install it (e.g. `uv pip install onnx`)") from None
    axes = {0: "batch", 2: "height", 3: "width"} if geometry.padding == "same" else {0: "batch"}
    encoded = io.BytesIO()
    # eval: the exporter restores the wrapper's mode afterwards, and a new module is in training mode, which would
    # leave the caller's model in training mode (batch statistics) after an export
    wrapped = Probabilities(model).eval()
    with torch.inference_mode(False), torch.no_grad():
        try:
            torch.onnx.export(wrapped, (x,), encoded, input_names=["image"], output_names=["probs"],
                              dynamic_axes={"image": axes, "probs": axes})
        except Exception:  # noqa: BLE001
            # torch's dynamo exporter stops on a data-dependent guard in some same-padding U-Nets (a planned nuclei
            # run's); the TorchScript-based exporter, which the engines use, exports those exactly (tested)
            encoded = io.BytesIO()
            torch.onnx.export(wrapped, (x,), encoded, input_names=["image"], output_names=["probs"],
                              dynamic_axes={"image": axes, "probs": axes}, dynamo=False)
    graph = onnx.load_from_string(encoded.getvalue())
    properties = {"unetseg": json.dumps(meta, default=str), **deepness_properties(model, side)}
    onnx.helper.set_model_props(graph, properties)
    return write_bytes(path, graph.SerializeToString())
