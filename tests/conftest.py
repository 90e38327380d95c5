from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import unetseg
from unetseg.models.geometry import Geometry
from unetseg.tiling.autotile import CONVERT_AFTER_SECONDS  # noqa: F401  the real threshold, for the engine tests
from unetseg.tiling.tuning import ENV as TUNING_CACHE

# Every test (and every process a test starts) measures its own choices: a choice remembered from another test, or
# from a developer's runs, would skip the timing a test checks, and stand-in engines' fake timings must not be kept.
# tests/tiling/test_tuning.py turns the cache on where it is the subject.
os.environ[TUNING_CACHE] = "off"


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and BatchNorm running statistics (so BN is not the identity), eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.copy_(torch.rand(mod.num_features, generator=gen) * 0.4 - 0.2)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=gen) * 1.5 + 0.5)
                mod.weight.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
                mod.bias.copy_(torch.rand(mod.num_features, generator=gen) * 0.2 - 0.1)
    return model.eval()


def tiny_unet(padding: str, depth: int = 3, in_channels: int = 1, num_classes: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return randomized(unetseg.UNet(in_channels, num_classes, base_channels=4, depth=depth, padding=padding), seed)


def whole_image_probs(model, image: np.ndarray, context: int, autocast: torch.dtype | None = None) -> np.ndarray:
    """Reference: the model applied once (eagerly, under ``autocast`` if given) to the mirror-padded (np.pad
    reflect) image, then cropped. HxWxK."""
    geometry = Geometry.of(model)
    height, width = image.shape[:2]

    def after(n: int) -> int:  # bottom/right padding that makes the padded side a size the model accepts
        return geometry.smallest_valid_at_least(n + 2 * context) - n - context

    x = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    x = x[..., None] if x.ndim == 2 else x
    x = np.pad(x, ((context, after(height)), (context, after(width)), (0, 0)), mode="reflect")
    with torch.inference_mode(), torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        logits = model(torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()).float()
    probs = torch.softmax(logits, 1)[0].permute(1, 2, 0).numpy()
    offset = 0 if geometry.padding == "valid" else context
    return probs[offset : offset + height, offset : offset + width]


@pytest.fixture(autouse=True)
def auto_engine_stays_on_torch(monkeypatch):
    """engine="auto" converts the model to another engine only where a test asks for it (tests/inference/
    test_engines.py): the CLI tests' tiny models on tiny tiles would otherwise convert in every test."""
    from unetseg.tiling import autotile

    monkeypatch.setattr(autotile, "CONVERT_AFTER_SECONDS", float("inf"))
    monkeypatch.setattr(autotile, "_TORCH_WORK", {})  # each test starts as a new process would: no torch work yet


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def briefly_trained_unet(padding: str = "same", steps: int = 60, seed: int = 0) -> unetseg.UNet:
    """A small U-Net fitted for a few Adam steps on the nuclei sample: decisive away from object boundaries, as
    trained models are (a random network's labels are near-ties everywhere). Eval mode, with BN statistics."""
    from unetseg.data.samples import load_sample

    torch.manual_seed(seed)
    sample = load_sample("nuclei", "train")
    image = torch.from_numpy(sample.images[0]).float().div(255)
    mask = torch.from_numpy(sample.masks[0].astype(np.int64))
    model = unetseg.UNet(1, 2, base_channels=8, depth=3, padding=padding)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = np.random.default_rng(seed)
    side = 124 if padding == "valid" else 128
    out = model.output_size(side)
    for _ in range(steps):
        r, c = gen.integers(0, image.shape[0] - side), gen.integers(0, image.shape[1] - side)
        x = image[r : r + side, c : c + side][None, None]
        m = (side - out) // 2
        y = mask[r + m : r + m + out, c + m : c + m + out][None]
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def trained_same_unet() -> unetseg.UNet:
    return briefly_trained_unet("same")


@pytest.fixture(scope="session")
def dask_cluster():
    """One in-process Dask LocalCluster (2 workers x 1 thread) shared by every Dask test; shut down at the end."""
    pytest.importorskip("distributed")
    from unetseg.scale.dask import local_cluster

    with local_cluster(n_workers=2, threads_per_worker=1, processes=False) as cluster:
        yield cluster


@pytest.fixture
def dask_client(dask_cluster):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(dask_cluster) as client:
        yield client
