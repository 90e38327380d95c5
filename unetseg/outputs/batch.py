"""A batch of inputs: finding them (without reading back earlier outputs) and splitting them across processes
(``--shard I/N`` or torchrun's RANK/WORLD_SIZE).

Every process sorts the same input list and takes every N-th file from its own index, so the shards cover
the inputs exactly once, with no coordination between processes.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UnetsegError
from ..io.source import find_images
from .naming import skip_outputs


def find_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files named or inside the folders named (:func:`unetseg.io.source.find_images`), leaving out
    unetseg's own outputs next to their inputs."""
    return find_images(inputs, skip=skip_outputs)


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``; ``local_rank`` picks this process's GPU under torchrun."""

    index: int = 0
    count: int = 1
    local_rank: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``--shard I/N`` with 0 <= I < N."""
        index, _, count = text.partition("/")
        if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
            raise UnetsegError(f"--shard {text!r}: expected I/N with 0 <= I < N (e.g. 0/4 ... 3/4)")
        return cls(int(index), int(count))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Shard":
        """torchrun's RANK / WORLD_SIZE / LOCAL_RANK; one shard of one when they are absent."""
        try:
            world = int(environ.get("WORLD_SIZE", "1"))
            rank = int(environ.get("RANK", "0"))
            local = environ.get("LOCAL_RANK")
            shard = cls(rank, world, None if local is None else int(local))
        except ValueError:
            raise UnetsegError("RANK/WORLD_SIZE/LOCAL_RANK must be integers") from None
        if not 0 <= shard.index < shard.count:
            raise UnetsegError(f"RANK={shard.index} is not below WORLD_SIZE={shard.count}")
        return shard

    def select(self, files: Sequence[Path]) -> list[Path]:
        """This shard's files: every ``count``-th of the sorted list, from ``index``."""
        return sorted(files, key=os.fspath)[self.index :: self.count]

    def device(self, device: torch.device) -> torch.device:
        """Under torchrun, a bare ``cuda`` becomes this process's own GPU (``cuda:LOCAL_RANK``)."""
        if device.type == "cuda" and device.index is None and self.local_rank is not None:
            return torch.device("cuda", self.local_rank)
        return device
