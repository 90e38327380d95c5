"""Checkpoints: weights + the model's constructor config + its typed meta record (:mod:`.meta`).

Loading uses ``torch.load(weights_only=True)``: a checkpoint holds tensors and plain Python data only, so
loading one never runs code from the file. Anything that is not a sound unetseg checkpoint (empty,
truncated, random bytes, a TorchScript or ONNX export, wrong keys or shapes, an unknown model) is one
:class:`~unetseg.errors.UnetsegError` line naming the file and what is wrong.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UnetsegError
from ..io.atomic import atomic_path
from .base import SegmentationModel
from .meta import CheckpointMeta
from .registry import build_model, list_models

CHECKPOINT_FORMAT = "unetseg-checkpoint-v1"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def checkpoint_payload(model: nn.Module, **meta: Any) -> dict[str, Any]:
    """The dict that :func:`save_checkpoint` writes; training adds optimizer/scheduler/RNG state to it.

    ``meta``: :class:`~unetseg.models.meta.CheckpointMeta` fields that replace the model's own ``model.meta``
    (e.g. ``normalization=``, ``classes=ClassTable`` or ``class_names=[...]`` + ``class_colors=``,
    ``pixel_size=0.5``, ``nodata=``); an unknown name is a TypeError naming it.
    """
    bare = unwrap(model)
    if not isinstance(bare, SegmentationModel):
        raise TypeError(f"save_checkpoint needs a unetseg model (from build_model), got {type(bare).__name__}")
    if bare.registry_name not in list_models():
        raise TypeError(f"save_checkpoint: a {bare.registry_name or type(bare).__name__!r} is not a registered model "
                        "(an ensemble is saved as its members' checkpoints)")
    try:
        record = bare.meta.updated(**meta)
    except ValueError as err:
        raise TypeError(f"save_checkpoint: {err}") from None
    state = {k: v.detach().cpu() for k, v in bare.state_dict().items()}
    return {"format": CHECKPOINT_FORMAT, "model": bare.config, "state_dict": state, "meta": record.to_dict()}


def write_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Atomically write a checkpoint dict, verified by reading it back: a crash or a full disk mid-write never
    leaves a corrupt file at ``path`` (an existing checkpoint there stays as it was)."""
    with atomic_path(path, verify=lambda tmp: read_checkpoint(tmp)) as tmp:
        with open(tmp, "wb") as f:  # a file object: a failed write surfaces as its OSError (ENOSPC, ...)
            torch.save(payload, f)
    return Path(path)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **meta: Any) -> Path:
    """Save weights + constructor config + the model's :class:`~unetseg.models.meta.CheckpointMeta`, updated
    with ``meta`` (e.g. normalization=..., class_names=[...], class_colors=[[r, g, b], ...], pixel_size=0.5), to
    ``path`` atomically. Returns the path.

    Examples:
        >>> import unetseg
        >>> model = unetseg.UNet(in_channels=1, num_classes=2, base_channels=4, depth=2, padding="same")
        >>> unetseg.save_checkpoint(model, "model.pt", class_names=["background", "cell"]).name
        'model.pt'
    """
    return write_checkpoint(checkpoint_payload(model, **meta), path)


def _foreign_kind(path: str | os.PathLike) -> str | None:
    """What a file that is not a checkpoint looks like, from its bytes: empty, ONNX, TorchScript, not a zip."""
    size = os.path.getsize(path)
    if size == 0:
        return "is empty (0 bytes)"
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(4096)
        if b"onnx" in head.lower() or b"pytorch" in head.lower() and head[:1] == b"\x08":
            return "is an ONNX model (an export), not a unetseg checkpoint"
        return f"is not a PyTorch checkpoint ({size} bytes that are not a zip archive: truncated, damaged or " \
               "another format)"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"is a damaged archive ({err})"
    if any("/code/" in n or n.endswith("constants.pkl") for n in names):
        return "is a TorchScript export, not a unetseg checkpoint (use torch.jit.load for it)"
    if bad is not None:
        return f"is damaged (its part {bad.split('/', 1)[-1]!r} fails its checksum)"
    return None


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely (weights_only); anything else is a one-line UnetsegError naming the file."""
    if not os.path.isfile(path):
        raise UnetsegError(f"checkpoint not found: {path}")
    try:
        kind = _foreign_kind(path)
    except OSError as err:  # unreadable (permissions, I/O error)
        raise UnetsegError(f"checkpoint {path} cannot be read ({err.strerror or err})") from None
    if kind is not None:
        raise UnetsegError(f"checkpoint {path} cannot be read: it {kind}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise UnetsegError(f"checkpoint {path} holds Python objects other than tensors and plain data; "
                           "unetseg loads only weights-only checkpoints, such as those it writes") from None
    except Exception as err:  # noqa: BLE001  torch raises several types for truncated/foreign files
        raise UnetsegError(f"checkpoint {path} cannot be read ({type(err).__name__}: damaged or truncated)") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UnetsegError(f"{path} is not a unetseg checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    _check_layout(payload, path)
    return payload


def _check_layout(payload: dict[str, Any], path: str | os.PathLike) -> None:
    model, state, meta = payload.get("model"), payload.get("state_dict"), payload.get("meta", {})
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(model.get("kwargs"), dict):
        raise UnetsegError(f"checkpoint {path} is damaged: its 'model' entry (name and kwargs) is missing or malformed")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnetsegError(f"checkpoint {path} is damaged: its 'state_dict' entry is missing or not tensors")
    if not isinstance(meta, dict):
        raise UnetsegError(f"checkpoint {path} is damaged: its 'meta' entry is not a mapping")
    if model["name"] not in list_models():
        raise UnetsegError(f"checkpoint {path} names model {model['name']!r}, which this unetseg does not have "
                           f"(known: {', '.join(list_models())})")


def _describe_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    parts = [f"{len(keys)} {what} weight(s), e.g. {keys[0]!r}"
             for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong-shape", wrong)) if keys]
    return "; ".join(parts) or "the weights do not load"


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """``model.load_state_dict(state)``; weights that do not fit are one UnetsegError naming ``source`` and
    the first missing, unexpected or wrong-shape weight."""
    try:
        model.load_state_dict(state)
    except Exception:  # noqa: BLE001  RuntimeError for shapes/keys; others for tensors of odd kinds
        name = model.config["name"] if isinstance(model, SegmentationModel) else type(model).__name__
        raise UnetsegError(f"checkpoint {source}: weights do not fit model {name!r} "
                           f"({_describe_mismatch(model, state)})") from None


def model_from_payload(payload: dict[str, Any], device: str | torch.device = "cpu",
                       source: str | os.PathLike = "checkpoint") -> SegmentationModel:
    """Rebuild the model a checkpoint dict describes, with its weights and facts, in eval mode.

    The returned model carries the checkpoint's :class:`~unetseg.models.meta.CheckpointMeta` as ``meta``
    (``normalization`` and ``classes`` read from it).
    """
    config = payload["model"]
    try:
        model = build_model(config["name"], **config["kwargs"])
    except Exception as err:  # noqa: BLE001  any constructor error means the stored arguments are bad
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnetsegError(f"checkpoint {source}: model {config['name']!r} cannot be built from its stored "
                           f"arguments ({message})") from None
    load_weights(model, payload["state_dict"], source)
    model.meta = read_meta(payload, source)
    return model.to(device).eval()


def read_meta(payload: dict[str, Any], source: str | os.PathLike = "checkpoint") -> CheckpointMeta:
    """The typed meta record of a checkpoint dict (either schema); damaged values are one UnetsegError line."""
    try:
        return CheckpointMeta.from_dict(payload.get("meta", {}))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise UnetsegError(f"checkpoint {source}: damaged meta data ({type(err).__name__}: {err})") from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> SegmentationModel:
    """Rebuild a model from a checkpoint file alone (see :func:`model_from_payload`), or, for an ``.xml`` path, load
    an OpenVINO IR that ``unetseg export`` wrote (:class:`unetseg.models.deployed.IRModel`: CPUs only).

    Examples:
        >>> import unetseg
        >>> model = unetseg.UNet(in_channels=1, num_classes=2, base_channels=4, depth=2, padding="same")
        >>> path = unetseg.save_checkpoint(model, "model.pt", class_names=["background", "cell"])
        >>> loaded = unetseg.load_model(path)
        >>> type(loaded).__name__, loaded.training, loaded.meta.classes.names
        ('UNet', False, ('background', 'cell'))
    """
    from .deployed import is_ir_path, load_ir

    if is_ir_path(path):
        if torch.device(device).type != "cpu":
            raise UnetsegError(f"{path}: an OpenVINO IR runs on the CPU, not {torch.device(device).type}")
        return load_ir(path)
    return model_from_payload(read_checkpoint(path), device, source=path)


def state_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer, bitwise: equal digests mean identical models."""
    h = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
