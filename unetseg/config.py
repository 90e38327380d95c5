"""Run configs: pydantic models for the YAML files in ``configs/`` and ``--set`` overrides.

A run config has four sections::

    model: {name: unet, base_channels: 32, depth: 3, ...}   # registry name + constructor kwargs
    data:  {...}                                            # unetseg.data.config.DataConfig
    train: {epochs: 30, batch_size: 8, optimizer: adam, lr: 1e-3, amp: auto, ...}
    loss:  {ce: 1.0, dice: 0.0, ...}

Every section rejects unknown keys. :func:`load_config` turns any problem (missing file, bad YAML,
unknown key, bad value) into one :class:`~unetseg.errors.UnetsegError` line naming the dotted key
and the offending value.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .data.config import DataConfig
from .errors import UnetsegError
from .models import ConvAutoencoder, SmpModel, UNet, list_models

__all__ = ["LossConfig", "ModelConfig", "RunConfig", "TrainConfig", "load_config", "config_to_yaml"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _constructor_params(name: str) -> tuple[set[str], bool]:
    """Keyword names a registry model accepts, and whether it takes arbitrary extra kwargs."""
    cls = UNet if name == "unet" else ConvAutoencoder if name == "autoencoder" else SmpModel
    params = inspect.signature(cls.__init__).parameters
    names = {p for p in params if p != "self" and params[p].kind is not inspect.Parameter.VAR_KEYWORD}
    names.discard("arch")  # smp: the architecture travels in the registry name
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


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
        accepted, open_ended = _constructor_params(self.name)
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


class TrainConfig(_Strict):
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
    channels_last: bool = False
    seed: int = 0
    deterministic: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    val_every: int = Field(1, ge=1)  # epochs
    val_tile_size: int | Literal["auto"] = 512  # validation tiles; shrunk to what each image needs
    log_every: int = Field(10, ge=1)  # steps between progress-bar refreshes
    grad_clip: float | None = Field(None, gt=0)  # max global grad norm
    plot_samples: int = Field(4, ge=0)  # validation images in the sample grid

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
        return self


class LossConfig(_Strict):
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


class RunConfig(_Strict):
    """A whole run: model, data, training and loss sections."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss: LossConfig = Field(default_factory=LossConfig)


# --------------------------------------------------------------------------- loading


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = str(part)
        else:
            out += f".{part}"
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic puts union-member / validator tags such as 'int' or 'literal[...]' or
    # 'function-after[...]' into the location; they are not config keys.
    return tuple(p for p in loc if isinstance(p, int) or ("[" not in str(p) and str(p) not in ("int", "float", "str", "bool")))


def format_validation_error(err: ValidationError, source: str) -> str:
    """Flatten a pydantic ValidationError into one line: ``source: key 'a.b' = value: reason[; ...]``."""
    parts = []
    seen = set()
    for e in err.errors():
        key = _dotted(_clean_loc(tuple(e["loc"])))
        if key in seen:  # a union reports once per member; keep the first reason
            continue
        seen.add(key)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        if e["type"] == "missing":
            parts.append(f"key {key!r} is required")
        elif key and isinstance(e.get("input"), dict):
            parts.append(f"key {key!r}: {msg}")
        elif key:
            parts.append(f"key {key!r} = {_short(e.get('input'))}: {msg}")
        else:
            parts.append(msg)
    more = f" (+{len(parts) - 3} more)" if len(parts) > 3 else ""
    return f"{source}: " + "; ".join(parts[:3]) + more


def _read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UnetsegError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UnetsegError(f"config file {p} is not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UnetsegError(f"config file {p} cannot be read: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UnetsegError(f"config file {p} must hold a mapping (model:, data:, train:, loss:), got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to a nested dict in place (values parsed as YAML scalars/flow)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise UnetsegError(f"--set {item!r}: expected KEY.SUB=VALUE, e.g. train.epochs=5")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise UnetsegError(f"--set {item!r}: value {raw!r} is not valid YAML") from None
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UnetsegError(f"--set {item!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def validate_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a plain dict as a RunConfig; errors become one UnetsegError line."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise UnetsegError(format_validation_error(err, source)) from None


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config, apply ``--set key.sub=value`` overrides and validate it.

    Raises UnetsegError (one line) for a missing/unreadable/invalid YAML file (naming the file),
    a malformed override, an unknown key or a bad value (naming the dotted key and the value).
    """
    data = apply_overrides(_read_yaml(path), list(overrides or []))
    return validate_config(data, source=str(path))


def config_to_yaml(config: RunConfig) -> str:
    """The resolved config as YAML (what a run folder's config.yaml holds); loads back unchanged."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
