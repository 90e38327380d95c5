"""One split of a built-in sample dataset, and reading the sample files shipped in the package."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from .classes import ClassTable

SPLITS = ("train", "val")


@dataclass
class SampleSplit:
    """One split of a sample dataset.

    Attributes:
        images: list of HxW (or HxWxC) uint8 arrays.
        masks: list of HxW uint8 class-index maps, values in ``0..classes.num_classes-1``.
        instances: list of HxW int32 instance-id maps (0 = no object, ids 1..n per image, for the
            U-Net paper's border weight map), or ``None`` when the sample has no instances.
        classes: names and colours of the classes.
        info: provenance of this split (e.g. source columns or slice indices).
    """

    images: list[np.ndarray]
    masks: list[np.ndarray]
    instances: list[np.ndarray] | None
    classes: ClassTable
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)


def load_npz(filename: str) -> dict[str, np.ndarray]:
    ref = resources.files("unetseg.data").joinpath("samples", filename)
    with ref.open("rb") as f, np.load(f) as npz:
        return {k: npz[k] for k in npz.files}
