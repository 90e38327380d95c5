"""``train``: a whole run, from a validated RunConfig to a run folder.

A run folder holds::

    config.yaml          the resolved config (in_channels / num_classes filled from the data)
    split.json           which files (and, for data.split: regions, which blocks) are training and validation
    metrics.csv          one row per epoch: epoch, step, time_s, train_loss, val_miou, val_accuracy,
                         [val_ap50 on instance masks,] iou_<class>..., lr, images_per_s
    best.pt, last.pt     checkpoints (best by validation mIoU; on instance masks by the validation objects' AP@0.5
                         under their tuned seeds and minimum size, mIoU breaking ties; last.pt also holds the resume
                         state)
    curves.png           train loss / val mIoU / learning rate against epoch
    samples.png          validation images | truth | prediction of best.pt
    summary.json         the outcome (best mIoU, epochs, steps, why it stopped, per-rank weight digests; under
                         "data": warnings, per-band normalisation statistics, the nodata rule; "parent": the
                         --init checkpoint)
    plan.yaml, fingerprint.json   a run planned from the data (``unetseg train`` without a config)

The same code runs single-process or under ``torchrun --nproc_per_node N`` (DistributedDataParallel).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..config import RunConfig
from ..data.nodata import Nodata, valid_mask
from ..errors import OutputError, UnetsegError
from ..io.atomic import remove_stale_temporaries
from ..models import SegmentationModel, load_model
from ..models.checkpoint import read_checkpoint, read_meta, write_checkpoint
from ..models.geometry import Geometry
from ..models.meta import TrainingRecord, instance_record
from ..objects.separate import instance_rule, object_rule
from ..objects.tune import choose_post_processing, tune_post_processing
from ..tiling import predict_tiled
from .budget import (
    OBJECTS_MIN_SECONDS,
    VOLUME_VAL_HALO,
    WRITE_S,
    AfterTraining,
    forward_seconds,
    halo_seconds,
    tiled_pixels,
)
from .checkpointing import (
    BEST_NAME,
    LAST_NAME,
    read_resume_state,
    restore_training,
    save_run_checkpoint,
    training_state,
)
from .csvlog import MetricsLog, metric_columns
from .distributed import (
    DistContext,
    all_gather_object,
    any_rank,
    broadcast_object,
    cleanup_distributed,
    setup_distributed,
    state_digest,
    sync_buffers,
)
from .evaluate import score_images
from .finetune import with_parent_architecture
from .halo import measure_halo
from .loop import NonFiniteLoss, SkipSampler, StepState, train_epoch
from .plots import plot_curves, plot_samples
from .run_files import write_config, write_split, write_summary
from .setup import build_components, check_resume_config, default_run_dir, finite_or_none, validation_amp

HALO_PROBE_IMAGES = 4  # validation images the halo is measured on after training
# A validation of an instance run tunes the objects' seeds and minimum size for at most this long or twice its
# predictions' time, the default seeds first. All 110 candidates took 1.1 s on a 256^2 nuclei image's predictions and
# 4.7 s on a 512^2 one (AMX Xeon) against 0.2-0.3 s for predicting them: unbounded, a large validation set would cost
# many times its predictions on every validation.
SELECTION_TUNING_SECONDS = 2.0


@dataclass
class RunResult:
    """What :func:`train` returns (rank 0's view; other ranks get the same numbers)."""

    run_dir: Path
    best_miou: float | None  # None when there is no validation set
    best_epoch: int | None
    last_scores: dict[str, Any] | None  # ConfusionMatrix.compute() of the final validation
    epochs: int  # epochs completed
    global_step: int
    stopped_by: str  # "epochs" | "time_budget" | "stop" (the caller's stop())
    seconds: float
    images_per_s: float
    precision: str  # "fp32" | "bf16" | "fp16"
    best_checkpoint: Path = field(default=Path())
    last_checkpoint: Path = field(default=Path())


def train(
    config: RunConfig,
    out_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    *,
    name: str = "run",
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], Any] | None = None,
    stop: Callable[[], bool] | None = None,
    on_status: Callable[[str], Any] | None = None,
    started: float | None = None,
) -> RunResult:
    """Train the model ``config`` describes and write the run folder (see the module docstring).

    Args:
        config: a validated run config (:func:`unetseg.config.load_config`).
        out_dir: the run folder for a new run (default ``runs/<name>-<timestamp>``); must not hold a run.
        resume: a run folder whose ``last.pt`` to continue from (``out_dir`` is then ignored). The
            config must match the run's except for RESUMABLE_CHANGES (e.g. more epochs or budget).
        name: run-name prefix for the default folder.
        progress: show a tqdm bar (rank 0 only).
        on_epoch: called on rank 0 after each epoch with its metrics.csv row (``epoch``, ``step``, ``time_s``,
            ``train_loss``, ``lr``, and after a validation ``val_miou``, ``val_accuracy``, ``iou_<class>``): a GUI's
            live curve.
        stop: polled between steps; once it returns True the run ends as if its time budget were spent
            (validated, best.pt and last.pt written, ``stopped_by="stop"``): a GUI's Stop button.
        on_status: called on rank 0 with a one-line status for each step outside the epochs (the halo
            measurement, the sample figure, the run files): a GUI's status line. The same lines go to the
            terminal when ``progress``.
        started: the ``time.perf_counter()`` the time budget counts from (default: now): ``unetseg train`` passes
            its own start, so planning counts. The budget covers everything up to the summary: training stops
            when what is left is what the steps after it take (:mod:`unetseg.training.budget`).

    Raises UnetsegError (one line) for bad data, a bad model section, a resume folder without
    last.pt, an incompatible resume config, a NaN/Inf loss or a failed checkpoint write (the last good
    checkpoint stays).
    """
    config = with_parent_architecture(config)  # fine-tuning: the --init checkpoint's architecture
    ctx = setup_distributed(config.train.device)
    try:
        return Trainer(config, ctx, out_dir, resume, name, progress, on_epoch, stop, on_status, started).run()
    finally:
        cleanup_distributed(ctx)


class Trainer:
    """One run: builds its components, resumes them if asked, loops over epochs and writes the run folder."""

    def __init__(self, config: RunConfig, ctx: DistContext, out_dir: Any, resume: Any, name: str,
                 progress: bool, on_epoch: Callable[[dict[str, Any]], Any] | None = None,
                 stop: Callable[[], bool] | None = None, on_status: Callable[[str], Any] | None = None,
                 started: float | None = None) -> None:
        self.config, self.ctx, self.progress = config, ctx, progress
        self.on_epoch, self.stop, self.on_status = on_epoch, stop, on_status
        self.tcfg = config.train
        # the wall clock of the budget, from the command's start
        self._elapsed_before, self._session_start = 0.0, time.perf_counter() if started is None else started
        self.after = AfterTraining()
        self._validated = False  # a validation was timed this session: self.after holds measurements
        self._loop_start: tuple[float, int] | None = None  # (clock, global step) when this session's steps began
        self.resume_payload: dict[str, Any] | None = None
        if resume is not None:
            self.run_dir = Path(resume)
            self.resume_payload = read_resume_state(self.run_dir)
            saved = read_meta(self.resume_payload, self.run_dir / LAST_NAME).training
            check_resume_config(None if saved is None else saved.config, config, self.run_dir)
        else:
            self.run_dir = Path(broadcast_object(ctx, str(out_dir) if out_dir else str(default_run_dir(name))))
            if (self.run_dir / LAST_NAME).exists():
                raise UnetsegError(f"{self.run_dir} already holds a run (last.pt); pass --resume {self.run_dir} "
                                   "to continue it or choose another --out")
        self.state = StepState()
        self.best_miou = -math.inf  # the validation mIoU of best.pt's epoch
        self.best_score: tuple[float, ...] = (-math.inf,)  # what best.pt was chosen by (:meth:`_selection`)
        self.best_epoch: int | None = None
        self.last_miou: float | None = None
        self.last_scores: dict[str, Any] | None = None

    # -- clock and schedule ---------------------------------------------------------------------

    def _progress(self, step: int, steps_per_epoch: int) -> float:
        t = self.tcfg
        fractions = [0.0]
        if t.epochs is not None:
            fractions.append(step / max(t.epochs * steps_per_epoch, 1))
        training = self.training_seconds()
        if training is not None:
            fractions.append(self.clock() / max(training, 1e-9))
        return max(fractions)

    def training_seconds(self) -> float | None:
        """Seconds of the budget training may use: all of it less what the steps after training will take."""
        budget = self.tcfg.time_budget_minutes
        if budget is None:
            return None
        if not self._validated and self._loop_start is not None:
            self.after = self._estimated_after()
        return 60.0 * budget - self.after.total()

    def _estimated_after(self) -> AfterTraining:
        """Before a validation was timed: the validation estimated from this session's step speed."""
        start_clock, start_step = self._loop_start  # type: ignore[misc]
        steps = self.state.global_step - start_step
        if steps < 1:
            return self.after
        patch = math.prod(self.c.train_ds[0]["image"].shape[1:]) * self.tcfg.batch_size * self.ctx.world_size
        if self.c.bare.spatial_dims == 3:  # volumes: the voxels (the exact halo's context adds to it)
            pixels = sum(math.prod(mask.shape) for _, mask in self.c.val_items) / self.ctx.world_size
        else:
            pixels = tiled_pixels([image.shape[:2] for image, _ in self.c.val_items], Geometry.of(self.c.bare),
                                  self.tcfg.val_tile_size) / self.ctx.world_size
        seconds = forward_seconds(pixels, (self.clock() - start_clock) / steps, patch)
        return self.after.with_validation(seconds, self._sample_share())

    def _sample_share(self) -> float:
        """The share of the validation pixels the sample figure predicts again."""
        items = self.c.val_items
        n = min(self.tcfg.plot_samples, len(items))
        total = sum(image.shape[0] * image.shape[1] for image, _ in items)
        return sum(image.shape[0] * image.shape[1] for image, _ in items[:n]) / max(total, 1)

    def clock(self) -> float:
        """Seconds this run has trained, over all its sessions."""
        return self._elapsed_before + (time.perf_counter() - self._session_start)

    def budget_spent(self) -> bool:
        """Training is over: the time left is what the steps after it take (after one step of this session at
        least), or the caller stopped it."""
        training = self.training_seconds()
        begun = self._loop_start is None or self.state.global_step > self._loop_start[1]
        return (training is not None and begun and self.clock() >= training) or self.stopped()

    def say(self, line: str) -> None:
        """A status line outside the epochs: on the terminal (with ``progress``) and to ``on_status``."""
        if not self.ctx.is_main:
            return
        if self.progress:
            tqdm.write(f"unetseg train: {line}")
        if self.on_status is not None:
            self.on_status(line)

    def stopped(self) -> bool:
        """The caller's ``stop`` asked to end the run."""
        return self.stop is not None and bool(self.stop())

    # -- checkpoints ------------------------------------------------------------------------------

    def _restore(self) -> None:
        tr = restore_training(self.c, self.resume_payload, self.run_dir / LAST_NAME)
        self.state = StepState(**tr["state"])
        self.best_miou = tr["best_miou"] if tr["best_miou"] is not None else -math.inf
        # absent in runs saved before it (they chose by mIoU alone), or ranked otherwise (another process count)
        saved, by_objects = tr.get("best_score") or [], self._selects_by_objects()
        self.best_score = (tuple(saved) if len(saved) == 1 + by_objects else
                           (-math.inf, self.best_miou) if by_objects else (self.best_miou,))
        self.best_epoch, self.last_miou = tr["best_epoch"], tr["last_miou"]
        self._elapsed_before = self.state.elapsed
        self._session_start = time.perf_counter()

    def meta(self, val_miou: float | None) -> dict[str, Any]:
        """The :class:`~unetseg.models.meta.CheckpointMeta` fields of this run's checkpoints."""
        c = self.c
        report = c.train_ds.report
        data = {} if report is None else {"images": len(report.files), "normalization": report.normalization,
                                          "warnings": report.warnings}
        layout = self.config.data.instance_layout()
        instances = None if layout is None else instance_record(layout)
        return {"normalization": c.normalization, "classes": c.classes, "ignore_index": c.train_ds.ignore_index,
                "instances": instances,
                "nodata": None if report is None else report.nodata, "display_bands": self.config.display.bands,
                "class_values": self.config.data.class_values, "input_size": c.input_size,
                "pixel_size": None if report is None else report.pixel_size,
                "pixel_unit": None if report is None else report.pixel_unit, "data": data,
                "spacing": getattr(c.train_ds, "spacing", None),  # volumes: the training voxels' (z, y, x) size
                "training": TrainingRecord(c.resolved.model_dump(mode="json"), self.state.epoch,
                                           self.state.global_step, val_miou, self.config.train.init)}

    def save_last(self) -> None:
        self.state.elapsed = self.clock()  # the time up to this save, validation included
        training = training_state(self.c, self.state, finite_or_none(self.best_miou), self.best_epoch, self.last_miou,
                                  self.best_score)
        save_run_checkpoint(self.run_dir / LAST_NAME, self.c.bare, self.meta(self.last_miou), training)

    # -- the loop -----------------------------------------------------------------------------

    def _kept(self) -> str:
        last = self.run_dir / LAST_NAME
        return f"the last good checkpoint is {last}" if last.exists() else "no checkpoint had been written yet"

    def run(self) -> RunResult:
        """Train to the end; a failed write (a full disk) stops the run with one line, last.pt left as it was."""
        try:
            return self._run()
        except OutputError as err:
            raise UnetsegError(f"training stopped: {err} ({self._kept()})") from err

    def _run(self) -> RunResult:
        ctx, tcfg = self.ctx, self.tcfg
        self.c = build_components(self.config, ctx, self._progress)
        if self.resume_payload is not None:
            self._restore()
        if ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.run_dir)  # left by a run killed while writing
            write_config(self.run_dir, self.c.resolved)
            report = self.c.train_ds.report
            if report is not None:
                write_split(self.run_dir, report.split)
                for line in report.warnings:
                    tqdm.write(f"unetseg train: warning: {line}")
                if self.progress:
                    stats = report.normalization
                    tqdm.write(f"normalisation ({stats['method']}, valid training pixels) per band: mean "
                               f"{[round(m, 4) for m in stats['mean']]}, std {[round(v, 4) for v in stats['std']]}")
        self.log = MetricsLog(self.run_dir / "metrics.csv",
                              metric_columns(self.c.classes.names, objects=self._selects_by_objects()))
        if self.resume_payload is not None:
            self.log.load(max_step=self.state.global_step)
        stopped_by = "epochs"
        images_per_s = math.nan
        epochs_label = str(tcfg.epochs) if tcfg.epochs is not None else "?"
        self._plan_after()
        self._loop_start = (self.clock(), self.state.global_step)
        while True:
            if tcfg.epochs is not None and self.state.epoch >= tcfg.epochs:
                break
            if any_rank(ctx, self.budget_spent()):
                stopped_by = "stop" if self.stopped() else "time_budget"
                break
            result = self._epoch(epochs_label)
            if result.steps:
                images_per_s = result.images / max(result.seconds, 1e-9)
            if not result.stopped:
                self.state.epoch += 1
                self.state.step_in_epoch = 0
            epochs_done = tcfg.epochs is not None and self.state.epoch >= tcfg.epochs
            budget_out = result.stopped or any_rank(ctx, self.budget_spent())
            final = epochs_done or budget_out
            if budget_out and not epochs_done:
                stopped_by = "stop" if self.stopped() else "time_budget"
            self._end_of_epoch(result.loss, images_per_s, validate_now=final or self.state.epoch % tcfg.val_every == 0)
            if final:
                break
        return self._finish(stopped_by, images_per_s)

    def _epoch(self, epochs_label: str) -> Any:
        c, tcfg, epoch = self.c, self.tcfg, self.state.epoch
        c.sampler.set_epoch(epoch)
        c.train_ds.set_epoch(epoch)
        loader = DataLoader(
            c.train_ds, batch_size=tcfg.batch_size,
            sampler=SkipSampler(c.sampler, self.state.step_in_epoch * tcfg.batch_size),
            num_workers=self.config.data.num_workers, drop_last=c.drop_last,
            pin_memory=self.ctx.device.type == "cuda",
            # its own generator: creating the iterator must not draw from the global RNG, or a
            # run resumed mid-epoch would see different dropout than an uninterrupted one
            generator=torch.Generator().manual_seed(tcfg.seed * 1_000_003 + epoch),
        )
        try:
            return train_epoch(
                ctx=self.ctx, model=c.model, loader=loader, loss_fn=c.loss_fn, optimizer=c.optimizer,
                scheduler=c.scheduler, scaler=c.scaler, precision=c.precision, channels_last=tcfg.channels_last,
                grad_clip=tcfg.grad_clip, state=self.state, ema=c.ema, budget_spent=self.budget_spent, clock=self.clock,
                total_epochs_label=epochs_label, log_every=tcfg.log_every, last_miou=self.last_miou,
                progress=self.progress,
            )
        except NonFiniteLoss as err:
            self._non_finite(err)

    def _plan_after(self) -> None:
        """Reserve the halo measurement's bound and say how the budget splits."""
        budget = self.tcfg.time_budget_minutes
        if budget is None:
            return
        same = self.c.bare.padding == "same" and bool(self.c.val_items)
        objects = OBJECTS_MIN_SECONDS if self._tunes_objects() else 0.0  # sized again by the first validation
        self.after = AfterTraining(halo=halo_seconds(60.0 * budget) if same else 0.0, objects=objects)
        self.say(f"budget {budget:g} min from the command's start, {self.clock():.0f} s spent before training; "
                 f"training stops when what is left is what follows it ({self.after.describe()}; the validation "
                 "timed as it runs)")

    def _val_tile(self) -> int | str:
        """``train.val_tile_size`` for images; volumes take the largest tiles that fit in memory ("auto")."""
        return self.tcfg.val_tile_size if self.c.bare.spatial_dims == 2 else "auto"

    def _val_halo(self) -> int | str:
        """The halo of validations during training: the exact one for images; for volumes at most
        :data:`~.budget.VOLUME_VAL_HALO` voxels (the exact halo's context on every face of a 3D tile costs 4-34x the
        volume, and a validation only ranks the epochs; the halo predictions use is measured after training)."""
        return "auto" if self.c.bare.spatial_dims == 2 else VOLUME_VAL_HALO

    def _selects_by_objects(self) -> bool:
        """Whether validations score objects and best.pt is chosen by them: runs that tune their object
        post-processing, in one process (the tuning sees one process's predictions). Pixel mIoU averages every
        class alike, distance levels a model never predicts included, so it ranks epochs by what the objects do
        not use."""
        return self._tunes_objects() and self.ctx.world_size == 1

    def _selection(self, scores: dict[str, Any]) -> tuple[float, ...]:
        """What validation ``scores`` rank by, highest best: (AP@0.5 of the objects under the post-processing
        tuned on them, mIoU) when :meth:`_selects_by_objects`, else (mIoU,)."""
        if not self._selects_by_objects():
            return (scores["miou"],)
        return (scores["object_tuning"].ap50, scores["miou"])

    def _validate(self) -> dict[str, Any]:
        c = self.c
        begun = self.clock()
        by_objects = self._selects_by_objects()
        scores = score_images(c.evaluated, c.val_items, num_classes=c.classes.num_classes,
                              ignore_index=c.train_ds.ignore_index, tile_size=self._val_tile(), halo=self._val_halo(),
                              amp=validation_amp(c.precision), normalization=c.normalization, device=self.ctx.device,
                              ctx=self.ctx, engine="torch",  # new weights every epoch: another engine would never pay
                              progress=self.progress and self.ctx.is_main, with_predictions=by_objects)
        if by_objects and c.val_instances is not None:
            # the seeds and minimum size tuned as after training (without TTA, which would cost 4 predictions): the
            # untuned objects rank epochs by their slivers (nuclei folds: untuned 0.78 where tuned 0.95)
            record = instance_record(self.config.data.instance_layout())
            deadline = self.clock() + max(SELECTION_TUNING_SECONDS, 2 * (self.clock() - begun))
            scores["object_tuning"] = tune_post_processing(
                scores.pop("predictions"), c.val_instances, record, instance_rule(record, min_size=0),
                c.classes.num_classes, unscored=c.val_unscored, deadline=deadline, clock=self.clock)[0]
        self.after = self.after.with_validation(self.clock() - begun, self._sample_share())
        self._validated = True
        return scores

    def _end_of_epoch(self, train_loss: float, images_per_s: float, validate_now: bool) -> None:
        ctx, c = self.ctx, self.c
        sync_buffers(ctx, c.bare)
        scores = None
        if validate_now and c.val_items:
            scores = self.last_scores = self._validate()
            self.last_miou = scores["miou"]
        improved = (scores is not None and not math.isnan(scores["miou"])
                    and self._selection(scores) > self.best_score)
        if improved:
            self.best_score = self._selection(scores)
            self.best_miou, self.best_epoch = scores["miou"], self.state.epoch
        if not ctx.is_main:
            return
        row = {"epoch": round(self.state.epoch + self.state.step_in_epoch / max(c.steps_per_epoch, 1), 3),
               "step": self.state.global_step, "time_s": self.clock(), "train_loss": train_loss,
               "lr": c.optimizer.param_groups[0]["lr"], "images_per_s": images_per_s}
        if scores is not None:
            ap50 = scores["object_tuning"].ap50 if "object_tuning" in scores else None
            row.update(val_miou=scores["miou"], val_accuracy=scores["accuracy"], val_ap50=ap50,
                       **{f"iou_{n}": v for n, v in zip(c.classes.names, scores["iou"], strict=True)})
            if self.progress:
                per_class = ", ".join(f"{n} {v:.3f}" for n, v in zip(c.classes.names, scores["iou"], strict=True))
                objects = f"  val AP@0.5 {ap50:.4f}" if ap50 is not None else ""
                tqdm.write(f"epoch {self.state.epoch}: loss {train_loss:.4f}  val mIoU {scores['miou']:.4f}{objects}  "
                           f"({per_class})")
        self.log.append(row)
        if self.on_epoch is not None:
            self.on_epoch(dict(row))
        begun = self.clock()
        if improved or not c.val_items:
            save_run_checkpoint(self.run_dir / BEST_NAME, c.evaluated, self.meta(scores["miou"] if scores else None))
        self.save_last()
        self.after = replace(self.after, writing=WRITE_S + 2 * (self.clock() - begun))  # best.pt is written again

    def _non_finite(self, err: NonFiniteLoss) -> None:
        if self.ctx.is_main and self.log.rows:
            plot_curves(self.log.rows, self.run_dir / "curves.png")
        if err.bad_inputs:
            files = self.c.train_ds.report.files if self.c.train_ds.report is not None else []
            named = [files[i] if i < len(files) else f"training image {i}" for i in err.sources]
            raise UnetsegError(f"training stopped at epoch {err.epoch}, step {err.step}: the input batch holds "
                               f"{err.bad_inputs} NaN/Inf value(s), from {', '.join(named) or 'the training images'} "
                               f"({self._kept()}); check those images' values and data.nodata")
        raise UnetsegError(f"training stopped: {err} ({self._kept()}); try a lower train.lr, train.grad_clip, "
                           "or train.amp=off")

    def _finish(self, stopped_by: str, images_per_s: float) -> RunResult:
        ctx, c = self.ctx, self.c
        sync_buffers(ctx, c.bare)
        digests = all_gather_object(ctx, state_digest(c.bare))
        best_path, last_path = self.run_dir / BEST_NAME, self.run_dir / LAST_NAME
        begun = self.clock()
        if ctx.is_main:
            if not best_path.exists():  # no score ever improved (e.g. no labelled validation pixels)
                save_run_checkpoint(best_path, c.evaluated, self.meta(self.last_miou))
            if self.log.rows:
                plot_curves(self.log.rows, self.run_dir / "curves.png")
            model = load_model(best_path, device=self.ctx.device)
            self._record_halo(model, best_path)
            self._tune_objects(model, best_path)
            self._sample_grid(model)
            self.say(f"writing summary.json ({self.clock() - begun:.0f} s since the last epoch; "
                     f"{self.after.total() - self.after.validation:.0f} s were reserved)")
        result = RunResult(
            run_dir=self.run_dir, best_miou=finite_or_none(self.best_miou), best_epoch=self.best_epoch,
            last_scores=self.last_scores, epochs=self.state.epoch, global_step=self.state.global_step,
            stopped_by=stopped_by, seconds=self.clock(), images_per_s=images_per_s, precision=c.precision.name,
            best_checkpoint=best_path, last_checkpoint=last_path,
        )
        if ctx.is_main:
            report = c.train_ds.report
            data = {} if report is None else {"warnings": report.warnings, "normalization": report.normalization,
                                              "nodata": report.nodata.to_dict()}
            write_summary(self.run_dir, {**asdict(result), "data": data, "parent": self.config.train.init,
                                         "world_size": ctx.world_size,
                                         "device": str(ctx.device),
                                         "rank_state_digests": digests, "ranks_identical": len(set(digests)) == 1})
        return result

    def _record_halo(self, model: SegmentationModel, best_path: Path) -> None:
        """Measure the context best.pt's tiles need on validation images and store it in its meta record; within
        the reserved share of the budget (none: the exact halo is kept, which is always right)."""
        images = [image for image, _ in self.c.val_items[:HALO_PROBE_IMAGES]]
        if model.padding != "same" or not images:
            return
        budget = self.tcfg.time_budget_minutes
        bound = self.after.halo if budget is not None else halo_seconds(self.clock())  # epochs only: of the run
        self.say(f"measuring the halo best.pt's tiles need (<= {bound:.0f} s)")
        begun = self.clock()
        found = measure_halo(model, images, device=self.ctx.device, seconds=bound, report=self.say)
        if found is None:
            self.say("no time left to measure the halo: predictions use the exact halo (tiled == whole image)")
            return
        self.say(f"halo {found.pixels} px ({100 * found.agreement:.3f} % agreement), {self.clock() - begun:.0f} s")
        model.meta = model.meta.with_halo(found)
        payload = read_checkpoint(best_path)
        payload["meta"] = model.meta.to_dict()
        write_checkpoint(payload, best_path)

    def _tunes_objects(self) -> bool:
        """Whether the run chooses its object post-processing after training (instance masks, 2D, validation
        images with their true objects)."""
        return (self.config.data.instance_layout() is not None and self.c.bare.spatial_dims == 2
                and bool(self.c.val_items) and self.c.val_instances is not None)

    def _tune_objects(self, model: SegmentationModel, best_path: Path) -> None:
        """Choose best.pt's object post-processing (seeds, minimum size) on the validation images to maximise
        AP@0.5 and store it in its meta record (:class:`~unetseg.models.meta.ObjectTuning`)."""
        record = model.meta.instances
        if not self._tunes_objects() or record is None or self.c.val_instances is None:
            return
        begun = self.clock()
        budget = self.tcfg.time_budget_minutes
        self.say("choosing the object post-processing on the validation images (AP@0.5)")

        def maps(tta: str | None) -> list[np.ndarray]:
            return [np.asarray(predict_tiled(model, image, tile_size=self._val_tile(), tta=tta,
                                             amp=validation_amp(self.c.precision))) for image, _ in self.c.val_items]
        deadline = None if budget is None else begun + self.after.objects  # >= OBJECTS_MIN_SECONDS
        tuned = choose_post_processing(maps, self.c.val_instances, record, object_rule(model, min_size=0),
                                       model.num_classes, deadline=deadline, clock=self.clock,
                                       unscored=self.c.val_unscored)
        level = f"seed level {tuned.seed_level}, " if tuned.seed_level is not None else \
            f"dome seeds of height {tuned.seed_height}, " if tuned.seed_height is not None else ""
        self.say(f"objects: {f'{tuned.tta} TTA, ' if tuned.tta else ''}{level}minimum size "
                 f"{tuned.min_size} px: validation AP@0.5 {tuned.ap50:.3f} (untuned {tuned.default_ap50:.3f}), "
                 f"AP@0.75 {tuned.ap75:.3f}; {self.clock() - begun:.0f} s")
        model.meta = replace(model.meta, object_tuning=tuned)
        payload = read_checkpoint(best_path)
        payload["meta"] = model.meta.to_dict()
        write_checkpoint(payload, best_path)

    def _sample_grid(self, model: SegmentationModel) -> None:
        c = self.c
        n = min(self.tcfg.plot_samples, len(c.val_items))
        if n == 0:
            return
        items = c.val_items[:n]
        self.say(f"drawing samples.png from {n} validation image(s)")
        # a picture, as validations rank epochs: a volume's at the validations' halo, not the exact one
        preds = [predict_tiled(model, image, tile_size=self._val_tile(), halo=self._val_halo(),
                               amp=validation_amp(c.precision)) for image, _ in items]
        if model.spatial_dims == 3:  # volumes: their middle slices
            middle = [len(mask) // 2 for _, mask in items]
            items = [(image[k], mask[k]) for (image, mask), k in zip(items, middle, strict=True)]
            preds = [pred[k] for pred, k in zip(preds, middle, strict=True)]
        nodata = c.train_ds.report.nodata if c.train_ds.report is not None else Nodata(None)
        plot_samples([i for i, _ in items], [m for _, m in items], preds, c.classes.palette(),
                     self.run_dir / "samples.png", c.classes.names, c.train_ds.ignore_index,
                     bands=self.config.display.bands, valid=[valid_mask(i, nodata.value, nodata.rule) for i, _ in items])
