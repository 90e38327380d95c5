"""Measuring how much context a same-padding model's tiles really need (``halo="auto"``).

The receptive field of a deep U-Net is far wider than the context its predictions depend on in practice:
half of a 512 px tile is context at the exact (receptive-field) halo. :func:`measure_halo` finds, on real
probe images, the smallest halo whose tiled labels agree with the whole-image labels on at least ``target``
of the pixels. Training stores the result in the checkpoint (:class:`~unetseg.models.meta.HaloRecord`), and
``predict_tiled``'s ``halo="auto"`` uses it from then on.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

from ..data.normalization import Normalization
from ..data.scenes import mirror_tile
from ..errors import UnetsegWarning
from ..models.geometry import Geometry, round_up
from ..models.meta import HaloRecord
from ..tiling import input_pixels, predict_tiled

TARGET_AGREEMENT = 0.9999
PROBE_TILE = 256  # the smallest tile_size="auto" candidate: the densest seams a prediction will have
PROBE_SIDE = 640  # probes are this side (mirror-tiled up, cropped down), so every probe has inner seams
MAX_CANDIDATES = 4  # halos evaluated at most: a bisection over the stride multiples up to the exact halo
MAX_PROBES = 4
# volumes (3D models): probes of this side per axis, tiles of this side, so a 2 x 2 x 2 grid at the least
PROBE_SIDE_3D = 96
PROBE_TILE_3D = 48


def halo_candidates(geometry: Geometry) -> list[int]:
    """Halos to try, smallest first: multiples of the stride up to the exact (receptive-field) halo, or up to
    four strides when the receptive field is unknown."""
    stride = geometry.stride
    top = geometry.halo_for("exact") if geometry.field_radius is not None else 4 * stride
    return list(range(0, round_up(top, stride) + 1, stride))


def _probe(image: np.ndarray, dims: int = 2) -> np.ndarray:
    """The central PROBE_SIDE x PROBE_SIDE crop of ``image``, mirror-tiled up to that side where it is smaller; for a
    volume (``dims=3``) the central PROBE_SIDE_3D cube, mirrored up to it."""
    image = np.asarray(image)
    if dims == 2:
        r, c = max(0, (image.shape[0] - PROBE_SIDE) // 2), max(0, (image.shape[1] - PROBE_SIDE) // 2)
        return mirror_tile(image[r : r + PROBE_SIDE, c : c + PROBE_SIDE], PROBE_SIDE)
    side = PROBE_SIDE_3D
    crop = image[tuple(slice(max(0, (n - side) // 2), max(0, (n - side) // 2) + side) for n in image.shape[:3])]
    pads = [(0, side - n) for n in crop.shape[:3]] + [(0, 0)] * (crop.ndim - 3)
    return np.pad(crop, pads, mode="symmetric") if any(p for _, p in pads) else crop


def _computed_pixels(geometry: Geometry | tuple[Geometry, ...], halo: int, side: int, tiles: Sequence[int],
                     dims: int = 2) -> int:
    """Input pixels the grids of ``tiles`` px tiles compute over a ``side`` px square (cube) at ``halo``."""
    return sum(input_pixels((side,) * dims, tile, geometry, halo) for tile in tiles)


def measure_halo(model: nn.Module, images: Sequence[np.ndarray], *, target: float = TARGET_AGREEMENT,
                 normalization: Normalization | None = None, device: Any = None, seconds: float | None = None,
                 report: Callable[[str], Any] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> HaloRecord | None:
    """The smallest halo whose tiled labels agree with the whole-image labels on >= ``target`` of the pixels.

    The candidates (:func:`halo_candidates`) are bisected, at most ``MAX_CANDIDATES`` evaluated: the largest, the
    exact halo, needs no evaluation (tiled == whole by construction), and agreement grows with the halo.

    Args:
        model: a same-padding model (valid models need no halo: their context is the margin).
        images: probe images, HxW[xC] as ``predict_tiled`` takes them (e.g. the validation images), up to
            ``MAX_PROBES`` of them; each becomes a ``PROBE_SIDE`` px square (mirror-tiled up, cropped down) so
            tiles of ``PROBE_TILE`` px leave seams inside it. For a 3D model, volumes (DxHxW[xC]): cubes of
            ``PROBE_SIDE_3D`` voxels, tiles of ``PROBE_TILE_3D``; the halo is in in-plane voxels (rounded up to
            each axis's stride).
        target: required label agreement (fraction of all probe pixels).
        normalization, device: as for :func:`predict_tiled`.
        seconds: time bound: fewer probes, then fewer candidates, so the measurement ends within it (timed
            from a first forward); None: no bound.
        report: called with a one-line status before and after each evaluation.

    Returns:
        The halo, its agreement (the fraction of probe pixels), the target and the probe pixel count; measured
        in fp32, so the figure is about context alone, not rounding. The smallest passing candidate found, or
        the exact halo (agreement 1.0) when none smaller passed in time; for a model of unknown receptive field
        the largest candidate is evaluated too. None when not even one evaluation fits in ``seconds``.
    """
    geometry = Geometry.of(model)
    if geometry.padding == "valid":
        return HaloRecord(0, 1.0, target, 0)
    dims = int(getattr(model, "spatial_dims", 2))
    axes = Geometry.axes(model) if dims == 3 else geometry
    side, probe_tile = (PROBE_SIDE, PROBE_TILE) if dims == 2 else (PROBE_SIDE_3D, PROBE_TILE_3D)
    say = report or (lambda line: None)
    options = dict(amp=False, normalization=normalization, device=device, compile=False, batch_size=1, engine="torch",
                   tta=None)

    def tiled(image: np.ndarray, tile: int, halo: int) -> np.ndarray:
        with warnings.catch_warnings():  # the probes' tiles are small on purpose: the densest seams
            warnings.simplefilter("ignore", UnetsegWarning)
            return predict_tiled(model, image, tile_size=tile, halo=halo, **options)

    for image in images:
        if min(np.asarray(image).shape[:2]) < 1:
            raise ValueError(f"measure_halo: empty probe image of shape {tuple(np.asarray(image).shape)}")
    if not images:
        raise ValueError("measure_halo needs at least one probe image")
    started = clock()
    candidates = halo_candidates(geometry)
    exact = geometry.field_radius is not None
    probes = [_probe(image, dims) for image in images[:MAX_PROBES]]
    per_pixel = None
    if seconds is not None:  # a forward of one probe tile without context: seconds per input pixel in fp32 (a
        # middling halo's tile can alone take longer than the bound: a wide 3D model's is ~20x the voxels)
        tile = probes[0][(slice(0, probe_tile),) * dims]
        for _ in range(2):  # the first call pays for allocations and kernel choices
            before = clock()
            tiled(tile, probe_tile, 0)
        per_pixel = (clock() - before) / _computed_pixels(axes, 0, probe_tile, [probe_tile], dims)

    def cost(halo: int, n: int) -> float:
        return 0.0 if per_pixel is None else per_pixel * n * _computed_pixels(axes, halo, side, [probe_tile, 2 * side],
                                                                              dims)

    def left() -> float:
        return float("inf") if seconds is None else seconds - (clock() - started)

    lo, hi = -1, len(candidates) - 1  # the largest failing and the smallest passing (or exact) candidate
    agreements: dict[int, float] = {}
    plan = min(MAX_CANDIDATES, max(1, (len(candidates) - 1).bit_length()))
    while len(probes) > 1 and cost(candidates[(lo + hi) // 2], len(probes)) * plan > left():
        probes.pop()  # fewer probes before fewer candidates
    total = len(probes) * side**dims
    evaluated = 0

    def evaluate(index: int) -> float | None:
        nonlocal evaluated
        halo = candidates[index]
        if evaluated >= MAX_CANDIDATES or cost(halo, len(probes)) > left():
            return None
        evaluated += 1
        say(f"halo {halo} px: comparing tiled and whole-image labels on {len(probes)} probe(s) "
            f"(candidate {evaluated} of at most {MAX_CANDIDATES})")
        # The reference is one tile over the whole probe with the same border context, so only the seams
        # between tiles differ (models of unknown receptive field also depend on how far the border is mirrored).
        agree = sum(int((tiled(probe, probe_tile, halo) == tiled(probe, 2 * side, halo)).sum())
                    for probe in probes)
        agreements[index] = agree / total
        say(f"halo {halo} px: {100 * agreements[index]:.3f} % agreement (target {100 * target:.2f} %), "
            f"{clock() - started:.0f} s")
        return agreements[index]

    while hi - lo > 1:
        mid = (lo + hi) // 2
        found = evaluate(mid)
        if found is None:
            break
        if found >= target:
            hi = mid
        else:
            lo = mid
    if hi not in agreements and not exact and evaluate(hi) is None:
        return None if not agreements else HaloRecord(candidates[hi], max(agreements.values()), target, total)
    return HaloRecord(candidates[hi], agreements.get(hi, 1.0), target, total if agreements else 0)
