"""The datasets a run trains and validates on, built from its ``data:`` config section.

A built-in sample or a folder is split into training and validation images (:func:`load_splits`), the
loss weights of the training images are made (:func:`training_weights`: the paper's border weight map
and/or class weights), and the training images become random, augmented patches (:func:`build_datasets`).
"""
from __future__ import annotations

import numpy as np

from ..config.data import DataConfig
from ..data.classes import ClassTable
from ..data.dataset import TrainPatches, ValImages, component_instances
from ..data.folder import folder_splits
from ..data.normalization import Normalization
from ..data.samples import SampleSplit, load_sample
from ..data.weightmap import border_weight_map, class_balance_weights
from ..errors import UnetsegError

__all__ = ["build_datasets", "load_splits", "training_weights"]


def load_splits(cfg: DataConfig) -> tuple[SampleSplit, SampleSplit]:
    """The ``(train, val)`` splits that ``cfg`` names (a built-in sample or a folder)."""
    if cfg.source == "folder":
        return folder_splits(cfg.images, cfg.masks, classes=cfg.configured_classes(), mask_mode=cfg.mask_mode,
                             ignore_index=cfg.ignore_index, ignore_color=cfg.ignore_color,
                             val_fraction=cfg.val_fraction, val_files=cfg.val_files, seed=cfg.split_seed)
    try:
        train = load_sample(cfg.sample, "train", seed=cfg.split_seed, **cfg.sample_options)
        val = load_sample(cfg.sample, "val", seed=cfg.split_seed, **cfg.sample_options)
    except ValueError as exc:
        raise UnetsegError(f"data.sample_options: {exc}") from None
    if cfg.ignore_index is not None and cfg.ignore_index < train.classes.num_classes:
        raise UnetsegError(f"data.ignore_index={cfg.ignore_index} is a class of sample {cfg.sample!r} "
                           f"({', '.join(train.classes.names)})")
    return train, val


def training_weights(split: SampleSplit, cfg: DataConfig) -> list[np.ndarray] | None:
    """Loss weights per training image (HxW float32), or None when every weight would be 1.

    Border weight map (:func:`border_weight_map`) where ``weight_map.enabled`` and the split has
    instances (or ``from_components`` makes them from the masks); else the class weights alone
    when ``class_weights`` is set; else None. Pixels with the ignore label get 0.
    """
    wm = cfg.weight_map
    num_classes = split.classes.num_classes
    table: np.ndarray | None = None
    if wm.class_weights == "balanced":
        table = class_balance_weights(split.masks, num_classes, cfg.ignore_index)
    elif wm.class_weights is not None:
        if len(wm.class_weights) != num_classes:
            raise UnetsegError(f"data.weight_map.class_weights has {len(wm.class_weights)} entries, but the data "
                               f"has {num_classes} classes ({', '.join(split.classes.names)})")
        table = np.asarray(wm.class_weights, np.float32)
    instances = split.instances
    if wm.enabled and instances is None and wm.from_components:
        instances = [component_instances(mask, cfg.ignore_index) for mask in split.masks]
    if wm.enabled and instances is not None:
        return [border_weight_map(inst, mask, w0=wm.w0, sigma=wm.sigma, class_weights=table,
                                  ignore_index=cfg.ignore_index)
                for inst, mask in zip(instances, split.masks)]
    if table is None:
        return None
    weights = []
    for mask in split.masks:
        labelled = mask if cfg.ignore_index is None else np.where(mask == cfg.ignore_index, 0, mask)
        w = table[labelled]
        if cfg.ignore_index is not None:
            w[mask == cfg.ignore_index] = 0.0
        weights.append(w.astype(np.float32, copy=False))
    return weights


def build_datasets(
    cfg: DataConfig, *, input_size: int, margin: int, seed: int = 0
) -> tuple[TrainPatches, ValImages, ClassTable, Normalization]:
    """Everything training needs from the data config.

    Args:
        cfg: the ``data:`` section.
        input_size: network input side for training crops, normally
            ``model.valid_input_size(cfg.patch_size)``.
        margin: ``model.margin`` (92 for the paper's U-Net, 0 for "same" padding).
        seed: base seed of crops and augmentation (the split uses ``cfg.split_seed``).

    Returns:
        ``(train, val, classes, normalization)``: :class:`TrainPatches`; :class:`ValImages` (whole
        images, un-normalised); the class table; per-channel mean/std of the training images.
    """
    train, val = load_splits(cfg)
    normalization = Normalization.from_images(train.images)
    weights = training_weights(train, cfg)
    patches = TrainPatches(
        train.images, train.masks, weights, input_size=input_size, margin=margin, normalization=normalization,
        augment=cfg.augment, patches_per_epoch=cfg.patches_per_epoch, ignore_index=cfg.ignore_index, seed=seed,
    )
    names = list(val.info.get("stems", [])) or [f"{cfg.sample or 'val'}-{i}" for i in range(len(val))]
    return patches, ValImages(list(val.images), list(val.masks), names), train.classes, normalization
