"""Building a run from its config: seeds, precision, data, model, loss, optimizer, scheduler, sampler."""
from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from ..config import RunConfig
from ..data.classes import ClassTable
from ..data.dataset import TrainPatches
from ..data.normalization import Normalization
from ..data.volumes import VolumePatches
from ..errors import UnetsegError
from ..losses import build_loss
from ..models import build_model
from ..models.base import SegmentationModel
from ..models.meta import CheckpointMeta
from ..models.precision import Precision, resolve_precision
from .datasets import build_datasets, build_volume_datasets
from .distributed import DistContext
from .ema import WeightAverage
from .finetune import Parent, encoder_parameters, initial_weights
from .optim import build_optimizer, build_scheduler

# train.* settings that may change when a run is resumed (everything else must match the run's config)
RESUMABLE_CHANGES = {"epochs", "time_budget_minutes", "val_every", "log_every", "plot_samples", "device",
                     "val_tile_size"}


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python, numpy and torch; with ``deterministic`` also ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def training_precision(amp: str, device: torch.device, channels_last: bool) -> Precision:
    """bf16 autocast on CPU/CUDA; fp16 (with a GradScaler) only on CUDA; "auto" as in inference."""
    if amp == "fp16" and device.type != "cuda":
        raise UnetsegError("train.amp=fp16 needs a CUDA device (use bf16 or off on CPU)")
    dtype = resolve_precision(amp, device, training=True).dtype
    return Precision(dtype, channels_last)


def validation_amp(precision: Precision) -> str | bool:
    """The ``amp`` for validation: the training precision (fp32 when training ran in fp32)."""
    return False if precision.dtype is None else precision.name


def model_kwargs(config: RunConfig, in_channels: int, num_classes: int) -> dict[str, Any]:
    """The model section's kwargs with in_channels / num_classes filled from the data (or checked)."""
    kwargs = config.model.kwargs
    for key, actual in (("in_channels", in_channels), ("num_classes", num_classes)):
        given = kwargs.setdefault(key, actual)
        if given != actual:
            raise UnetsegError(f"model.{key}={given} but the data has {actual}; drop the key to take it from the data")
    return kwargs


def model_context(model: SegmentationModel) -> int:
    """What one output pixel sees beyond itself (px): the margin, else the receptive-field radius, else 64."""
    return model.margin or model.field_radius or 64


def make_model(name: str, kwargs: dict[str, Any], device: str | torch.device = "cpu") -> SegmentationModel:
    try:
        with torch.device(device):
            return build_model(name, **kwargs)
    except (ValueError, TypeError) as err:
        raise UnetsegError(f"model: {err}") from None


def check_resume_config(saved: dict[str, Any] | None, config: RunConfig, run_dir: Path) -> None:
    """A resumed run must keep model/data/loss/optimisation settings; only RESUMABLE_CHANGES may differ."""
    if saved is None:
        raise UnetsegError(f"--resume {run_dir}: its last.pt records no run config, so it cannot be resumed")
    current = config.model_dump(mode="json")

    def walk(a: Any, b: Any, key: str) -> str | None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                sub = f"{key}.{k}" if key else k
                if sub.startswith("train.") and k in RESUMABLE_CHANGES and key == "train":
                    continue
                if key == "model" and k in ("in_channels", "num_classes") and k not in b:
                    continue  # filled from the data in the saved config
                found = walk(a.get(k), b.get(k), sub)
                if found:
                    return found
            return None
        return None if a == b else f"{key}: run has {a!r}, config gives {b!r}"

    diff = walk(saved, current, "")
    if diff:
        raise UnetsegError(f"--resume {run_dir}: the config differs from the run's ({diff}); only "
                           f"train.{{{','.join(sorted(RESUMABLE_CHANGES))}}} may change")


def default_run_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


@dataclass
class Components:
    """Everything a run is built from its config, before any step."""

    train_ds: TrainPatches | VolumePatches
    val_items: list[tuple[np.ndarray, np.ndarray]]
    classes: ClassTable
    normalization: Normalization
    input_size: int
    resolved: RunConfig  # the config with in_channels / num_classes filled from the data
    bare: SegmentationModel
    model: nn.Module  # bare, or wrapped in DistributedDataParallel
    precision: Precision
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    sampler: DistributedSampler
    drop_last: bool
    steps_per_epoch: int
    scheduler: torch.optim.lr_scheduler.LambdaLR
    val_instances: list[np.ndarray] | None = None  # true object ids of the validation images (instance masks)
    val_unscored: list[np.ndarray | None] | None = None  # their pixels not scored (cut-off pieces of region blocks)
    ema: WeightAverage | None = None  # train.ema: the weights' moving average

    @property
    def evaluated(self) -> SegmentationModel:
        """The weights validation scores and best.pt holds: the moving average where ``train.ema`` is on."""
        return self.bare if self.ema is None else self.ema.model  # type: ignore[return-value]


def build_components(cfg: RunConfig, ctx: DistContext, progress_of: Callable[[int, int], float]) -> Components:
    """Data, model, loss and optimisation of a run. ``progress_of(step, steps_per_epoch)`` drives the LR schedule."""
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    parent = Parent.load(cfg.train.init) if cfg.train.init is not None else None
    # Geometry does not depend on channels/classes: probe it on the meta device (no memory).
    probe = make_model(cfg.model.name, {"in_channels": 1, "num_classes": 2, **cfg.model.kwargs}, "meta")
    keep = parent and parent.model.normalization
    if probe.spatial_dims == 2 and isinstance(cfg.data.patch_size, tuple):
        raise UnetsegError(f"data.patch_size={list(cfg.data.patch_size)}: one side per axis is for 3D models; "
                           "a 2D model takes one number")
    try:
        if probe.spatial_dims == 3:
            train_ds, val, classes, normalization = build_volume_datasets(
                cfg.data, rules=probe.axis_rules, seed=cfg.train.seed, keep_normalization=keep,
                context=model_context(probe))
        else:
            train_ds, val, classes, normalization = build_datasets(
                cfg.data, input_size=probe.valid_input_size(cfg.data.patch_size), margin=probe.margin, seed=cfg.train.seed,
                context=model_context(probe), fit_size=probe.valid_input_size, keep_normalization=keep)
    except ValueError as err:  # a data-library check the data code did not phrase itself
        raise UnetsegError(f"data: {err}") from None
    val_items = list(val)  # [(image, mask)], split across ranks by slicing
    if len(train_ds) == 0:
        raise UnetsegError("data: the training set is empty")
    in_channels = int(train_ds[0]["image"].shape[0])
    kwargs = model_kwargs(cfg, in_channels, classes.num_classes)
    resolved = cfg.model_copy(deep=True)
    for key in ("in_channels", "num_classes"):
        setattr(resolved.model, key, kwargs[key])

    torch.manual_seed(cfg.train.seed)  # identical initial weights whatever the data code consumed
    bare = make_model(cfg.model.name, kwargs)
    if parent is not None:
        fresh = initial_weights(bare, parent.model, classes)
        if fresh and train_ds.report is not None:
            train_ds.report.warnings.append(f"--init {parent.path}: new head rows for class(es) {', '.join(fresh)} "
                                            "(the others keep the checkpoint's)")
    bare = bare.to(ctx.device)
    # validation predicts with the normalisation, classes and nodata rule a checkpoint will carry
    bare.meta = CheckpointMeta(classes=classes, normalization=normalization,
                               nodata=None if train_ds.report is None else train_ds.report.nodata)
    precision = training_precision(cfg.train.amp, ctx.device, cfg.train.channels_last)
    if cfg.train.channels_last:
        bare = bare.to(memory_format=torch.channels_last if bare.spatial_dims == 2 else torch.channels_last_3d)
    model = DistributedDataParallel(bare, device_ids=[ctx.device] if ctx.device.type == "cuda" else None) \
        if ctx.distributed else bare
    frozen = cfg.train.freeze_encoder_epochs
    optimizer = build_optimizer(bare, cfg.train, encoder_parameters(bare) if frozen else None)
    sampler = DistributedSampler(train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=cfg.train.seed, drop_last=False)
    per_rank = len(sampler)
    drop_last = per_rank >= cfg.train.batch_size
    steps_per_epoch = per_rank // cfg.train.batch_size if drop_last else 1
    return Components(
        train_ds=train_ds, val_items=val_items, classes=classes, normalization=normalization,
        input_size=train_ds.input_size, resolved=resolved, bare=bare, model=model, precision=precision,
        loss_fn=build_loss(cfg.loss, train_ds.ignore_index, classes.num_classes).to(ctx.device),
        optimizer=optimizer,
        scaler=torch.amp.GradScaler("cuda") if precision.dtype == torch.float16 else None,
        sampler=sampler, drop_last=drop_last, steps_per_epoch=steps_per_epoch,
        scheduler=build_scheduler(optimizer, cfg.train, lambda step: progress_of(step, steps_per_epoch),
                                  frozen_steps=frozen * steps_per_epoch),
        val_instances=getattr(val, "instances", None),
        val_unscored=val.unscored,
        ema=WeightAverage(bare, cfg.train.ema) if cfg.train.ema > 0 else None,
    )


def finite_or_none(value: float) -> float | None:
    return None if value == -math.inf else value
