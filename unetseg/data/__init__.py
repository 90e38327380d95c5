"""Data: sample datasets, folder datasets, augmentation, weight maps, normalisation."""
from typing import Any

from .classes import ClassTable
from .folder import folder_splits, load_folder, read_mask
from .normalization import Normalization
from .samples import FashionScenes, SampleSplit, list_samples, load_sample
from .weightmap import border_weight_map, class_balance_weights

__all__ = [
    "ClassTable", "FashionScenes", "Normalization", "SampleSplit", "border_weight_map", "class_balance_weights",
    "folder_splits", "list_samples", "load_folder", "load_sample", "read_mask",
]

# Augmentation and training datasets import albumentations and torch (seconds): loaded on first use,
# so `import unetseg` for inference does not pay for them.
_LAZY = {
    "Augmenter": "augment", "PaperElasticDeform": "augment", "build_augmentation": "augment",
    "TrainPatches": "dataset", "ValImages": "dataset",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
