"""An exported OpenVINO IR (``unetseg export --format openvino|openvino-int8``) as a model: ``load_model("m.xml")``.

The IR carries the checkpoint's record as its runtime info ``unetseg`` (:mod:`unetseg.export.openvino`): the
architecture's config, the geometry, classes, normalisation, nodata rule and measured halo. :class:`IRModel`
keeps the model contract from that record (the architecture is rebuilt without weights, on torch's meta device,
for its size rule and receptive field) and holds the IR itself: the OpenVINO engine runs it as it is, int8
included, so a quantised model is made once and used by every later process. ``forward`` runs it through
OpenVINO in fp32, for whatever calls a model directly.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UnetsegError
from .base import SegmentationModel
from .meta import CheckpointMeta
from .registry import build_model

IR_RECORD = "unetseg"  # the runtime-info key of the record
_META_KEYS = {"config", "input_size", "geometry", "input", "int8"}  # what the export adds to the checkpoint record


def is_ir_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".xml"


class IRModel(SegmentationModel):
    """An OpenVINO IR with the model contract. Runs only on ``engine="openvino"`` (CPUs).

    Attributes:
        xml, weights: the IR's bytes.
        architecture: the config of the model it was exported from (``{"name", "kwargs"}``).
        input_size: the side it was exported at; a valid-padding IR takes tiles of that size only
            (:attr:`fixed_size`).
        int8: the int8 record (calibration tiles, label agreement with fp32), None for an fp32 IR.
    """

    registry_name = "openvino-ir"
    runs_on = ("openvino",)

    def __init__(self, xml: bytes, weights: bytes, record: dict[str, Any], source: str | os.PathLike = "IR") -> None:
        super().__init__()
        self.xml, self.weights, self.source = xml, weights, str(source)
        self.architecture = record.get("config")
        if not isinstance(self.architecture, dict) or "name" not in self.architecture:
            raise UnetsegError(f"{source}: its unetseg record names no model architecture")
        try:
            with torch.device("meta"):
                arch = build_model(self.architecture["name"], **self.architecture.get("kwargs", {}))
        except Exception as err:  # noqa: BLE001  any constructor error means the record is not one this unetseg reads
            raise UnetsegError(f"{source}: model {self.architecture['name']!r} of its record cannot be built "
                               f"({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
        self.size_rule, self.in_channels, self.num_classes = arch.size_rule, arch.in_channels, arch.num_classes
        self._field_radius = arch.field_radius
        self.input_size = int(record.get("input_size") or 0)
        self.int8 = record.get("int8")
        try:
            self.meta = CheckpointMeta.from_dict({k: v for k, v in record.items() if k not in _META_KEYS})
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise UnetsegError(f"{source}: damaged unetseg record ({type(err).__name__}: {err})") from None
        digest = hashlib.sha256(xml + weights).digest()
        # the IR's identity as state: checkpoint digests (resumable runs) and timing caches tell IRs apart
        self.register_buffer("ir_sha256", torch.frombuffer(bytearray(digest), dtype=torch.uint8))
        self._config_kwargs = {**self.architecture.get("kwargs", {}), "ir_sha256": digest.hex()}
        self._request: Any = None

    @property
    def field_radius(self) -> int | None:
        return self._field_radius

    @property
    def fixed_size(self) -> int | None:
        """The only tile side a valid-padding IR takes (its crops were traced at that size); None: any."""
        return self.input_size if self.padding == "valid" else None

    def read(self, core: Any) -> Any:
        """The IR as an ``openvino.Model`` that outputs logits (the export's final softmax or sigmoid dropped)."""
        import openvino as ov

        model = core.read_model(self.xml, ov.Tensor(np.frombuffer(self.weights, np.uint8).copy()))
        result = model.get_results()[0]
        last = result.input_value(0).get_node()
        if last.get_type_name() in ("Softmax", "SoftMax", "Sigmoid"):
            result.input(0).replace_source_output(last.input_value(0))
            model.validate_nodes_and_infer_types()
        return model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import openvino as ov

        if self._request is None:
            core = ov.Core()
            self._request = core.compile_model(self.read(core), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                                        "EXECUTION_MODE_HINT": "ACCURACY"})
        out = self._request(x.detach().float().contiguous().cpu().numpy())[0]
        return torch.from_numpy(np.array(out)).to(x.device)

    def __getstate__(self) -> dict[str, Any]:  # deepcopy and pickle (Dask) leave the compiled request behind
        state = dict(self.__dict__)
        state["_request"] = None
        return state


def load_ir(path: str | os.PathLike) -> IRModel:
    """The IR at ``path`` (.xml, weights beside it as .bin) as an :class:`IRModel`; one line for what is wrong."""
    path = Path(path)
    weights = path.with_suffix(".bin")
    for part in (path, weights):
        if not part.is_file():
            raise UnetsegError(f"{part}: no such file (an OpenVINO IR is an .xml with its .bin beside it)")
    try:
        import openvino as ov
    except ImportError:
        raise UnetsegError(f"{path}: an OpenVINO IR needs OpenVINO: install unetseg[openvino] "
                           "(e.g. `uv pip install openvino`)") from None
    xml, data = path.read_bytes(), weights.read_bytes()
    try:
        model = ov.Core().read_model(xml, ov.Tensor(np.frombuffer(data, np.uint8).copy()))
    except Exception as err:  # noqa: BLE001  OpenVINO raises RuntimeError with pages of text for damaged files
        raise UnetsegError(f"{path}: not a readable OpenVINO IR ({str(err).strip().splitlines()[0][:120]})") from None
    if not model.has_rt_info([IR_RECORD]):
        raise UnetsegError(f"{path}: this IR was not exported by unetseg (no '{IR_RECORD}' runtime info); "
                           "export it with `unetseg export --format openvino`")
    try:
        record = json.loads(model.get_rt_info([IR_RECORD]).astype(str))
    except (ValueError, TypeError) as err:
        raise UnetsegError(f"{path}: damaged unetseg record ({err})") from None
    return IRModel(xml, data, record, path).eval()
