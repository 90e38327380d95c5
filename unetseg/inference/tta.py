"""Test-time augmentation: (forward, inverse) pairs applied to tile batches, averaged in probability space."""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import UnetsegError

TTAS = (None, "flips", "d4")

Transform = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def check_tta(tta: str | None) -> None:
    if tta not in TTAS:
        raise UnetsegError(f"tta={tta!r} is not one of None, 'flips', 'd4'")


def tta_transforms(tta: str | None) -> list[Transform]:
    """(forward, inverse) pairs on NCHW tensors: identity; + 3 flips ("flips"); + the 8 of the dihedral group ("d4")."""
    def flip(dims: tuple[int, ...]) -> Transform:
        return (lambda x: torch.flip(x, dims)), (lambda y: torch.flip(y, dims))

    def rot(k: int, flip_w: bool) -> Transform:
        def forward(x: torch.Tensor) -> torch.Tensor:
            return torch.rot90(torch.flip(x, (3,)) if flip_w else x, k, (2, 3))

        def inverse(y: torch.Tensor) -> torch.Tensor:
            y = torch.rot90(y, -k, (2, 3))
            return torch.flip(y, (3,)) if flip_w else y
        return forward, inverse

    check_tta(tta)
    identity: Transform = (lambda x: x), (lambda y: y)
    if tta is None:
        return [identity]
    if tta == "flips":
        return [identity, flip((3,)), flip((2,)), flip((2, 3))]
    return [rot(k, f) for f in (False, True) for k in range(4)]
