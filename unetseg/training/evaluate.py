"""Scoring a model on whole images, the one loop behind validation during training and ``unetseg evaluate``.

Prediction is overlap-tile inference on whole images (:func:`unetseg.predict_tiled`), so the scores are those
a user of the checkpoint gets; counts are accumulated over all images (and all ranks) before IoU/Dice are
computed.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.normalization import Normalization
from ..errors import UnetsegError
from ..metrics import ConfusionMatrix, ObjectScores
from ..models.checkpoint import unwrap
from ..tiling import predict_tiled
from .distributed import DistContext


def score_images(
    model: nn.Module,
    items: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    num_classes: int,
    ignore_index: int | None = None,
    tile_size: int | str = "auto",
    halo: int | str = "auto",
    amp: str | bool = "auto",
    engine: str = "auto",
    normalization: Normalization | None = None,
    device: torch.device | None = None,
    names: Sequence[str] | None = None,
    ctx: DistContext | None = None,
    progress: bool = False,
    instances: Sequence[np.ndarray] | None = None,
    objects_of: Callable[[np.ndarray], np.ndarray] | None = None,
    unscored: Sequence[np.ndarray | None] | None = None,
    per_item: bool = False,
    with_predictions: bool = False,
) -> dict[str, Any]:
    """Predict each ``(image HxW[xC], mask HxW int)`` pair (for a 3D model ``(volume DxHxW[xC], mask DxHxW)``) and
    return :meth:`ConfusionMatrix.compute` scores.

    Under DistributedDataParallel (``ctx``) each rank predicts ``items[rank::world]`` and the counts are summed
    over ranks. ``names`` (one per item) name the offending image in errors (e.g. a mask label >= num_classes).
    With the items' true ``instances`` and ``objects_of`` (a class map -> its object ids, e.g.
    :func:`unetseg.objects.separate.label_objects` under the model's rule), the scores also hold ``objects``:
    :meth:`unetseg.metrics.ObjectScores.compute` of the predicted objects (one process only; ``unscored``: each
    item's truth pixels not scored, see :meth:`~unetseg.metrics.ObjectScores.update`). With ``per_item``,
    ``scores["items"]`` holds each item's own scores too (one process only); with ``with_predictions``,
    ``scores["predictions"]`` the predicted class maps of this rank's items, in order.
    """
    net = unwrap(model)
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    cm = ConfusionMatrix(num_classes, ignore_index, device=device or "cpu")
    found = ObjectScores() if instances is not None and objects_of is not None else None
    chosen = list(range(len(items)))[rank::world]
    items_scores: list[dict[str, Any]] = []
    predictions: list[np.ndarray] = []
    for i in tqdm(chosen, desc="evaluate", disable=not progress, leave=False):
        image, mask = items[i]
        label = names[i] if names else f"image {i}"
        mask = np.asarray(mask)
        if np.asarray(image).shape[: mask.ndim] != mask.shape:
            raise UnetsegError(f"{label}: image {np.asarray(image).shape[: mask.ndim]} and mask {mask.shape} differ "
                               "in size")
        pred = predict_tiled(net, image, tile_size=tile_size, halo=halo, normalization=normalization, amp=amp,
                             device=device, engine=engine)
        if found is not None:
            found.update(instances[i], objects_of(pred), None if unscored is None else unscored[i])
        if with_predictions:
            predictions.append(np.asarray(pred))
        try:
            pred_t, mask_t = torch.from_numpy(np.asarray(pred).astype(np.int64)), torch.from_numpy(mask.astype(np.int64))
            cm.update(pred_t, mask_t)
            if per_item:
                one = ConfusionMatrix(num_classes, ignore_index, device=device or "cpu")
                one.update(pred_t, mask_t)
                items_scores.append(one.compute())
        except ValueError as err:
            raise UnetsegError(f"{label}: {err} (the model has {num_classes} classes"
                               f"{'' if ignore_index is None else f', ignore label {ignore_index}'})") from None
    if world > 1:
        cm.reduce_()
    scores = cm.compute()
    if found is not None:
        scores["objects"] = found.compute()
    if per_item:
        scores["items"] = items_scores
    if with_predictions:
        scores["predictions"] = predictions
    return scores


def mean_over_items(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The mean of per-item :meth:`ConfusionMatrix.compute` scores (e.g. ``score_images(..., per_item=True)["items"]``,
    one per volume): per-class IoU and Dice averaged over the items where the class occurs (in the truth or the
    prediction; NaN where it occurs in none), their class means, the mean accuracy and the summed ``pixels``."""
    if not items:
        raise ValueError("no items to average")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a class absent from every item: NaN, as compute() gives
        iou = np.nanmean(np.asarray([s["iou"] for s in items], np.float64), axis=0)
        dice = np.nanmean(np.asarray([s["dice"] for s in items], np.float64), axis=0)
        return {"iou": iou.tolist(), "dice": dice.tolist(), "miou": float(np.nanmean([s["miou"] for s in items])),
                "mdice": float(np.nanmean([s["mdice"] for s in items])),
                "accuracy": float(np.mean([s["accuracy"] for s in items])),
                "pixels": int(sum(int(s["pixels"]) for s in items))}
