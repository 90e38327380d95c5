"""Run configs: pydantic models for the YAML files in ``configs/`` and ``--set`` overrides.

A run config has four sections::

    model: {name: unet, base_channels: 32, depth: 3, ...}   # registry name + constructor kwargs
    data:  {...}                                            # unetseg.config.data.DataConfig
    train: {epochs: 30, batch_size: 8, optimizer: adam, lr: 1e-3, amp: auto, ...}
    loss:  {ce: 1.0, dice: 0.0, ...}
    display: {bands: [3, 2, 1]}                             # optional: preview bands

Every section rejects unknown keys. :func:`load_config` turns any problem (missing file, bad YAML,
unknown key, bad value) into one :class:`~unetseg.errors.UnetsegError` line naming the dotted key
and the offending value.
"""
from __future__ import annotations

import os
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..models import list_models, model_kwarg_names
from .base import Strict, apply_overrides, read_yaml, validate_section
from .data import DataConfig, DisplayConfig

__all__ = ["LossConfig", "ModelConfig", "RunConfig", "TrainConfig", "config_to_yaml", "load_config",
           "validate_config"]


class ModelConfig(BaseModel):
    """``name`` (a :func:`unetseg.build_model` registry name) plus that model's constructor kwargs,
    written flat: ``{name: unet, base_channels: 32, depth: 3, padding: same}``.

    ``in_channels`` / ``num_classes`` are filled from the data when omitted.
    """

    model_config = ConfigDict(extra="allow")

    name: str = "unet"

    @field_validator("name")
    @classmethod
    def _known_name(cls, value: str) -> str:
        if value not in list_models():
            raise ValueError(f"unknown model; choose from {', '.join(list_models())}")
        return value

    @model_validator(mode="after")
    def _known_kwargs(self) -> ModelConfig:
        accepted, open_ended = model_kwarg_names(self.name)
        if not open_ended:
            unknown = sorted(set(self.kwargs) - accepted)
            if unknown:
                raise ValueError(
                    f"unknown key {unknown[0]!r} for model {self.name!r}; valid: {', '.join(sorted(accepted))}"
                )
        return self

    @property
    def kwargs(self) -> dict[str, Any]:
        """The constructor kwargs (everything but ``name``)."""
        return dict(self.model_extra or {})


class TrainConfig(Strict):
    """Optimisation settings. Training stops at ``epochs`` or ``time_budget_minutes``, whichever
    comes first (at least one must be set); a budget stop finishes the current step, validates and saves."""

    epochs: int | None = Field(50, ge=1)
    time_budget_minutes: float | None = Field(None, gt=0)
    batch_size: int = Field(4, ge=1)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.99, ge=0, lt=1)  # SGD only; 0.99 as in the U-Net paper
    weight_decay: float = Field(0.0, ge=0)
    scheduler: Literal["none", "cosine", "step", "poly"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    step_milestones: list[float] = Field(default_factory=lambda: [0.5, 0.75])  # fractions of training
    step_gamma: float = Field(0.1, gt=0)
    poly_power: float = Field(0.9, gt=0)
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: bool = True  # NHWC: nuclei config 9.0 -> 10.0 img/s in bf16, 5.6 -> 5.9 in fp32 (AVX512-BF16 EPYC)
    seed: int = 0
    deterministic: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    val_every: int = Field(1, ge=1)  # epochs
    val_tile_size: int | Literal["auto"] = 512  # validation tiles; shrunk to what each image needs
    log_every: int = Field(10, ge=1)  # steps between progress-bar refreshes
    grad_clip: float | None = Field(None, gt=0)  # max global grad norm
    # decay of a moving average of the weights that validation scores and best.pt holds (0: off; 0.999: about
    # the last thousand steps, with a warm-up): unetseg.training.ema
    ema: float = Field(0.0, ge=0, lt=1)
    plot_samples: int = Field(4, ge=0)  # validation images in the sample grid
    init: str | None = None  # fine-tune: start from this checkpoint's weights (`train --init`)
    freeze_encoder_epochs: int = Field(0, ge=0)  # with init: the encoder's learning rate is 0 for these epochs

    @field_validator("amp", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` / `on` as a boolean
        return {False: "off", True: "auto"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("step_milestones")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 < v < 1 for v in value):
            raise ValueError("milestones are fractions of training, each strictly between 0 and 1")
        return sorted(value)

    @model_validator(mode="after")
    def _has_a_stop(self) -> TrainConfig:
        if self.epochs is None and self.time_budget_minutes is None:
            raise ValueError("set train.epochs and/or train.time_budget_minutes")
        if self.freeze_encoder_epochs and self.init is None:
            raise ValueError("freeze_encoder_epochs needs train.init (a checkpoint whose encoder to keep)")
        return self


class LossConfig(Strict):
    """Weights of the loss terms (see :class:`unetseg.losses.SegmentationLoss`)."""

    ce: float = Field(1.0, ge=0)  # the paper's weighted cross-entropy (uses the data's weight map)
    dice: float = Field(0.0, ge=0)
    focal: float = Field(0.0, ge=0)
    lovasz: float = Field(0.0, ge=0)
    focal_gamma: float = Field(2.0, ge=0)
    class_weights: list[float] | None = None

    @model_validator(mode="after")
    def _something(self) -> LossConfig:
        if self.ce + self.dice + self.focal + self.lovasz <= 0:
            raise ValueError("at least one of loss.ce, loss.dice, loss.focal, loss.lovasz must be > 0")
        return self


class RunConfig(Strict):
    """A whole run: model, data, training, loss and (optional) display sections."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    display: DisplayConfig = Field(default_factory=DisplayConfig)


def validate_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a plain dict as a RunConfig; errors become one UnetsegError line."""
    return validate_section(RunConfig, data, source)


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config, apply ``--set key.sub=value`` overrides and validate it.

    Raises UnetsegError (one line) for a missing/unreadable/invalid YAML file (naming the file),
    a malformed override, an unknown key or a bad value (naming the dotted key and the value).
    """
    data = apply_overrides(read_yaml(path), list(overrides or []))
    return validate_config(data, source=str(path))


def config_to_yaml(config: RunConfig) -> str:
    """The resolved config as YAML (what a run folder's config.yaml holds); loads back unchanged."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
