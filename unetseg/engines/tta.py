"""Test-time augmentation: (forward, inverse) pairs applied to tile batches, averaged in probability space.

``tta="auto"`` (the default everywhere) is the model's own choice: what training chose on the validation images
when it tuned the object post-processing (:class:`unetseg.models.meta.ObjectTuning`), else none.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import UnetsegError

TTAS = (None, "flips", "d4")

Transform = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def check_tta(tta: str | None) -> None:
    if tta not in TTAS and tta != "auto":
        raise UnetsegError(f"tta={tta!r} is not one of None, 'flips', 'd4', 'auto'")


def resolve_tta(model: Any, tta: str | None) -> str | None:
    """``tta``, with "auto" made ``model``'s tuned setting (its checkpoint's object tuning), else None."""
    if tta != "auto":
        return tta
    tuned = getattr(getattr(model, "meta", None), "object_tuning", None)
    return getattr(tuned, "tta", None)


def tta_transforms(tta: str | None, dims: int = 2) -> list[Transform]:
    """(forward, inverse) pairs on NCHW tensors (``dims=3``: NCDHW): identity; "flips": + every combination of axis
    flips (3 in 2D, 7 in 3D); "d4": the 8 of the dihedral group of the (H, W) plane."""
    def flip(dims: tuple[int, ...]) -> Transform:
        return (lambda x: torch.flip(x, dims)), (lambda y: torch.flip(y, dims))

    def rot(k: int, flip_w: bool) -> Transform:
        def forward(x: torch.Tensor) -> torch.Tensor:
            return torch.rot90(torch.flip(x, (-1,)) if flip_w else x, k, (-2, -1))

        def inverse(y: torch.Tensor) -> torch.Tensor:
            y = torch.rot90(y, -k, (-2, -1))
            return torch.flip(y, (-1,)) if flip_w else y
        return forward, inverse

    check_tta(tta)
    identity: Transform = (lambda x: x), (lambda y: y)
    if tta is None:
        return [identity]
    if tta == "flips":
        axes = [-a for a in range(1, dims + 1)]  # W, H (, D)
        subsets = [tuple(a for bit, a in enumerate(axes) if mask >> bit & 1) for mask in range(1, 2**dims)]
        return [identity, *(flip(s) for s in subsets)]
    return [rot(k, f) for f in (False, True) for k in range(4)]
