"""An ensemble of trained models (folds, seeds) as one model: its logits are the log of the members' mean
probabilities, so softmax of them is that mean and everything that runs a model (tiling, TTA, engines, Dask)
runs an ensemble unchanged.

Members share their architecture's geometry and their classes; each keeps its own input normalisation
(folds see different training pixels): the ensemble's input is normalised as member 0's, and each other
member gets it re-normalised as its own, inside the graph.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..data.normalization import Normalization
from ..errors import UnetsegError
from .base import SegmentationModel
from .meta import HaloRecord

LOG_FLOOR = 1e-12  # keeps log(probability) finite for the engines (a class no member gives any weight)


def _affine(first: Normalization, member: Normalization, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` per channel with ``x_member = a * x_first + b`` for the same raw pixel."""
    if (first.scale is None) != (member.scale is None):
        raise UnetsegError("ensemble members normalise by the image dtype and by a fixed scale; retrain one of them "
                           "so that both do the same")
    if first.clip != member.clip or first.per_image != member.per_image:
        raise UnetsegError("ensemble members clip intensities (CT) or normalise per image (zscore) differently; "
                           "ensemble checkpoints trained with the same data.normalize on the same data")
    ratio = 1.0 if first.scale is None else first.scale / member.scale  # type: ignore[operator]

    def per_channel(values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values * (channels if len(values) == 1 else 1), dtype=torch.float32)

    m0, s0 = per_channel(first.mean), per_channel(first.std)
    m1, s1 = per_channel(member.mean), per_channel(member.std)
    # raw / scale0 = x0 * s0 + m0  ->  x1 = (raw / scale1 - m1) / s1
    a = s0 * ratio / s1
    b = (m0 * ratio - m1) / s1
    return a.view(1, -1, 1, 1), b.view(1, -1, 1, 1)


class Ensemble(SegmentationModel):
    """``Ensemble([m1, m2, ...])``: NCHW input normalised as ``m1`` expects -> NCHW "logits" = log of the
    members' mean softmax (sigmoid for 1-class members: the logit of the mean probability).

    Args:
        members: trained unetseg models with the same size rule (architecture depth and padding), input channels
            and classes; in eval mode for inference.
        expected_entropy: also return, as one extra channel, the members' mean per-pixel entropy (nats): with the
            entropy of the mean it gives the members' disagreement (mutual information). Used by the uncertainty
            output; see :meth:`with_expected_entropy`.

    The ensemble's meta is member 0's, with the largest measured halo of the members (none if any lacks one).
    """

    registry_name = "ensemble"

    def __init__(self, members: Sequence[SegmentationModel], *, expected_entropy: bool = False) -> None:
        super().__init__()
        members = list(members)
        check_members(members)
        first = members[0]
        self.members = nn.ModuleList(members)
        self.size_rule, self.size_rules, self.spatial_dims = first.size_rule, first.axis_rules, first.spatial_dims
        self.in_channels, self.num_classes = first.in_channels, first.num_classes
        self.expected_entropy = expected_entropy
        halos = [m.meta.halo for m in members]
        halo = None if any(h is None for h in halos) else max(halos, key=lambda h: h.pixels)  # type: ignore[union-attr]
        self.meta = replace(first.meta, halo=halo if isinstance(halo, HaloRecord) else None)
        norm0 = first.normalization or Normalization()
        for i, member in enumerate(members):
            a, b = _affine(norm0, member.normalization or Normalization(), first.in_channels)
            self.register_buffer(f"scale{i}", a, persistent=False)
            self.register_buffer(f"shift{i}", b, persistent=False)
        self._variant: Ensemble | None = None

    @property
    def field_radius(self) -> int | None:
        radii = [m.field_radius for m in self.members]
        return None if any(r is None for r in radii) else max(radii)  # type: ignore[type-var]

    def with_expected_entropy(self) -> Ensemble:
        """The same members (shared, not copied) returning the extra expected-entropy channel; made once."""
        if self.expected_entropy:
            return self
        if self._variant is None:
            variant = Ensemble(list(self.members), expected_entropy=True)
            variant.meta = self.meta
            object.__setattr__(self, "_variant", variant)  # not a submodule: the members are already ours
        return self._variant  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        mean = None
        entropy = None
        for i, member in enumerate(self.members):
            logits = member(x * getattr(self, f"scale{i}").to(x.dtype) + getattr(self, f"shift{i}").to(x.dtype))
            logits = logits.float()
            if logits.shape[1] == 1:
                p1 = torch.sigmoid(logits)
                probs = torch.cat([1 - p1, p1], dim=1)
            else:
                probs = torch.softmax(logits, dim=1)
            mean = probs if mean is None else mean + probs
            if self.expected_entropy:
                h = -(probs * torch.log(probs.clamp_min(LOG_FLOOR))).sum(1, keepdim=True)
                entropy = h if entropy is None else entropy + h
        n = len(self.members)
        mean = mean / n  # type: ignore[operator]
        if self.num_classes == 1:
            p = mean[:, 1:2].clamp(LOG_FLOOR, 1 - LOG_FLOOR)
            out = torch.log(p) - torch.log1p(-p)
        else:
            out = torch.log(mean.clamp_min(LOG_FLOOR))
        return torch.cat([out, entropy / n], dim=1) if self.expected_entropy else out  # type: ignore[operator]


def check_members(members: Sequence[nn.Module]) -> None:
    """One line naming the first member that cannot join member 0 (not a unetseg model, another geometry,
    other input channels or classes)."""
    if not members:
        raise UnetsegError("an ensemble needs at least one model")
    first = members[0]
    for i, member in enumerate(members):
        if not isinstance(member, SegmentationModel):
            raise UnetsegError(f"ensemble member {i} is a {type(member).__name__}, not a unetseg model "
                               "(load it with unetseg.load_model)")
        if getattr(member, "runs_on", None) and len(members) > 1:
            raise UnetsegError(f"ensemble member {i} is an exported graph ({getattr(member, 'source', 'an IR')}), "
                               "which runs alone; ensemble the checkpoints it was exported from")
        if i == 0:
            continue
        for what, a, b in (("size rule (depth, padding, pooling)", member.axis_rules, first.axis_rules),
                           ("input channels", member.in_channels, first.in_channels),
                           ("classes", member.num_classes, first.num_classes),
                           ("class names", member.class_table.names, first.class_table.names)):
            if a != b:
                raise UnetsegError(f"ensemble member {i} has {what} {a}, member 0 has {b}: an ensemble's members "
                                   "must share them")


def member_count(model: nn.Module) -> int:
    """How many models a forward of ``model`` runs (1 unless it is an :class:`Ensemble`)."""
    return len(model.members) if isinstance(model, Ensemble) else 1


_ENSEMBLES: OrderedDict[tuple[int, ...], Ensemble] = OrderedDict()
KEEP_ENSEMBLES = 4  # the ensembles made from lists a program keeps passing (their graphs are cached on them)


def as_model(model: nn.Module | Sequence[nn.Module]) -> nn.Module:
    """``model``, or the :class:`Ensemble` of a list of models (one of one list is that model); the same list of the
    same models gives the same ensemble object, so its inference graph is built once."""
    if isinstance(model, nn.Module):
        return model
    if not isinstance(model, (list, tuple)):
        raise UnetsegError(f"model must be a model or a list of models, got {type(model).__name__}")
    members = list(model)
    if len(members) == 1:
        return members[0]
    key = tuple(id(m) for m in members)
    found = _ENSEMBLES.get(key)
    if found is not None and all(a is b for a, b in zip(found.members, members, strict=True)):
        _ENSEMBLES.move_to_end(key)
        return found
    ensemble = Ensemble(members)
    _ENSEMBLES[key] = ensemble
    while len(_ENSEMBLES) > KEEP_ENSEMBLES:
        _ENSEMBLES.popitem(last=False)
    return ensemble


def checkpoint_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Checkpoint files named by ``paths``: files as given; a folder of fold runs (``fold*/best.pt``, what
    ``train --folds`` writes) gives each fold's best.pt, a run folder its best.pt. One line for anything else."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            folds = sorted(path.glob("fold*/best.pt"))
            if folds:
                found += folds
            elif (path / "best.pt").is_file():
                found.append(path / "best.pt")
            else:
                raise UnetsegError(f"--checkpoint {path}: a folder without best.pt or fold*/best.pt")
        else:
            raise UnetsegError(f"--checkpoint {path}: no such checkpoint file or folder")
    return found


def entropy_bound(num_classes: int) -> float:
    """The largest predictive entropy of ``num_classes`` classes (a 1-class sigmoid model has 2 outcomes), nats."""
    return math.log(max(num_classes, 2))
