"""Data: sample datasets, folder datasets, augmentation, weight maps, normalisation."""
from .normalization import Normalization
from .classes import ClassTable
from .samples import FashionScenes, SampleSplit, list_samples, load_sample
from .config import AugmentConfig, DataConfig, WeightMapConfig, parse_data_config
from .folder import folder_splits, load_folder, read_image, read_mask
from .weightmap import border_weight_map, class_balance_weights

# Augmentation and training datasets import albumentations and torch (seconds): loaded on first use,
# so `import unetseg` for inference does not pay for them.
_LAZY = {
    "Augmenter": "augment", "PaperElasticDeform": "augment", "build_augmentation": "augment",
    "TrainPatches": "dataset", "ValImages": "dataset", "build_datasets": "dataset",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
