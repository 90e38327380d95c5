"""Checkpoints: weights + the model's constructor config + meta (normalisation, class names/colours).

Loading uses ``torch.load(weights_only=True)``: a checkpoint holds tensors and plain Python data
only, so loading one never runs code from the file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.normalization import Normalization
from ..errors import UnetsegError
from ..fileio import atomic_path
from .base import SegmentationModel
from .registry import build_model

CHECKPOINT_FORMAT = "unetseg-checkpoint-v1"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def _plain(value: Any) -> Any:
    """Meta values as plain data (weights_only loads accept nothing else)."""
    if isinstance(value, Normalization):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def checkpoint_payload(model: nn.Module, **meta: Any) -> dict[str, Any]:
    """The dict that :func:`save_checkpoint` writes; training adds optimizer/scheduler/RNG state to it."""
    bare = unwrap(model)
    if not isinstance(bare, SegmentationModel):
        raise TypeError(f"save_checkpoint needs a unetseg model (from build_model), got {type(bare).__name__}")
    state = {k: v.detach().cpu() for k, v in bare.state_dict().items()}
    return {"format": CHECKPOINT_FORMAT, "model": bare.config, "state_dict": state, "meta": _plain(meta)}


def write_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Atomically write a checkpoint dict: a crash mid-write never leaves a corrupt file at ``path``."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **meta: Any) -> Path:
    """Save weights + constructor config + ``meta`` (e.g. normalization=..., class_names=[...],
    class_colors=[[r, g, b], ...]) to ``path`` atomically. Returns the path."""
    return write_checkpoint(checkpoint_payload(model, **meta), path)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely (weights_only); a missing or foreign file is a one-line UnetsegError."""
    if not os.path.isfile(path):
        raise UnetsegError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated/foreign files
        raise UnetsegError(f"checkpoint {path} cannot be read: {str(err).splitlines()[0]}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UnetsegError(f"{path} is not a unetseg checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    return payload


def model_from_payload(payload: dict[str, Any], device: str | torch.device = "cpu") -> SegmentationModel:
    """Rebuild the model a checkpoint dict describes, with its weights and meta attached, in eval mode.

    The returned model carries ``normalization`` (a Normalization), ``class_names``, ``class_colors``
    and ``meta`` (the whole meta dict).
    """
    config = payload["model"]
    model = build_model(config["name"], **config["kwargs"])
    model.load_state_dict(payload["state_dict"])
    meta = payload.get("meta", {})
    model.meta = meta
    model.normalization = Normalization.from_dict(meta.get("normalization"))
    model.class_names = meta.get("class_names")
    model.class_colors = meta.get("class_colors")
    return model.to(device).eval()


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> SegmentationModel:
    """Rebuild a model from a checkpoint file alone (see :func:`model_from_payload`)."""
    return model_from_payload(read_checkpoint(path), device)
