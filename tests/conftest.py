from __future__ import annotations

import numpy as np
import pytest
import torch

import unetseg
from unetseg.inference.grid import Geometry


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


def whole_image_probs(model, image: np.ndarray, context: int) -> np.ndarray:
    """Reference: the model applied once to the mirror-padded (np.pad reflect) image, then cropped. HxWxK."""
    geometry = Geometry.of(model)
    height, width = image.shape[:2]

    def after(n: int) -> int:  # bottom/right padding that makes the padded side a size the model accepts
        return geometry.smallest_valid_at_least(n + 2 * context) - n - context

    x = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    x = x[..., None] if x.ndim == 2 else x
    x = np.pad(x, ((context, after(height)), (context, after(width)), (0, 0)), mode="reflect")
    with torch.inference_mode():
        logits = model(torch.from_numpy(x).permute(2, 0, 1)[None].contiguous())
    probs = torch.softmax(logits, 1)[0].permute(1, 2, 0).numpy()
    offset = 0 if geometry.padding == "valid" else context
    return probs[offset : offset + height, offset : offset + width]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def dask_cluster():
    """One in-process Dask LocalCluster (2 workers x 1 thread) shared by every Dask test; shut down at the end."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture
def dask_client(dask_cluster):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(dask_cluster) as client:
        yield client
