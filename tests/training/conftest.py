import copy

import pytest

from unetseg.config import RunConfig, validate_config

TINY = {
    "model": {"name": "unet", "base_channels": 4, "depth": 2, "padding": "valid", "dropout": 0.2},
    "data": {"source": "sample", "sample": "nuclei", "patch_size": 64, "patches_per_epoch": 8},
    "train": {"epochs": 2, "batch_size": 2, "lr": 0.003, "amp": "off", "deterministic": True,
              "val_tile_size": 128, "plot_samples": 1},
}


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def make_config(**sections) -> RunConfig:
    """``make_config(train={...}, ...)`` -> a RunConfig for a seconds-long nuclei run."""
    return validate_config(merge(TINY, sections), "tiny")


@pytest.fixture
def tiny_config():
    return make_config
