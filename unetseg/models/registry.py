"""Model registry: ``build_model(name, **kwargs)`` keeps callers ignorant of classes (as timm does)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .autoencoder import ConvAutoencoder
from .base import SegmentationModel
from .smp import SMP_ARCHS, SmpModel
from .unet import UNet

_REGISTRY: dict[str, Callable[..., SegmentationModel]] = {
    "unet": UNet,
    "autoencoder": ConvAutoencoder,
    **{f"smp-{arch}": (lambda arch: lambda **kw: SmpModel(arch=arch, **kw))(arch) for arch in SMP_ARCHS},
}


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_REGISTRY)


def build_model(name: str, **kwargs: Any) -> SegmentationModel:
    """Build a model by registry name ("unet", "autoencoder", "smp-unet", "smp-fpn", ...)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as err:  # an unknown keyword: say which model rejected it
        raise ValueError(f"model {name!r}: {err}") from None
