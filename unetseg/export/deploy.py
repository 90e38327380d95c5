"""The model as unetseg's OpenVINO engine runs it, for deployment outside unetseg: batch norm folded, softmax over
classes (sigmoid for one class) appended, in fp32 or quantised to int8 by the same NNCF path and agreement check as
``amp="int8"`` (:mod:`.quantize`). :mod:`unetseg.export` writes it as an IR; this module builds it in memory only.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.normalization import Normalization
from ..engines.graph import inference_graph
from ..engines.quantize import CALIBRATION_TILES, quantize
from ..engines.registry import OPENVINO_PRECISION, onnx_bytes, openvino_core
from ..errors import UnetsegError
from ..io.source import find_images, open_image
from ..models.base import SegmentationModel
from ..models.geometry import Geometry
from ..models.precision import resolve_precision
from ..tiling.calibration import calibration_tiles
from ..tiling.plan import image_channels, invalid_rule


@dataclass(frozen=True)
class DeployedModel:
    """``model``: an ``openvino.Model`` with input ``image`` (N x C x H x W float32 normalised pixels) and output
    ``probs`` (N x K x H x W float32); ``int8_agreement``: the label agreement with fp32 on the calibration tiles
    (None for fp32); ``calibration_tiles``: how many tiles it was calibrated on (0 for fp32)."""

    model: Any
    int8_agreement: float | None
    calibration_tiles: int


def calibration_tiles_from(model: nn.Module, inputs: Sequence[str | os.PathLike], tile_shape: tuple[int, int],
                           nodata: Any = "auto") -> np.ndarray:
    """Normalised calibration tiles (N x C x H x W float32, N <= CALIBRATION_TILES) spread over the image files
    in ``inputs`` (files or folders; the training images are the natural choice), as the model's tiles see them:
    the checkpoint's normalisation, mirrored borders, invalid pixels (file or checkpoint nodata) set to 0."""
    paths = find_images(inputs)
    if not paths:
        raise UnetsegError(f"calibration: no image files in {', '.join(map(str, inputs)) or 'the inputs given'}")
    paths = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, min(len(paths), CALIBRATION_TILES))
                                         .round().astype(int))]
    per_image = math.ceil(CALIBRATION_TILES / len(paths))
    norm = (model.normalization if isinstance(model, SegmentationModel) else None) or Normalization()
    expected = model.in_channels if isinstance(model, SegmentationModel) else None
    tiles = []
    for path in paths:
        image = open_image(path).array
        channels = image_channels(image)
        if expected is not None and channels != expected:
            raise UnetsegError(f"{path}: image has {channels} channel(s) but the model expects {expected}")
        tiles.append(calibration_tiles(image, tile_shape, norm, "reflect", invalid_rule(model, image, nodata),
                                       count=per_image))
    return np.concatenate(tiles)[:CALIBRATION_TILES]


def openvino_model(model: nn.Module, channels: int, side: int, calibration: np.ndarray | None = None, *,
                   refused_as: str = "openvino-int8 export",
                   instead: str = "export --format openvino") -> DeployedModel:
    """``model`` (``channels`` input bands, converted at ``side`` x ``side``) as a :class:`DeployedModel`: fp32
    weights when ``calibration`` is None, else int8, calibrated on ``calibration`` (N x C x side x side, e.g.
    from :func:`calibration_tiles_from`) and refused below the int8 agreement bound with a one-line
    UnetsegError naming ``refused_as`` and suggesting ``instead``. Batch, height and width stay dynamic for
    same-padding models, batch only for valid ones."""
    try:
        import openvino as ov
        import openvino.opset13 as ops
        from openvino.preprocess import PrePostProcessor
    except ImportError:
        raise UnetsegError("OpenVINO export needs OpenVINO: install unetseg[openvino] "
                           "(e.g. `uv pip install openvino nncf`)") from None
    cpu = torch.device("cpu")
    net = inference_graph(model, cpu, resolve_precision(False, cpu)).fp32
    dynamic = Geometry.of(model).padding == "same"
    onnx = onnx_bytes(net, channels, (side, side), dynamic)
    core = openvino_core()
    agreement = None
    if calibration is not None:
        deployed = OPENVINO_PRECISION[resolve_precision("auto", cpu).name]
        quantized = quantize(net, onnx, calibration, deployed, refused_as=refused_as, instead=instead)
        ir, agreement = quantized.read(core), quantized.agreement
    else:
        ir = core.read_model(onnx, b"")
    ir.reshape({ir.inputs[0]: ov.PartialShape([-1, channels, -1, -1] if dynamic else [-1, channels, side, side])})
    classes = ir.outputs[0].get_partial_shape()[1].get_length()
    ppp = PrePostProcessor(ir)
    ppp.output().postprocess().custom(
        lambda out: (ops.sigmoid(out) if classes == 1 else ops.softmax(out, 1)).output(0))
    ir = ppp.build()
    ir.inputs[0].get_tensor().set_names({"image"})
    ir.outputs[0].get_tensor().set_names({"probs"})
    return DeployedModel(ir, agreement, 0 if calibration is None else len(calibration))
