"""Fine-tuning (``train --init CKPT``): a run that starts from a trained checkpoint's weights.

- The architecture is the checkpoint's: the run's ``model:`` section may repeat it but not change it
  (:func:`with_parent_architecture`); the input bands must match.
- Same classes (names): every weight as it is. Other classes: the head is rebuilt, and its rows of classes whose
  names match are kept (:func:`initial_weights`).
- The checkpoint's normalisation is kept unless the new data's statistics differ markedly; then the data's are
  used, with a one-line warning (:func:`choose_normalization`).
- ``train.freeze_encoder_epochs``: the encoder's learning rate is 0 for the first epochs (its batch-norm statistics
  still adapt to the new data); the run files record the parent.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import RunConfig
from ..data.classes import ClassTable
from ..data.normalization import Normalization
from ..errors import UnetsegError
from ..models.base import SegmentationModel
from ..models.checkpoint import model_from_payload, read_checkpoint

# the data's mean of a band more than this many of the checkpoint's standard deviations away, or a standard
# deviation off by more than this factor, makes the checkpoint's normalisation unfit for the new data
MEAN_SHIFT_STDS = 1.0
STD_FACTOR = 2.0


@dataclass(frozen=True)
class Parent:
    """The checkpoint a run starts from: its path, model (with meta) and architecture."""

    path: Path
    model: SegmentationModel

    @classmethod
    def load(cls, path: str | Path) -> Parent:
        payload = read_checkpoint(path)
        return cls(Path(path), model_from_payload(payload, source=path))

    @property
    def classes(self) -> ClassTable:
        return self.model.class_table

    @property
    def architecture(self) -> tuple[str, dict[str, Any]]:
        """Registry name and constructor kwargs without ``in_channels`` and ``num_classes`` (the data sets them)."""
        config = self.model.config
        kwargs = {k: v for k, v in config["kwargs"].items() if k not in ("in_channels", "num_classes")}
        return config["name"], kwargs


def with_parent_architecture(config: RunConfig) -> RunConfig:
    """``config`` with its model section made the ``train.init`` checkpoint's architecture (unchanged without
    init). A model key given in the config that differs from the checkpoint's is one line naming both values."""
    if config.train.init is None:
        return config
    parent = Parent.load(config.train.init)
    name, kwargs = parent.architecture
    given = config.model
    if "name" in given.model_fields_set and given.name != name:
        raise UnetsegError(f"model.name={given.name!r} but --init {parent.path} is a {name!r}; fine-tuning keeps the "
                           "checkpoint's architecture (drop model.name)")
    for key, value in given.kwargs.items():
        if key in kwargs and kwargs[key] != value:
            raise UnetsegError(f"model.{key}={value!r} but --init {parent.path} was trained with {kwargs[key]!r}; "
                               "fine-tuning keeps the checkpoint's architecture")
    merged = config.model_copy(deep=True)
    data_keys = {k: v for k, v in given.kwargs.items() if k in ("in_channels", "num_classes")}
    merged.model = type(given).model_validate({"name": name, **kwargs, **data_keys})
    return merged


def choose_normalization(parent: Normalization | None, data: Normalization) -> tuple[Normalization, str | None]:
    """The checkpoint's normalisation when it fits the data, else the data's with a warning line."""
    if parent is None:
        return data, None
    channels = len(data.mean)

    def band(values: tuple[float, ...], i: int) -> float:
        return values[i] if len(values) > 1 else values[0]

    for i in range(channels):
        pm, ps, dm, ds = band(parent.mean, i), band(parent.std, i), band(data.mean, i), band(data.std, i)
        if abs(dm - pm) > MEAN_SHIFT_STDS * ps or not 1 / STD_FACTOR <= ds / ps <= STD_FACTOR:
            return data, (f"the data's band {i} (mean {dm:.4g}, std {ds:.4g}) differs markedly from the --init "
                          f"checkpoint's normalisation (mean {pm:.4g}, std {ps:.4g}): normalising with the data's "
                          "statistics")
    return parent, None


def head_keys(model: SegmentationModel) -> list[str]:
    """State-dict keys of the head: the last convolution whose output channels are the classes."""
    head = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.out_channels == model.num_classes:
            head = name
    if head is None:
        raise UnetsegError(f"model {model.config['name']!r}: no convolution with {model.num_classes} outputs to "
                           "rebuild as the head")
    return [f"{head}.{p}" for p, _ in model.get_submodule(head).named_parameters()]


def initial_weights(model: SegmentationModel, parent: SegmentationModel, classes: ClassTable) -> list[str]:
    """Copy ``parent``'s weights into ``model`` (freshly built for ``classes``). Returns the class names whose head
    rows start fresh (none when the classes are the parent's)."""
    if parent.in_channels != model.in_channels:
        raise UnetsegError(f"the --init checkpoint takes {parent.in_channels} band(s); the data has "
                           f"{model.in_channels}")
    old_names = list(parent.class_table.names)
    new_names = list(classes.names)
    state = parent.state_dict()
    own = model.state_dict()
    head = set(head_keys(model)) if old_names != new_names else set()
    rows = [(i, old_names.index(n)) for i, n in enumerate(new_names) if n in old_names]
    with torch.no_grad():
        for key, value in own.items():
            if key not in state:
                raise UnetsegError(f"the --init checkpoint has no weight {key!r}; it is not this architecture")
            source = state[key]
            if key in head:
                for new, old in rows:
                    value[new] = source[old]
            elif source.shape == value.shape:
                value.copy_(source)
            else:
                raise UnetsegError(f"the --init checkpoint's weight {key!r} has shape {tuple(source.shape)}, this "
                                   f"model's {tuple(value.shape)}")
    model.load_state_dict(own)
    return [n for n in new_names if n not in old_names]


def encoder_parameters(model: SegmentationModel) -> list[nn.Parameter]:
    params = [p for m in model.encoder_modules() for p in m.parameters()]
    if not params:
        raise UnetsegError(f"train.freeze_encoder_epochs: model {model.config['name']!r} declares no encoder")
    return params
