"""Model registry: ``@register_model`` next to each model's definition, ``build_model(name, **kwargs)`` for
callers that should not know classes (as timm does)."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from .base import SegmentationModel

_REGISTRY: dict[str, Callable[..., SegmentationModel]] = {}
# the class behind each name, and constructor arguments a name fixes (smp: the architecture)
_CLASSES: dict[str, type[SegmentationModel]] = {}
_FIXED: dict[str, set[str]] = {}

M = TypeVar("M", bound=type[SegmentationModel])


def register_model(name: str, **fixed: Any) -> Callable[[M], M]:
    """Class decorator: make ``cls`` buildable as ``build_model(name, **kwargs)``.

    ``fixed`` constructor arguments are bound by the name (``register_model("smp-fpn", arch="fpn")``).
    """
    def decorate(cls: M) -> M:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = (lambda **kw: cls(**fixed, **kw)) if fixed else cls
        _CLASSES[name] = cls
        _FIXED[name] = set(fixed)
        return cls
    return decorate


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    _load_builtin_models()
    return sorted(_REGISTRY)


def model_kwarg_names(name: str) -> tuple[set[str], bool]:
    """Keyword arguments model ``name`` accepts, and whether it also takes arbitrary extra ones."""
    _load_builtin_models()
    params = inspect.signature(_CLASSES[name].__init__).parameters
    names = {p for p, v in params.items() if p != "self" and v.kind is not inspect.Parameter.VAR_KEYWORD}
    return names - _FIXED[name], any(v.kind is inspect.Parameter.VAR_KEYWORD for v in params.values())


def build_model(name: str, **kwargs: Any) -> SegmentationModel:
    """Build a model by registry name ("unet", "autoencoder", "smp-unet", "smp-fpn", ...).

    Examples:
        >>> import unetseg
        >>> model = unetseg.build_model("unet", in_channels=3, num_classes=2, base_channels=8, depth=3)
        >>> type(model).__name__, model.num_classes
        ('UNet', 2)
        >>> "autoencoder" in unetseg.list_models()
        True
    """
    _load_builtin_models()
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as err:  # an unknown keyword: say which model rejected it
        raise ValueError(f"model {name!r}: {err}") from None


def _load_builtin_models() -> None:
    from . import autoencoder, smp, unet  # noqa: F401  (their @register_model lines fill the registry)
