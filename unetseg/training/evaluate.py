"""``unetseg evaluate``: score a checkpoint on a config's validation split or on image/mask folders.

Prediction is overlap-tile inference on whole images (:func:`unetseg.inference.predict_tiled`), so
the scores are those a user of the checkpoint gets; counts are accumulated over all images before
IoU/Dice are computed.
"""
from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..data.classes import ClassTable
from ..errors import UnetsegError
from ..inference import predict_tiled
from ..metrics import ConfusionMatrix
from ..models import load_model
from ..models.base import SegmentationModel


def evaluate_images(
    model: SegmentationModel,
    items: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    ignore_index: int | None = None,
    tile_size: int | str = "auto",
    amp: str | bool = "auto",
    names: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict each ``(image HxW[xC], mask HxW int)`` pair and return ConfusionMatrix.compute() scores.

    ``names`` (one per item) name the offending image in errors (e.g. a mask label >= num_classes).
    """
    cm = ConfusionMatrix(model.num_classes, ignore_index)
    for i, (image, mask) in enumerate(tqdm(items, desc="evaluate", disable=not progress, leave=False)):
        label = names[i] if names else f"image {i}"
        if np.asarray(image).shape[:2] != np.asarray(mask).shape:
            raise UnetsegError(f"{label}: image {np.asarray(image).shape[:2]} and mask {np.asarray(mask).shape} "
                               "differ in size")
        pred = predict_tiled(model, image, tile_size=tile_size, amp=amp)
        try:
            cm.update(pred, np.asarray(mask).astype(np.int64))
        except ValueError as err:
            raise UnetsegError(f"{label}: {err} (the model has {model.num_classes} classes"
                               f"{'' if ignore_index is None else f', ignore label {ignore_index}'})") from None
    return cm.compute()


def format_scores(scores: dict[str, Any], class_names: Sequence[str]) -> str:
    """A plain-text table: per-class IoU and Dice, then mIoU, mean Dice and pixel accuracy."""
    width = max([len(n) for n in class_names] + [5])
    lines = [f"{'class':<{width}}  {'IoU':>7}  {'Dice':>7}"]
    for name, iou, dice in zip(class_names, scores["iou"], scores["dice"]):
        fmt = lambda v: "    n/a" if math.isnan(v) else f"{v:7.4f}"  # noqa: E731
        lines.append(f"{name:<{width}}  {fmt(iou)}  {fmt(dice)}")
    lines.append(f"mIoU {scores['miou']:.4f}   mean Dice {scores['mdice']:.4f}   "
                 f"pixel accuracy {scores['accuracy']:.4f}   ({scores['pixels']} labelled pixels)")
    return "\n".join(lines)


def _config_items(config_path: str) -> tuple[list, list[str], int | None]:
    from ..config import load_config
    from ..data.dataset import load_splits

    cfg = load_config(config_path, [])
    _, val = load_splits(cfg.data)
    if not len(val):
        raise UnetsegError(f"{config_path}: the config has no validation images")
    names = [f"{config_path} validation image {i}" for i in range(len(val))]
    return list(zip(val.images, val.masks)), names, cfg.data.ignore_index


def _folder_items(images: str, masks: str, model: SegmentationModel, ignore_index: int | None):
    from ..data.folder import load_folder

    names = getattr(model, "class_names", None) or ClassTable.default(model.num_classes).names
    colors = getattr(model, "class_colors", None) or ClassTable.default(model.num_classes).colors
    table = ClassTable(tuple(names), tuple(tuple(c) for c in colors))
    items, _ = load_folder(images, masks, classes=table, ignore_index=ignore_index)
    return [(it.image, it.mask) for it in items], [str(it.mask_path) for it in items]


def evaluate_command(args: argparse.Namespace) -> int:
    """``unetseg evaluate --checkpoint CKPT (--config CONFIG | --images DIR --masks DIR) [--tile-size N]``."""
    if args.images and not args.masks:
        raise UnetsegError("--images needs --masks (a folder of masks paired by file stem)")
    if args.masks and not args.images:
        raise UnetsegError("--masks needs --images")
    model = load_model(args.checkpoint)
    tile: int | str = args.tile_size
    if tile != "auto":
        try:
            tile = int(tile)
        except ValueError:
            raise UnetsegError(f"--tile-size {tile!r}: expected an integer or 'auto'") from None
    meta_ignore = model.meta.get("ignore_index") if getattr(model, "meta", None) else None
    if args.config:
        items, names, ignore_index = _config_items(args.config)
        source = f"validation split of {args.config}"
    else:
        ignore_index = meta_ignore
        items, names = _folder_items(args.images, args.masks, model, ignore_index)
        source = f"{len(items)} image(s) in {os.fspath(args.images)}"
    scores = evaluate_images(model, items, ignore_index=ignore_index, tile_size=tile, names=names)
    class_names = model.class_names or [f"class{i}" for i in range(model.num_classes)]
    print(f"{args.checkpoint} on {source}:")
    print(format_scores(scores, class_names))
    return 0
