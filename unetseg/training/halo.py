"""Measuring how much context a same-padding model's tiles really need (``halo="auto"``).

The receptive field of a deep U-Net is far wider than the context its predictions depend on in practice:
half of a 512 px tile is context at the exact (receptive-field) halo. :func:`measure_halo` finds, on real
probe images, the smallest halo whose tiled labels agree with the whole-image labels on at least ``target``
of the pixels. Training stores the result in the checkpoint (:class:`~unetseg.models.meta.HaloRecord`), and
``predict_tiled``'s ``halo="auto"`` uses it from then on.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from ..data.normalization import Normalization
from ..data.scenes import mirror_tile
from ..inference import predict_tiled
from ..models.geometry import Geometry, round_up
from ..models.meta import HaloRecord

TARGET_AGREEMENT = 0.9999
PROBE_TILE = 256  # the smallest tile_size="auto" candidate: the densest seams a prediction will have
PROBE_SIDE = 640  # probe images are mirror-tiled to at least this side, so every probe has inner seams


def halo_candidates(geometry: Geometry) -> list[int]:
    """Halos to try, smallest first: multiples of the stride up to the exact (receptive-field) halo, or up to
    four strides when the receptive field is unknown."""
    stride = geometry.stride
    top = geometry.halo_for("exact") if geometry.field_radius is not None else 4 * stride
    return list(range(0, round_up(top, stride) + 1, stride))


def measure_halo(model: nn.Module, images: Sequence[np.ndarray], *, target: float = TARGET_AGREEMENT,
                 normalization: Normalization | None = None, device: Any = None) -> HaloRecord:
    """The smallest halo whose tiled labels agree with the whole-image labels on >= ``target`` of the pixels.

    Args:
        model: a same-padding model (valid models need no halo: their context is the margin).
        images: probe images, HxW[xC] as ``predict_tiled`` takes them (e.g. the validation images); each is
            mirror-tiled up to ``PROBE_SIDE`` px so tiles of ``PROBE_TILE`` px leave seams inside it.
        target: required label agreement (fraction of all probe pixels).
        normalization, device: as for :func:`predict_tiled`.

    Returns:
        The halo, its agreement (the fraction of probe pixels), the target and the probe pixel count; measured
        in fp32, so the figure is about context alone, not rounding. When no candidate reaches the target,
        the largest candidate is returned with its agreement.
    """
    geometry = Geometry.of(model)
    if geometry.padding == "valid":
        return HaloRecord(0, 1.0, target, 0)
    options = dict(amp=False, normalization=normalization, device=device, compile=False, batch_size=1, engine="torch")
    probes = []
    for image in images:
        if min(image.shape[:2]) < 1:
            raise ValueError(f"measure_halo: empty probe image of shape {tuple(image.shape)}")
        probes.append(mirror_tile(np.asarray(image), max(PROBE_SIDE, image.shape[0], image.shape[1])))
    if not probes:
        raise ValueError("measure_halo needs at least one probe image")
    total = sum(probe.shape[0] * probe.shape[1] for probe in probes)
    candidates = halo_candidates(geometry)
    agreement = 0.0
    for halo in candidates:
        # The reference is one tile over the whole probe with the same border context, so only the seams
        # between tiles differ (models of unknown receptive field also depend on how far the border is mirrored).
        agree = sum(int((predict_tiled(model, probe, tile_size=PROBE_TILE, halo=halo, **options)
                         == predict_tiled(model, probe, tile_size=2 * max(probe.shape[:2]), halo=halo, **options)).sum())
                    for probe in probes)
        agreement = agree / total
        if agreement >= target:
            return HaloRecord(halo, agreement, target, total)
    return HaloRecord(candidates[-1], agreement, target, total)
