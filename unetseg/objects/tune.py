"""Object post-processing chosen on validation images: the test-time augmentation the class maps are predicted
with, the seeds (distance-target models: a seed level or a dome height) and the minimum object size that maximise
AP@0.5 (:class:`unetseg.metrics.ObjectScores`).

The class maps are predicted once per TTA candidate (:func:`choose_post_processing`); then only the
post-processing varies. For each seed choice the objects are made
once with no size limit; each minimum size then only drops the objects under it (what the rule's ``min_size``
does), so the search costs one labelling per seed choice plus one scoring per candidate.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import zip_longest

import numpy as np

from ..metrics import ObjectScores
from ..models.meta import InstanceRecord, ObjectTuning
from .separate import ObjectRule, default_seed_level, distance_rule, label_objects

# Flips averaged before the objects are made: on the nuclei sample's 4 region folds (4 CPU-minutes each, AMD EPYC)
# the tuned AP@0.5 went 0.822 -> 0.857 (worst fold 0.741 -> 0.796); d4's 8 views gained less (0.839) at twice the cost.
TTA_CANDIDATES: tuple[str | None, ...] = (None, "flips")
SIZE_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.5)  # candidate minimum sizes, as fractions of the median true area
FIXED_SIZES = (0, 4, 8, 16, 32)


@dataclass(frozen=True)
class Candidate:
    """One post-processing setting and its validation scores."""

    seed_level: int | None
    min_size: int
    ap50: float
    ap75: float
    seed_height: int | None = None


def min_size_candidates(instances: Sequence[np.ndarray]) -> list[int]:
    """Minimum sizes worth trying (px): a few fixed ones and fractions of the true objects' median area."""
    areas = np.concatenate([np.bincount(np.unique(np.asarray(i), return_inverse=True)[1].ravel())[1:]
                            if np.asarray(i).max(initial=0) > 0 else np.zeros(0, np.int64) for i in instances])
    median = float(np.median(areas)) if len(areas) else 0.0
    found = {s for s in FIXED_SIZES if not median or s < median} | {int(round(f * median)) for f in SIZE_FRACTIONS}
    return sorted(found)


def _score(instances: Sequence[np.ndarray], objects: Sequence[np.ndarray], areas: Sequence[np.ndarray],
           min_size: int, unscored: Sequence[np.ndarray | None]) -> tuple[float, float]:
    found = ObjectScores()
    for true, ids, area, off in zip(instances, objects, areas, unscored, strict=True):
        kept = ids if not min_size else np.where(area[ids] >= min_size, ids, 0)
        found.update(true, kept, off)
    ap = found.compute()["ap"]
    return float(np.nan_to_num(ap[0.5])), float(np.nan_to_num(ap[0.75]))


def tune_post_processing(class_maps: Sequence[np.ndarray], instances: Sequence[np.ndarray], record: InstanceRecord,
                         rule: ObjectRule, num_classes: int, *, deadline: float | None = None,
                         clock: Callable[[], float] = time.perf_counter,
                         unscored: Sequence[np.ndarray | None] | None = None) -> tuple[ObjectTuning, list[Candidate]]:
    """The setting of best AP@0.5 (then AP@0.75, then the smaller size, then seeds by level before dome seeds, then
    the level or height nearer the default) on predicted ``class_maps`` (HxW ints) against their true
    ``instances`` (HxW ids, 0 = none), and every candidate scored. ``rule``: the model's untuned object rule
    (three-class targets: only the size varies). Distance targets try every seed level and every dome height
    (:mod:`unetseg.objects.domes`), alternately, each from the middle level outwards. ``deadline`` (a ``clock()``
    time): stop trying further seeds past it (the default level is always tried first).
    ``unscored``: per image, truth pixels not scored (HxW bool or None; :meth:`ObjectScores.update`), e.g. the
    slivers of objects that a region split's block edge cuts off; the size candidates come from the scored
    objects."""
    unscored = list(unscored) if unscored is not None else [None] * len(instances)
    default = default_seed_level(record.levels) if record.target == "distance" else 0
    seeds: list[tuple[int | None, int | None]] = [(None, None)]
    if record.target == "distance":
        order = sorted(range(1, record.levels + 1), key=lambda lv: (abs(lv - default), lv))
        by_level = [(lv, None) for lv in order]
        by_height = [(None, h) for h in order if h < record.levels]  # height K: the components, as level 1
        seeds = [s for pair in zip_longest(by_level, by_height) for s in pair if s is not None]
    sizes = min_size_candidates([i if off is None else np.where(off, 0, i) for i, off in zip(instances, unscored,
                                                                                              strict=True)])
    tried: list[Candidate] = []
    for level, height in seeds:
        if deadline is not None and tried and clock() > deadline:
            break
        base = rule if level is None and height is None else distance_rule(
            record.levels, record.bin, level or 0, fill_holes=rule.fill_holes, seed_height=height or 0)
        objects = [label_objects(m, base, num_classes)[0] for m in class_maps]
        areas = [np.bincount(ids.ravel()) for ids in objects]
        tried += [Candidate(level, size, *_score(instances, objects, areas, size, unscored), seed_height=height)
                  for size in sizes]
    first = next(c for c in tried if (c.seed_level, c.seed_height) == seeds[0] and c.min_size == 0)
    best = max(tried, key=lambda c: (c.ap50, c.ap75, -c.min_size, c.seed_height is None,
                                     -abs((c.seed_level or c.seed_height or 0) - default)))
    return ObjectTuning(min_size=best.min_size, seed_level=best.seed_level, seed_height=best.seed_height,
                        ap50=best.ap50, ap75=best.ap75, default_ap50=first.ap50, images=len(class_maps)), tried


def choose_post_processing(predict: Callable[[str | None], Sequence[np.ndarray]], instances: Sequence[np.ndarray],
                           record: InstanceRecord, rule: ObjectRule, num_classes: int, *,
                           deadline: float | None = None, clock: Callable[[], float] = time.perf_counter,
                           unscored: Sequence[np.ndarray | None] | None = None) -> ObjectTuning:
    """:func:`tune_post_processing` on the class maps ``predict(tta)`` gives for each of :data:`TTA_CANDIDATES`
    (no TTA first; the others while ``clock()`` is before ``deadline``), and the best of them: higher AP@0.5,
    then AP@0.75; a tie keeps the cheaper (fewer views). Its ``default_ap50`` is that of the untuned defaults
    without TTA. ``unscored``: as :func:`tune_post_processing`'s."""
    best: ObjectTuning | None = None
    default_ap50 = None
    for tta in TTA_CANDIDATES:
        if best is not None and deadline is not None and clock() > deadline:
            break
        tuned, _ = tune_post_processing(predict(tta), instances, record, rule, num_classes, deadline=deadline,
                                        clock=clock, unscored=unscored)
        if best is None:
            default_ap50 = tuned.default_ap50
        if best is None or (tuned.ap50 or 0.0, tuned.ap75 or 0.0) > (best.ap50 or 0.0, best.ap75 or 0.0):
            best = replace(tuned, tta=tta)
    assert best is not None
    return replace(best, default_ap50=default_ap50)
