"""Optimizers and learning-rate schedules built from ``train:`` settings."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig, encoder: list[nn.Parameter] | None = None
                    ) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD with (Nesterov-free) momentum ``cfg.momentum`` (0.99 in the U-Net paper).

    ``encoder``: parameters put in a group of their own, first (so the schedule can hold them still)."""
    params: Any = [p for p in model.parameters() if p.requires_grad]
    if encoder is not None:
        held = {id(p) for p in encoder}
        params = [{"params": [p for p in params if id(p) in held]},
                  {"params": [p for p in params if id(p) not in held]}]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, progress: float, step: int) -> float:
    """Multiplier of the base LR at training ``progress`` in [0, 1] and optimizer ``step``.

    cosine: 0.5 (1 + cos(pi p)); poly: (1 - p) ** poly_power; step: step_gamma ** (milestones passed);
    none: 1. A linear warm-up over the first ``warmup_steps`` steps multiplies any of them.
    """
    p = min(max(progress, 0.0), 1.0)
    if cfg.scheduler == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * p))
    elif cfg.scheduler == "poly":
        factor = (1.0 - p) ** cfg.poly_power
    elif cfg.scheduler == "step":
        factor = cfg.step_gamma ** sum(p >= m for m in cfg.step_milestones)
    else:
        factor = 1.0
    if cfg.warmup_steps:
        factor *= min(1.0, (step + 1) / cfg.warmup_steps)
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, progress: Callable[[int], float], frozen_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR; ``progress(step)`` says how far training is (by steps and/or wall clock),
    so the same schedule shape serves epoch-bound and time-budget runs. With two parameter groups, the first
    (the encoder) has learning rate 0 for the first ``frozen_steps`` steps."""
    def factor(step: int) -> float:
        return lr_factor(cfg, progress(step), step)

    def held(step: int) -> float:
        return 0.0 if step < frozen_steps else factor(step)

    lambdas = [held, factor] if len(optimizer.param_groups) == 2 else factor
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
