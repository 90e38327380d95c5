"""One training epoch: optimizer steps on patches (``TrainPatches`` items: image float32 CxHxW normalised,
mask int64 hxw, weight float32 hxw), resumable mid-epoch. Validation lives in :mod:`.evaluate`."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import torch
from torch import nn
from torch.utils.data import Sampler
from tqdm.auto import tqdm

from ..models.precision import Precision
from .distributed import DistContext, all_reduce_sum, any_rank
from .ema import WeightAverage


class NonFiniteLoss(Exception):
    """The loss became NaN/Inf at ``epoch`` (1-based) and optimizer ``step``; ``bad_inputs``: how many input
    values of the batch were NaN/Inf, and ``sources`` the indices of the training images they came from."""

    def __init__(self, epoch: int, step: int, value: float, bad_inputs: int = 0,
                 sources: tuple[int, ...] = ()) -> None:
        super().__init__(f"loss is {value} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value
        self.bad_inputs, self.sources = bad_inputs, sources


class SkipSampler(Sampler[int]):
    """``base`` without its first ``skip`` indices: resuming in the middle of an epoch."""

    def __init__(self, base: Sampler[int], skip: int) -> None:
        self.base, self.skip = base, skip

    def __iter__(self) -> Iterator[int]:
        return islice(iter(self.base), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.base) - self.skip, 0)  # type: ignore[arg-type]


@dataclass
class StepState:
    """Where training is; saved in last.pt so a resumed run continues exactly."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # optimizer steps done in the current (incomplete) epoch
    global_step: int = 0
    elapsed: float = 0.0  # wall-clock seconds spent by this run, over all its sessions


@dataclass
class EpochResult:
    loss: float  # mean training loss over the epoch's steps (all ranks)
    steps: int
    images: int  # patches seen, all ranks
    seconds: float
    stopped: bool  # the time budget ran out during this epoch


def to_device_batch(batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    image = batch["image"].to(device, non_blocking=True)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last if image.dim() == 4 else torch.channels_last_3d)
    mask = batch["mask"].to(device, non_blocking=True).long()
    weight = batch.get("weight")
    return image, mask, None if weight is None else weight.to(device, non_blocking=True)


def train_epoch(
    *,
    ctx: DistContext,
    model: nn.Module,
    loader: Sequence,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    precision: Precision,
    channels_last: bool,
    grad_clip: float | None,
    state: StepState,
    ema: WeightAverage | None = None,
    budget_spent: Callable[[], bool],
    clock: Callable[[], float],
    total_epochs_label: str,
    log_every: int,
    last_miou: float | None,
    progress: bool,
) -> EpochResult:
    """Run the optimizer over ``loader`` (which already skips steps done before a resume).

    Updates ``state`` after every step. Stops early, after a finished step, when ``budget_spent()``
    is true on any rank. Raises :class:`NonFiniteLoss` before the backward pass of a NaN/Inf loss,
    so the weights stay those of the last good step.
    """
    model.train()
    device = ctx.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    steps = images = 0
    stopped = False
    start = time.perf_counter()
    bar = tqdm(total=len(loader) + state.step_in_epoch, initial=state.step_in_epoch,
               desc=f"epoch {state.epoch + 1}/{total_epochs_label}", disable=not (progress and ctx.is_main),
               leave=False, dynamic_ncols=True)
    for batch in loader:
        if any_rank(ctx, budget_spent()):
            stopped = True
            break
        image, mask, weight = to_device_batch(batch, device, channels_last)
        with precision.autocast(device):
            logits = model(image)
        loss = loss_fn(logits, mask, weight)
        # one collective per step: the mean loss over ranks, which also makes NaN on any rank visible to all
        reduced = all_reduce_sum(ctx, loss.detach().double().reshape(1)) / ctx.world_size
        value = float(reduced)
        if not math.isfinite(value):
            bar.close()
            bad = ~torch.isfinite(image)
            per_item = bad.flatten(1).any(1).cpu()
            source = batch.get("source")
            sources = () if source is None else tuple(sorted(set(source[per_item].tolist())))
            raise NonFiniteLoss(state.epoch + 1, state.global_step + 1, value, int(bad.sum()), sources)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update()
        loss_sum += reduced[0]
        steps += 1
        images += image.shape[0] * ctx.world_size
        state.step_in_epoch += 1
        state.global_step += 1
        state.elapsed = clock()
        bar.update(1)
        if steps % log_every == 0 or steps == 1:
            post = {"loss": f"{float(loss_sum) / steps:.4f}", "lr": f"{optimizer.param_groups[0]['lr']:.2e}"}
            if last_miou is not None:
                post["mIoU"] = f"{last_miou:.3f}"
            bar.set_postfix(post, refresh=False)
    bar.close()
    seconds = time.perf_counter() - start
    return EpochResult(float(loss_sum) / max(steps, 1) if steps else math.nan, steps, images, seconds, stopped)
