"""``unetseg train``: a whole run, from a validated RunConfig to a run folder.

A run folder holds::

    config.yaml          the resolved config (in_channels / num_classes filled from the data)
    metrics.csv          one row per epoch: epoch, step, time_s, train_loss, val_miou, val_accuracy,
                         iou_<class>..., lr, images_per_s
    best.pt, last.pt     checkpoints (best by validation mIoU; last.pt also holds the resume state)
    curves.png           train loss / val mIoU / learning rate against epoch
    samples.png          validation images | truth | prediction of best.pt
    summary.json         the outcome (best mIoU, epochs, steps, why it stopped, per-rank weight digests)

The same code runs single-process or under ``torchrun --nproc_per_node N`` (DistributedDataParallel).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from ..config import RunConfig, config_to_yaml, load_config
from ..data.dataset import build_datasets
from ..errors import UnetsegError
from ..fileio import atomic_path
from ..inference import predict_tiled
from ..inference.amp import Precision, resolve_precision
from ..losses import build_loss
from ..models import build_model, load_model
from ..models.base import SegmentationModel
from .checkpointing import BEST_NAME, LAST_NAME, read_resume_state, rng_state, save_run_checkpoint, set_rng_state
from .csvlog import MetricsLog, metric_columns
from .distributed import (
    DistContext, all_gather_object, any_rank, broadcast_object, cleanup_distributed, setup_distributed,
    state_digest, sync_buffers,
)
from .loop import NonFiniteLoss, SkipSampler, StepState, train_epoch, validate
from .optim import build_optimizer, build_scheduler
from .plots import plot_curves, plot_samples

# train.* settings that may change when a run is resumed (everything else must match the run's config)
RESUMABLE_CHANGES = {"epochs", "time_budget_minutes", "val_every", "log_every", "plot_samples", "device",
                     "val_tile_size"}


@dataclass
class RunResult:
    """What :func:`train` returns (rank 0's view; other ranks get the same numbers)."""

    run_dir: Path
    best_miou: float | None  # None when there is no validation set
    best_epoch: int | None
    last_scores: dict[str, Any] | None  # ConfusionMatrix.compute() of the final validation
    epochs: int  # epochs completed
    global_step: int
    stopped_by: str  # "epochs" | "time_budget"
    seconds: float
    images_per_s: float
    precision: str  # "fp32" | "bf16" | "fp16"
    best_checkpoint: Path = field(default=Path())
    last_checkpoint: Path = field(default=Path())


# --------------------------------------------------------------------------- set-up helpers


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


def model_kwargs(config: RunConfig, in_channels: int, num_classes: int) -> dict[str, Any]:
    """The model section's kwargs with in_channels / num_classes filled from the data (or checked)."""
    kwargs = config.model.kwargs
    for key, actual in (("in_channels", in_channels), ("num_classes", num_classes)):
        given = kwargs.setdefault(key, actual)
        if given != actual:
            raise UnetsegError(f"model.{key}={given} but the data has {actual}; drop the key to take it from the data")
    return kwargs


def make_model(name: str, kwargs: dict[str, Any], device: str | torch.device = "cpu") -> SegmentationModel:
    try:
        with torch.device(device):
            return build_model(name, **kwargs)
    except (ValueError, TypeError) as err:
        if isinstance(err, UnetsegError):
            raise
        raise UnetsegError(f"model: {err}") from None


def check_resume_config(saved: dict[str, Any], config: RunConfig, run_dir: Path) -> None:
    """A resumed run must keep model/data/loss/optimisation settings; only RESUMABLE_CHANGES may differ."""
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


def _val_amp(precision: Precision) -> str | bool:
    return False if precision.dtype is None else precision.name


# --------------------------------------------------------------------------- the run


def train(
    config: RunConfig,
    out_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    *,
    name: str = "run",
    progress: bool = True,
) -> RunResult:
    """Train the model ``config`` describes and write the run folder (see the module docstring).

    Args:
        config: a validated run config (:func:`unetseg.config.load_config`).
        out_dir: the run folder for a new run (default ``runs/<name>-<timestamp>``); must not hold a run.
        resume: a run folder whose ``last.pt`` to continue from (``out_dir`` is then ignored). The
            config must match the run's except for RESUMABLE_CHANGES (e.g. more epochs or budget).
        name: run-name prefix for the default folder.
        progress: show a tqdm bar (rank 0 only).

    Raises UnetsegError (one line) for bad data, a bad model section, a resume folder without
    last.pt, an incompatible resume config, or a NaN/Inf loss (the last good checkpoint stays).
    """
    ctx = setup_distributed(config.train.device)
    try:
        return _Run(config, ctx, out_dir, resume, name, progress).run()
    finally:
        cleanup_distributed(ctx)


class _Run:
    def __init__(self, config: RunConfig, ctx: DistContext, out_dir: Any, resume: Any, name: str,
                 progress: bool) -> None:
        self.config, self.ctx, self.progress = config, ctx, progress
        self.tcfg = config.train
        self._elapsed_before, self._session_start = 0.0, time.perf_counter()  # the wall clock of the budget
        self.resume_payload: dict[str, Any] | None = None
        if resume is not None:
            self.run_dir = Path(resume)
            self.resume_payload = read_resume_state(self.run_dir)
            check_resume_config(self.resume_payload["meta"]["config"], config, self.run_dir)
        else:
            self.run_dir = Path(broadcast_object(ctx, str(out_dir) if out_dir else str(default_run_dir(name))))
            if (self.run_dir / LAST_NAME).exists():
                raise UnetsegError(f"{self.run_dir} already holds a run (last.pt); pass --resume {self.run_dir} "
                                   "to continue it or choose another --out")

    # -- building blocks ------------------------------------------------------------------------

    def build(self) -> None:
        cfg, ctx = self.config, self.ctx
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        # Geometry does not depend on channels/classes: probe it on the meta device (no memory).
        probe_kwargs = {**cfg.model.kwargs}
        probe_kwargs.setdefault("in_channels", 1)
        probe_kwargs.setdefault("num_classes", 2)
        probe = make_model(cfg.model.name, probe_kwargs, "meta")
        self.input_size = probe.valid_input_size(cfg.data.patch_size)
        try:
            self.train_ds, val, self.classes, self.normalization = build_datasets(
                cfg.data, input_size=self.input_size, margin=probe.margin, seed=cfg.train.seed)
        except UnetsegError:
            raise
        except ValueError as err:
            raise UnetsegError(f"data: {err}") from None
        self.val_items = list(val)  # [(image, mask)], split across ranks by slicing
        if len(self.train_ds) == 0:
            raise UnetsegError("data: the training set is empty")
        first = self.val_items[0][0] if self.val_items else None
        in_channels = (1 if first.ndim == 2 else first.shape[-1]) if first is not None else \
            int(self.train_ds[0]["image"].shape[0])
        self.kwargs = model_kwargs(cfg, in_channels, self.classes.num_classes)
        # the resolved config: what config.yaml and the checkpoints record
        self.resolved = cfg.model_copy(deep=True)
        for key in ("in_channels", "num_classes"):
            setattr(self.resolved.model, key, self.kwargs[key])

        torch.manual_seed(cfg.train.seed)  # identical initial weights whatever the data code consumed
        model = make_model(cfg.model.name, self.kwargs).to(ctx.device)
        self.precision = training_precision(cfg.train.amp, ctx.device, cfg.train.channels_last)
        if cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.bare = model
        self.model = DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None) \
            if ctx.distributed else model
        self.loss_fn = build_loss(cfg.loss, cfg.data.ignore_index, self.classes.num_classes).to(ctx.device)
        self.optimizer = build_optimizer(self.bare, cfg.train)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision.dtype == torch.float16 else None

        self.sampler = DistributedSampler(self.train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                          seed=cfg.train.seed, drop_last=False)
        per_rank = len(self.sampler)
        self.drop_last = per_rank >= cfg.train.batch_size
        self.steps_per_epoch = per_rank // cfg.train.batch_size if self.drop_last else 1
        self.state = StepState()
        self.best_miou = -math.inf
        self.best_epoch: int | None = None
        self.last_miou: float | None = None
        self.last_scores: dict[str, Any] | None = None
        self.scheduler = build_scheduler(self.optimizer, cfg.train, self._progress)

    def _progress(self, step: int) -> float:
        t = self.tcfg
        fractions = [0.0]
        if t.epochs is not None:
            fractions.append(step / max(t.epochs * self.steps_per_epoch, 1))
        if t.time_budget_minutes is not None:
            fractions.append(self.clock() / (60.0 * t.time_budget_minutes))
        return max(fractions)

    def clock(self) -> float:
        """Seconds this run has trained, over all its sessions."""
        return self._elapsed_before + (time.perf_counter() - self._session_start)

    def budget_spent(self) -> bool:
        budget = self.tcfg.time_budget_minutes
        return budget is not None and self.clock() >= 60.0 * budget

    def restore(self) -> None:
        payload = self.resume_payload
        assert payload is not None
        self.bare.load_state_dict(payload["state_dict"])
        tr = payload["training"]
        self.optimizer.load_state_dict(tr["optimizer"])
        self.scheduler.load_state_dict(tr["scheduler"])
        if self.scaler is not None and tr.get("scaler"):
            self.scaler.load_state_dict(tr["scaler"])
        self.state = StepState(**tr["state"])
        self.best_miou = tr["best_miou"] if tr["best_miou"] is not None else -math.inf
        self.best_epoch = tr["best_epoch"]
        self.last_miou = tr["last_miou"]
        set_rng_state(tr["rng"])

    def meta(self, val_miou: float | None) -> dict[str, Any]:
        return {
            "normalization": self.normalization,
            "class_names": list(self.classes.names),
            "class_colors": [list(c) for c in self.classes.colors],
            "ignore_index": self.config.data.ignore_index,
            "input_size": self.input_size,
            "config": self.resolved.model_dump(mode="json"),
            "epoch": self.state.epoch,
            "global_step": self.state.global_step,
            "val_miou": val_miou,
        }

    def save_last(self) -> None:
        training = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "state": asdict(self.state),
            "best_miou": None if self.best_miou == -math.inf else self.best_miou,
            "best_epoch": self.best_epoch,
            "last_miou": self.last_miou,
            "rng": rng_state(),
        }
        save_run_checkpoint(self.run_dir / LAST_NAME, self.bare, self.meta(self.last_miou), training)

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> RunResult:
        ctx, tcfg = self.ctx, self.tcfg
        self.build()
        if self.resume_payload is not None:
            self.restore()
            self._elapsed_before = self.state.elapsed
            self._session_start = time.perf_counter()
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.run_dir / "config.yaml") as tmp:
                tmp.write_text(config_to_yaml(self.resolved))
        self.log = MetricsLog(self.run_dir / "metrics.csv", metric_columns(self.classes.names))
        if self.resume_payload is not None:
            self.log.load(max_step=self.state.global_step)
        stopped_by = "epochs"
        images_per_s = math.nan
        epochs_label = str(tcfg.epochs) if tcfg.epochs is not None else "?"
        while True:
            if tcfg.epochs is not None and self.state.epoch >= tcfg.epochs:
                break
            if any_rank(ctx, self.budget_spent()):
                stopped_by = "time_budget"
                break
            epoch = self.state.epoch
            self.sampler.set_epoch(epoch)
            if hasattr(self.train_ds, "set_epoch"):
                self.train_ds.set_epoch(epoch)
            loader = DataLoader(
                self.train_ds, batch_size=tcfg.batch_size,
                sampler=SkipSampler(self.sampler, self.state.step_in_epoch * tcfg.batch_size),
                num_workers=self.config.data.num_workers, drop_last=self.drop_last, pin_memory=ctx.device.type == "cuda",
                # its own generator: creating the iterator must not draw from the global RNG, or a
                # run resumed mid-epoch would see different dropout than an uninterrupted one
                generator=torch.Generator().manual_seed(tcfg.seed * 1_000_003 + epoch),
            )
            try:
                result = train_epoch(
                    ctx=ctx, model=self.model, loader=loader, loss_fn=self.loss_fn, optimizer=self.optimizer,
                    scheduler=self.scheduler, scaler=self.scaler, precision=self.precision,
                    channels_last=tcfg.channels_last, grad_clip=tcfg.grad_clip, state=self.state,
                    budget_spent=self.budget_spent, clock=self.clock, total_epochs_label=epochs_label,
                    log_every=tcfg.log_every, last_miou=self.last_miou, progress=self.progress,
                )
            except NonFiniteLoss as err:
                self._non_finite(err)
            if result.steps:
                images_per_s = result.images / max(result.seconds, 1e-9)
            if not result.stopped:
                self.state.epoch += 1
                self.state.step_in_epoch = 0
            epochs_done = tcfg.epochs is not None and self.state.epoch >= tcfg.epochs
            budget_out = result.stopped or any_rank(ctx, self.budget_spent())
            final = epochs_done or budget_out
            if budget_out and not epochs_done:
                stopped_by = "time_budget"
            self._end_of_epoch(result.loss, images_per_s, validate_now=final or self.state.epoch % tcfg.val_every == 0)
            if final:
                break
        return self._finish(stopped_by, images_per_s)

    def _end_of_epoch(self, train_loss: float, images_per_s: float, validate_now: bool) -> None:
        ctx = self.ctx
        sync_buffers(ctx, self.bare)
        scores = None
        if validate_now and self.val_items:
            val = validate(ctx=ctx, model=self.bare, items=self.val_items, num_classes=self.classes.num_classes,
                           ignore_index=self.config.data.ignore_index, normalization=self.normalization,
                           tile_size=self.tcfg.val_tile_size, amp=_val_amp(self.precision))
            scores = val.scores
            self.last_scores = scores
            self.last_miou = scores["miou"]
        improved = scores is not None and not math.isnan(scores["miou"]) and scores["miou"] > self.best_miou
        if improved:
            self.best_miou, self.best_epoch = scores["miou"], self.state.epoch
        if not ctx.is_main:
            return
        row = {"epoch": round(self.state.epoch + self.state.step_in_epoch / max(self.steps_per_epoch, 1), 3),
               "step": self.state.global_step, "time_s": self.clock(), "train_loss": train_loss,
               "lr": self.optimizer.param_groups[0]["lr"], "images_per_s": images_per_s}
        if scores is not None:
            row.update(val_miou=scores["miou"], val_accuracy=scores["accuracy"],
                       **{f"iou_{n}": v for n, v in zip(self.classes.names, scores["iou"])})
            if self.progress:
                per_class = ", ".join(f"{n} {v:.3f}" for n, v in zip(self.classes.names, scores["iou"]))
                tqdm.write(f"epoch {self.state.epoch}: loss {train_loss:.4f}  val mIoU {scores['miou']:.4f}  "
                           f"({per_class})")
        self.log.append(row)
        if improved or (not self.val_items):
            save_run_checkpoint(self.run_dir / BEST_NAME, self.bare, self.meta(scores["miou"] if scores else None))
        self.save_last()

    def _non_finite(self, err: NonFiniteLoss) -> None:
        last = self.run_dir / LAST_NAME
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint had been written yet"
        if self.ctx.is_main and self.log.rows:
            plot_curves(self.log.rows, self.run_dir / "curves.png")
        raise UnetsegError(f"training stopped: {err} ({kept}); try a lower train.lr, train.grad_clip, "
                           "or train.amp=off")

    def _finish(self, stopped_by: str, images_per_s: float) -> RunResult:
        ctx = self.ctx
        sync_buffers(ctx, self.bare)
        digests = all_gather_object(ctx, state_digest(self.bare))
        best_path, last_path = self.run_dir / BEST_NAME, self.run_dir / LAST_NAME
        if ctx.is_main:
            if not best_path.exists():  # no score ever improved (e.g. no labelled validation pixels)
                save_run_checkpoint(best_path, self.bare, self.meta(self.last_miou))
            if self.log.rows:
                plot_curves(self.log.rows, self.run_dir / "curves.png")
            self._sample_grid(best_path)
        result = RunResult(
            run_dir=self.run_dir,
            best_miou=None if self.best_miou == -math.inf else self.best_miou,
            best_epoch=self.best_epoch, last_scores=self.last_scores, epochs=self.state.epoch,
            global_step=self.state.global_step, stopped_by=stopped_by, seconds=self.clock(),
            images_per_s=images_per_s, precision=self.precision.name,
            best_checkpoint=best_path, last_checkpoint=last_path,
        )
        if ctx.is_main:
            summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}
            summary.update(world_size=ctx.world_size, device=str(ctx.device), rank_state_digests=digests,
                           ranks_identical=len(set(digests)) == 1)
            with atomic_path(self.run_dir / "summary.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=2, default=str))
        return result

    def _sample_grid(self, best_path: Path) -> None:
        n = min(self.tcfg.plot_samples, len(self.val_items))
        if n == 0:
            return
        model = load_model(best_path, device=self.ctx.device)
        items = self.val_items[:n]
        preds = [predict_tiled(model, image, tile_size=self.tcfg.val_tile_size, amp=_val_amp(self.precision))
                 for image, _ in items]
        plot_samples([i for i, _ in items], [m for _, m in items], preds, self.classes.palette(),
                     self.run_dir / "samples.png", self.classes.names, self.config.data.ignore_index)


# --------------------------------------------------------------------------- CLI


def train_command(args: argparse.Namespace) -> int:
    """``unetseg train CONFIG [--out DIR] [--set k.s=v ...] [--resume RUN_DIR]``."""
    config = load_config(args.config, args.overrides)
    rank = int(os.environ.get("RANK", "0"))
    try:
        result = train(config, args.out, args.resume, name=Path(args.config).stem)
    except UnetsegError:
        if rank != 0:  # every rank fails alike; one line is enough
            return 2
        raise
    if rank == 0:
        best = f"{result.best_miou:.4f} (epoch {result.best_epoch})" if result.best_miou is not None else "n/a"
        print(f"run folder: {result.run_dir}\nbest val mIoU: {best}; {result.epochs} epoch(s), "
              f"{result.global_step} steps, {result.seconds / 60:.1f} min, stopped by {result.stopped_by}, "
              f"{result.precision}, {result.images_per_s:.1f} images/s")
    return 0
