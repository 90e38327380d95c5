"""Training: the loop, checkpoints with exact resume, DDP under torchrun, run folders and plots.

``train`` and ``RunResult`` are loaded on first use: ``unetseg plan`` (``unetseg.training.plan``) needs none of the
trainer's modules, which took 1.25 s of its start."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .trainer import RunResult, train

__all__ = ["RunResult", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
