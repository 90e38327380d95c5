"""A run config planned for volumes: 2D, 2.5D or 3D, chosen by measured step time within the time budget.

The networks are same-padding U-Nets on (Z, Y, X) volumes, trained on volume patches and predicted by the 3D tiler,
so they differ only in how far they look along z (:func:`layout`):

* **2D**: 1-voxel kernels along z and no pooling along z: each slice is segmented on its own (a 2D U-Net), trained
  on single slices from 8 places per step, as a 2D batch;
* **2.5D**: the 2D network whose first convolution also sees :data:`CONTEXT_SLICES` slices above and below,
  unpadded along z (neighbouring slices as channels), trained on stacks of 5 slices from 8 places per step with
  the centre slice's labels: it costs about a 2D step and its z context is real in training as at inference;
* **3D**: 3-voxel kernels and pooling along every axis that is not much coarser than the others (nnU-Net's rule,
  :func:`unetseg.models.anisotropy.pooling_plan`), on 2+ patches per step.

The plan first finds the widest 2D network (base channels) that takes :data:`MIN_STEPS` optimiser steps in the
budget, as :func:`unetseg.training.plan.make_plan` does for images. Then it times the 3D and then the 2.5D network
at that width and takes the first whose step costs at most :data:`CONTEXT_COST` times the 2D network's: context
along z only pays when the network need not be narrower nor trained fewer steps to afford it. Measured on the brain
volume at 10 minutes (2-core AMD EPYC, mean Dice over grey and white matter on the held-out slab): the 2D U-Net
config (base 32) 0.966, a 3D U-Net narrow enough to train as many steps (base 8) 0.952 (the 3D network of the plan's
width costs 3x the 2D step); the plan's 2.5D network (its step 1.02x the 2D one's) 0.967 against 0.968 for the same
plan with the 2D network, in one session. Each choice carries its reason.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from ..data.volume_fingerprint import ANISOTROPY, VolumeFingerprint
from ..models import UNet
from ..models.anisotropy import pooling_plan
from ..models.precision import resolve_precision
from .budget import (
    VOLUME_VAL_HALO,
    AfterTraining,
    affordability,
    forward_seconds,
    halo_seconds,
    seconds_text,
    widest_affordable,
)
from .plan import BASES, EPOCH_CAP, MIN_STEPS, VALIDATION_SHARE, VALIDATIONS, Plan, training_step_seconds

KINDS = ("3d", "2.5d", "2d")  # the networks a plan chooses between (:func:`layout`), most context along z first
CONTEXT_SLICES = 2  # 2.5D: slices seen above and below each segmented slice
DEPTH = 4
PLANE_PATCH = 128  # in-plane patch side of 2D networks (the brain 2D config's)
STEP_VOXELS = 8 * PLANE_PATCH**2  # voxels per optimiser step, about constant over kinds (batch x patch): 2D's 8
MIN_BATCH = 2  # patches per step at least: BatchNorm's statistics over the slices of one place are not those of the
# volumes (brain, 10 min, planned: a network with 3-slice kernels at its first level on 1 patch of 8 slices per step
# scored mean Dice 0.70, 0.89 with the slab's own statistics; the 2D network on single slices from 8 places 0.963)
MAX_BATCH = 16  # patches per step at most (small volumes' small patches), as the image plan
CUBE_VOXELS = 64**3  # a 3D patch: about this many voxels, shaped by the spacing
CONTEXT_COST = 1.1  # z context is taken where its step costs at most this many 2D steps (see the docstring)
VAL_SHARE = 0.25  # of the voxels validate (estimate of the validation's cost before the split is made)


def layout(kind: str, depth: int, spacing: tuple[float, float, float]) -> dict[str, Any]:
    """The U-Net keyword arguments that make a ``kind`` network (:data:`KINDS`): ``pooling`` (``depth`` per-axis
    factors), ``kernels`` (``depth + 1`` per-axis sizes), (z, y, x) each, and for 2.5D ``context_slices`` (see the
    module docstring)."""
    if kind == "3d":
        pooling, kernels = pooling_plan(spacing, depth)
        return {"pooling": pooling, "kernels": kernels}
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: one of {', '.join(KINDS)}")
    flat = {"pooling": [[1, 2, 2] for _ in range(depth)], "kernels": [[1, 3, 3] for _ in range(depth + 1)]}
    return {**flat, "context_slices": CONTEXT_SLICES} if kind == "2.5d" else flat


def _fit(side: int, length: int, stride: int) -> int:
    """The largest multiple of ``stride`` <= ``side`` that fits ``length`` (at least one stride)."""
    return max(stride, min(side, length) // stride * stride)


def patch_shape(kind: str, fp: VolumeFingerprint, depth: int) -> tuple[int, int, int]:
    """(z, y, x) input voxels of a training patch of a planned ``kind`` network (:data:`KINDS`): 2D one slice of
    :data:`PLANE_PATCH`^2, 2.5D that slice with its context slices, 3D about :data:`CUBE_VOXELS` with each side's
    extent in physical units alike; fitted to the volumes and the strides."""
    pooling = layout(kind, depth, fp.spacing)["pooling"]
    strides = [math.prod(level[a] for level in pooling) for a in range(3)]
    z, y, x = fp.median_shape
    if kind in ("2d", "2.5d"):
        slices = 1 + 2 * CONTEXT_SLICES if kind == "2.5d" else 1
        return (slices, _fit(PLANE_PATCH, y, strides[1]), _fit(PLANE_PATCH, x, strides[2]))
    finest = min(fp.spacing)
    ratios = [finest / s for s in fp.spacing]  # voxels per finest-voxel length along each axis
    side = (CUBE_VOXELS / math.prod(ratios)) ** (1 / 3)
    return tuple(_fit(max(strides[a], round(side * ratios[a])), n, strides[a])  # type: ignore[return-value]
                 for a, n in enumerate((z, y, x)))


def build(kind: str, fp: VolumeFingerprint, base: int, depth: int = DEPTH) -> UNet:
    return UNet(fp.bands, fp.num_classes, base_channels=base, depth=depth, padding="same", spatial_dims=3,
                **layout(kind, depth, fp.spacing))


def labelled_voxels(kind: str, patch: tuple[int, int, int]) -> int:
    """Voxels of a ``kind`` network's training patch that carry a target (a 2.5D patch's centre slice)."""
    return math.prod(patch) // (1 + 2 * CONTEXT_SLICES) if kind == "2.5d" else math.prod(patch)


def volume_step_seconds(kind: str, fp: VolumeFingerprint, base: int, patch: tuple[int, int, int], batch: int,
                        device: torch.device | None = None, steps: int = 2) -> float:
    """Measured seconds of one training step (forward, backward, Adam) of a ``kind`` network on ``batch`` patches
    of ``patch`` voxels, in the precision training would use here."""
    torch.manual_seed(0)
    return training_step_seconds(build(kind, fp, base), (batch, fp.bands, *patch), device, steps)


def validation_voxels(kind: str, fp: VolumeFingerprint, base: int) -> float:
    """Input voxels one validation computes, estimated as :data:`VAL_SHARE` of the volumes' tiled voxels, with the
    trainer's halo for volumes (:data:`VOLUME_VAL_HALO`, capped per axis by the field: on the brain's validation slab
    the exact halo of a depth-4 network at base 32, 96 voxels in-plane, makes the tiles 4x (2D), 9.7x (2.5D) and
    2400x (3D) the slab's voxels; 32 voxels 1.8x, 2.6x and 27x)."""
    from ..tiling import volume_input_voxels

    model = build(kind, fp, base)
    total = sum(volume_input_voxels(model, shape, VOLUME_VAL_HALO) for shape in fp.shapes)
    return VAL_SHARE * total


def _normalize(fp: VolumeFingerprint) -> tuple[str, str]:
    if fp.ct_like:
        return "ct", (f"signed voxels down to {min(fp.lowest):g} (Hounsfield units of air): CT, clipped to the "
                      "foreground's 0.5-99.5 percentiles and z-scored by its mean/std (nnU-Net's CT rule)")
    if fp.scales_differ:
        return "zscore", "the volumes' intensity scales differ: each volume z-scored on its own"
    return "meanstd", "one intensity scale across the volumes: mean/std of the training voxels"


def make_volume_plan(fp: VolumeFingerprint, minutes: float = 10.0, *, device: torch.device | None = None,
                     measure: Any = None, started: float | None = None,
                     say: Callable[[str], Any] | None = None,
                     clock: Callable[[], float] = time.perf_counter) -> Plan:
    """The run config for the volumes of ``fp`` to train for ``minutes`` (the whole command's budget, counted
    from ``started``, a ``clock()`` value) on ``device`` (default CPU), with the reason for each choice.

    ``measure(kind, fp, base, patch, batch)`` -> seconds per training step (default: :func:`volume_step_seconds`,
    measured here); ``say`` gets a status line before each timing."""
    started = clock() if started is None else started
    measure = measure or volume_step_seconds
    budget = 60.0 * minutes
    after = AfterTraining(halo=halo_seconds(budget))
    patches = {kind: patch_shape(kind, fp, DEPTH) for kind in KINDS}
    batches = {kind: min(MAX_BATCH, max(MIN_BATCH, round(STEP_VOXELS / labelled_voxels(kind, patches[kind]))))
               for kind in KINDS}
    timed: dict[tuple[str, int], float] = {}

    def time_step(kind: str, base: int) -> float:
        if say is not None:
            say(f"timing a training step of a {kind.upper()} U-Net, base {base}, {batches[kind]} patch(es) of "
                f"{'x'.join(map(str, patches[kind]))} voxels")
        timed[kind, base] = float(measure(kind, fp, base, patches[kind], batches[kind]))
        return timed[kind, base]

    affordable = affordability(MIN_STEPS, budget, started, clock, after)  # the image plan's rule
    base = widest_affordable(BASES, lambda width: time_step("2d", width), affordable)  # 2D, reaching MIN_STEPS
    kind = "2d"
    for candidate in KINDS[:-1]:  # then the most context along z at that width, at about the 2D network's steps
        seconds = time_step(candidate, base)
        if seconds <= CONTEXT_COST * timed["2d", base] and affordable(seconds):
            kind = candidate
            break
    seconds = timed[kind, base]
    planning = clock() - started
    val_seconds = forward_seconds(validation_voxels(kind, fp, base), seconds, batches[kind] * labelled_voxels(kind, patches[kind]))
    after = after.with_validation(val_seconds, 0.0)
    training = max(budget - planning - after.total(), seconds)
    validations = VALIDATIONS
    if VALIDATIONS * val_seconds > VALIDATION_SHARE * training:  # validating must leave time to train
        validations = max(1, int(VALIDATION_SHARE * training / max(val_seconds, 1e-9)))
    steps = (training - validations * val_seconds) / seconds
    steps_per_epoch = max(4, int(steps / validations))
    reasons = {"model.spatial_dims": _kind_reason(kind, base, timed, fp),
               "model.base_channels": (f"measured {seconds:.2f} s per step here: base {base} takes ~{int(steps)} "
                                       f"steps in {minutes:g} min (the widest of {', '.join(map(str, BASES))} whose 2D "
                                       f"network reaches {MIN_STEPS})"),
               "model.depth": f"depth {DEPTH}: a {2**DEPTH}x smaller bottleneck in-plane",
               "data.patch_size": _patch_reason(kind, patches[kind], fp),
               "train.batch_size": (f"{batches[kind]} patches per step: about {STEP_VOXELS // 1024}k voxels, from "
                                    f"{MIN_BATCH}+ places (BatchNorm's statistics)"),
               "data.patches_per_epoch": f"{steps_per_epoch} steps per epoch: about {validations} validations"}
    normalize, reasons["data.normalize"] = _normalize(fp)
    data: dict[str, Any] = {}
    if fp.source == "sample":
        data.update(source="sample", sample=fp.sample, sample_options={"volume": True})
        reasons["data.sample"] = "a built-in volume sample: its fixed split of slabs"
    else:
        data.update(source="folder", images=fp.images_dir, masks=fp.masks_dir, val_fraction=0.2)
        reasons["data.val_fraction"] = (f"{fp.volumes} volumes: a fifth of them validate" if fp.volumes > 1 else
                                        "one volume: a slab along z validates, with the model's context between")
    data.update(patch_size=list(patches[kind]), patches_per_epoch=steps_per_epoch * batches[kind],
                normalize=normalize, weight_map={"enabled": False, "class_weights": None})
    rare = min(fp.class_fractions)
    dice = 0.5 if fp.num_classes > 2 or rare < 0.1 else 0.0
    reasons["loss.dice"] = ("cross-entropy plus Dice (0.5): Dice keeps small structures from vanishing" if dice
                            else "cross-entropy: two classes, neither rare")
    config = {
        "model": {"name": "unet", "spatial_dims": 3, "base_channels": base, "depth": DEPTH, "padding": "same",
                  "norm": "batch", **layout(kind, DEPTH, fp.spacing)},
        "data": data,
        "train": {"epochs": EPOCH_CAP, "time_budget_minutes": float(minutes), "batch_size": batches[kind],
                  "optimizer": "adam", "lr": 1e-3, "scheduler": "cosine", "amp": "auto", "val_every": 1},
        "loss": {"ce": 1.0, "dice": dice},
    }
    reasons["train.time_budget_minutes"] = (f"the whole run in {minutes:g} min, what follows training included (the "
                                            "cosine schedule follows the clock)")
    precision = resolve_precision("auto", device or torch.device("cpu"), training=True)
    z, y, x = fp.median_shape
    header = [f"unetseg plan: {fp.volumes} volume(s) (median {x}x{y}x{z} voxels, x by y by z), {fp.bands} band(s) "
              f"{fp.dtype}, spacing {_spacing(fp)} (z, y, x), {fp.num_classes} classes, class shares "
              f"{[round(f, 3) for f in fp.class_fractions]}",
              f"a {kind.upper()} network, trained on volume patches and predicted by the 3D tiler; trains in "
              f"{precision.name}; override any key with --set or by editing this file",
              f"budget {minutes:g} min: planning {planning:.0f} s, training ~{training / 60:.1f} min with "
              f"~{validations} validation(s) of ~{seconds_text(val_seconds)}, then {after.describe()}"]
    return Plan(config, reasons, header, fp.to_dict())


def _spacing(fp: VolumeFingerprint) -> str:
    return "x".join(f"{s:g}" for s in fp.spacing)


def _kind_reason(kind: str, base: int, timed: dict[tuple[str, int], float], fp: VolumeFingerprint) -> str:
    steps = ", ".join(f"{k.upper()} {timed[k, base]:.2f} s" for k in KINDS if (k, base) in timed)
    aniso = (f"; z is {fp.anisotropy:.1f}x coarser, so 3D pools in-plane first" if fp.anisotropy >= ANISOTROPY
             and kind == "3d" else "")
    cost = f"{CONTEXT_COST:g}x the 2D network's step"
    why = {"3d": f"a 3D network of the same width trains within {cost}: context along every axis",
           "2.5d": (f"a 3D network of the same width would cost over {cost} (fewer steps); seeing {CONTEXT_SLICES} "
                    f"slices above and below in its first convolution costs within it"),
           "2d": f"3D and 2.5D networks of the same width would cost over {cost} (fewer steps): slice by slice"}[kind]
    return f"{kind.upper()}: {why} (step times at base {base}: {steps}){aniso}"


def _patch_reason(kind: str, patch: tuple[int, ...], fp: VolumeFingerprint) -> str:
    shape = "x".join(map(str, patch))
    if kind == "3d":
        extent = "x".join(f"{n * s:g}" for n, s in zip(patch, fp.spacing, strict=True))
        return f"3D patches of {shape} voxels (z, y, x): about {extent} in the spacing's unit"
    if kind == "2d":
        return f"single slices of {patch[1]}x{patch[2]} voxels (z, y, x): a 2D network learns from 2D patches"
    if kind == "2.5d":
        return (f"stacks of {patch[0]} slices of {patch[1]}x{patch[2]} voxels (z, y, x): the centre slice's labels "
                f"with the {CONTEXT_SLICES} slices above and below it sees")
    return f"{patch[0]} slices of {patch[1]}x{patch[2]} voxels per patch (z, y, x)"
