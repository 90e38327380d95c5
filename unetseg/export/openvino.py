"""OpenVINO IR export: "openvino" (fp32 weights; OpenVINO picks bf16/fp16 at run time where the CPU has them) and
"openvino-int8" (NNCF static post-training quantisation, calibrated on tiles of the user's images and refused
below 99.5 % label agreement with fp32, as ``amp="int8"`` is).

The IR is the model as unetseg's OpenVINO engine runs it (batch norm folded) followed by softmax over classes
(sigmoid for one class): input ``image`` N x C x H x W float32 normalised pixels, output ``probs``, as the ONNX
export. Batch, height and width stay dynamic for same-padding models, batch only for valid ones. The checkpoint's
record travels in the XML as runtime info ``unetseg`` (a JSON string; ``model.get_rt_info(["unetseg"])``).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import UnetsegError
from ..io.maps import write_bytes
from .deploy import calibration_tiles_from, openvino_model

OPENVINO_FORMATS = ("openvino", "openvino-int8")


def openvino_ir(model: nn.Module, channels: int, side: int, meta: dict[str, Any],
                calibration: Sequence[str | os.PathLike] | None, int8: bool) -> Any:
    """``model`` (``channels`` input bands, traced at ``side``) as an ``openvino.Model`` (see the module
    docstring) recording ``meta``; ``calibration``: image files or folders, required when ``int8``."""
    if int8 and not calibration:
        raise UnetsegError("openvino-int8 export needs calibration images (--calibration DIR, e.g. the training "
                           "images)")
    tiles = calibration_tiles_from(model, calibration, (side, side)) if int8 else None
    deployed = openvino_model(model, channels, side, tiles)
    if int8:
        meta = {**meta, "int8": {"calibration_tiles": deployed.calibration_tiles,
                                 "label_agreement_with_fp32": deployed.int8_agreement}}
    deployed.model.set_rt_info(json.dumps(meta, default=str), ["unetseg"])
    return deployed.model


def check_ir_path(path: Path) -> None:
    if path.suffix.lower() != ".xml":
        raise UnetsegError(f"{path}: an OpenVINO IR is an .xml file (its weights go beside it as .bin)")


def write_openvino(ir: Any, path: Path) -> Path:
    """Write ``ir`` as ``path`` (.xml) and its weights beside it (.bin), each atomically and read back; the
    weights land first, so a finished XML always has its weights."""
    import openvino as ov

    check_ir_path(path)
    with tempfile.TemporaryDirectory() as folder:  # OpenVINO serialises to files only
        xml = Path(folder, "model.xml")
        ov.save_model(ir, xml, compress_to_fp16=False)
        write_bytes(path.with_suffix(".bin"), xml.with_suffix(".bin").read_bytes())
        return write_bytes(path, xml.read_bytes())

