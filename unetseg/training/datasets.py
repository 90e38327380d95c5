"""The datasets a run trains and validates on, built from its ``data:`` config section.

A built-in sample or a folder is split into training and validation images (:func:`load_splits`), the
loss weights of the training images are made (:func:`training_weights`: the paper's border weight map
and/or class weights), and the training images become random, augmented patches (:func:`build_datasets`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config.data import DataConfig
from ..data.classes import ClassTable
from ..data.dataset import TrainPatches, ValImages, component_instances
from ..data.folder import InstanceMasks, PixelRules, folder_splits
from ..data.folds import fold_assignment, fold_mode
from ..data.instances import read_instance_classes
from ..data.nodata import Nodata, fill_invalid, fill_value, resolve_nodata
from ..data.normalization import Normalization, dtype_scale
from ..data.regions import region_split
from ..data.samples import SampleSplit, load_sample
from ..data.volume_folder import volume_folder_splits
from ..data.volumes import VolumePatches, volume_bands
from ..data.weightmap import border_weight_map, class_balance_weights
from ..errors import UnetsegError
from ..io.images import file_nodata
from ..io.source import recorded_pixel_size
from ..models.meta import pixel_size_pair
from .finetune import choose_normalization

__all__ = ["build_datasets", "build_volume_datasets", "load_splits", "load_volume_splits", "training_weights"]


def load_splits(cfg: DataConfig, gap: int = 0) -> tuple[SampleSplit, SampleSplit]:
    """The ``(train, val)`` splits that ``cfg`` names (a built-in sample or a folder); ``gap``: the model's
    context, kept between training and validation regions under ``split: regions``."""
    if cfg.source == "folder":
        rules = PixelRules(cfg.nodata, cfg.nodata_rule, cfg.mask_nodata,
                           None if cfg.class_values is None else tuple(cfg.class_values))
        layout = cfg.instance_layout()
        instance_masks = None
        if layout is not None:
            per_object = None if cfg.instance_classes is None else read_instance_classes(cfg.instance_classes,
                                                                                           layout.object_names)
            instance_masks = InstanceMasks(layout, per_object)
        return folder_splits(cfg.images, cfg.masks, classes=cfg.configured_classes(), mask_mode=cfg.mask_mode,
                             ignore_index=cfg.ignore_index, ignore_color=cfg.ignore_color,
                             val_fraction=cfg.val_fraction, val_files=cfg.val_files, seed=cfg.split_seed,
                             rules=rules, split=cfg.split, split_grid=tuple(cfg.split_grid), gap=gap,
                             instance_masks=instance_masks, fold=_fold(cfg))
    try:
        train = load_sample(cfg.sample, "train", seed=cfg.split_seed, **cfg.sample_options)
        val = load_sample(cfg.sample, "val", seed=cfg.split_seed, **cfg.sample_options)
    except ValueError as exc:
        raise UnetsegError(f"data.sample_options: {exc}") from None
    if cfg.mask_mode == "instances":
        if train.instances is None:
            raise UnetsegError(f"data.mask_mode: instances needs instance masks; sample {cfg.sample!r} has none")
        layout = cfg.instance_layout(tuple(train.classes.names[1:2]))
        colors = [train.classes.colors[1]] if not cfg.classes else None
        for part in (train, val):
            part.masks = [layout.targets(inst) for inst in part.instances]
            part.classes = layout.classes(colors)
    if cfg.ignore_index is not None and cfg.ignore_index < train.classes.num_classes:
        raise UnetsegError(f"data.ignore_index={cfg.ignore_index} is a class of sample {cfg.sample!r} "
                           f"({', '.join(train.classes.names)})")
    fold = _fold(cfg)
    return (train, val) if fold is None else sample_fold(train, fold, cfg, gap)


def kept_normalization(parent: Normalization | None, data: Normalization) -> tuple[Normalization, str | None]:
    """:func:`~unetseg.training.finetune.choose_normalization` when the --init checkpoint's normalisation is of the
    data's kind (the same clipping, per-image or not), else the data's, with a warning line."""
    if parent is None:
        return data, None
    if (parent.clip is None) != (data.clip is None) or parent.per_image != data.per_image:
        return data, ("data.normalize differs in kind from the --init checkpoint's normalisation (clipped or not, "
                      "per volume or not): normalising as data.normalize says")
    return choose_normalization(parent, data)


def _fold(cfg: DataConfig) -> tuple[int, int] | None:
    return None if cfg.folds is None else (cfg.fold, cfg.folds)  # type: ignore[return-value]


def sample_fold(train: SampleSplit, fold: tuple[int, int], cfg: DataConfig, gap: int) -> tuple[SampleSplit, SampleSplit]:
    """Fold ``fold = (i, k)`` of a sample's training images: file folds when there are k of them, else region
    folds of ``split_grid`` blocks (the sample's own validation images are not used: they stay held out)."""
    n = len(train.images)
    names = [f"{cfg.sample}-{j}" for j in range(n)]
    if fold_mode(n, fold[1]) == "files":
        chosen = fold_assignment(n, fold[1], cfg.split_seed) == fold[0]

        def part(keep: np.ndarray) -> SampleSplit:
            idx = np.flatnonzero(keep)
            return SampleSplit(images=[train.images[j] for j in idx], masks=[train.masks[j] for j in idx],
                               instances=None if train.instances is None else [train.instances[j] for j in idx],
                               classes=train.classes, info={"stems": [names[j] for j in idx]})

        out, held = part(~chosen), part(chosen)
        out.info["split"] = {"mode": "files", "fold": fold[0], "folds": fold[1],
                             "train": {"files": out.info["stems"]}, "val": {"files": held.info["stems"]}}
        return out, held
    ignore = cfg.ignore_index if cfg.ignore_index is not None else 255
    if ignore < train.classes.num_classes:
        raise UnetsegError("region folds need an ignore label >= the number of classes; set data.ignore_index")
    tr, va, record = region_split(train.images, train.masks, [None] * n, names, grid=tuple(cfg.split_grid),
                                  val_fraction=0.0, seed=cfg.split_seed, gap=gap, ignore=ignore,
                                  instances=train.instances, fold=fold)

    def made(side: dict[str, list], extra: dict[str, Any]) -> SampleSplit:
        return SampleSplit(images=side["images"], masks=side["masks"],
                           instances=None if train.instances is None else side["instances"], classes=train.classes,
                           info={"stems": side["names"], "valid": side["valid"], "ignore_index": ignore, **extra})

    return made(tr, {"split": record}), made(va, {} if train.instances is None else {"unscored": va["unscored"]})


def training_weights(split: SampleSplit, cfg: DataConfig, ignore: int | None = None) -> list[np.ndarray] | None:
    """Loss weights per training image (HxW float32), or None when every weight would be 1.

    Border weight map (:func:`border_weight_map`) where ``weight_map.enabled`` and the split has
    instances (or ``from_components`` makes them from the masks); else the class weights alone
    when ``class_weights`` is set; else None. Pixels with the ignore label (``ignore``, default
    ``cfg.ignore_index``) get 0.
    """
    wm = cfg.weight_map
    ignore = cfg.ignore_index if ignore is None else ignore
    num_classes = split.classes.num_classes
    table: np.ndarray | None = None
    if wm.class_weights == "balanced":
        table = class_balance_weights(split.masks, num_classes, ignore)
    elif wm.class_weights is not None:
        if len(wm.class_weights) != num_classes:
            raise UnetsegError(f"data.weight_map.class_weights has {len(wm.class_weights)} entries, but the data "
                               f"has {num_classes} classes ({', '.join(split.classes.names)})")
        table = np.asarray(wm.class_weights, np.float32)
    instances = split.instances
    if wm.enabled and instances is None and wm.from_components:
        instances = [component_instances(mask, ignore) for mask in split.masks]
    if wm.enabled and instances is not None:
        return [border_weight_map(inst, mask, w0=wm.w0, sigma=wm.sigma, class_weights=table,
                                  ignore_index=ignore)
                for inst, mask in zip(instances, split.masks, strict=True)]
    if table is None:
        return None
    weights = []
    for mask in split.masks:
        labelled = mask if ignore is None else np.where(mask == ignore, 0, mask)
        w = table[labelled]
        if ignore is not None:
            w[mask == ignore] = 0.0
        weights.append(w.astype(np.float32, copy=False))
    return weights


@dataclass
class DataReport:
    """What the data preparation found, for the run folder: warnings (one line each), the split.json record
    and the per-band normalisation statistics."""

    warnings: list[str] = field(default_factory=list)
    split: dict[str, Any] = field(default_factory=dict)
    normalization: dict[str, Any] = field(default_factory=dict)
    nodata: Nodata = Nodata()
    files: list[str] = field(default_factory=list)  # the training images (names for messages)
    pixel_size: tuple[float, float] | None = None  # (y, x) of a training-image pixel, if known
    pixel_unit: str | None = None


def training_pixel_size(cfg: DataConfig, files: list[str], warnings: list[str]
                        ) -> tuple[tuple[float, float] | None, str | None]:
    """``data.pixel_size`` (in ``data.pixel_unit``), else what the training images' metadata records (the
    first image's; a warning when the others differ by more than 1 %), else unknown."""
    if cfg.pixel_size is not None:
        return pixel_size_pair(cfg.pixel_size), cfg.pixel_unit
    found = [size for size in map(recorded_pixel_size, files) if size is not None]
    if not found:
        return None, None
    (size, unit), others = found[0], found[1:]
    if any(u != unit or not np.allclose(s, size, rtol=0.01) for s, u in others):
        warnings.append(f"the training images record different pixel sizes; the checkpoint keeps the first one, "
                        f"{size[1]:g} {unit or ''} (set data.pixel_size to choose)")
    return size, unit


def data_warnings(split: SampleSplit, cfg: DataConfig, ignore: int | None) -> list[str]:
    """One line per: class without a training pixel; masks holding exactly the values {0, 255}."""
    counts = np.zeros(max(split.classes.num_classes, 256), np.int64)
    for mask in split.masks:
        c = np.bincount(mask.ravel(), minlength=len(counts))
        counts += c[: len(counts)]
    out = []
    if cfg.mask_mode == "index" and cfg.class_values is None and set(np.flatnonzero(counts).tolist()) == {0, 255}:
        out.append("the masks hold exactly the values 0 and 255: for a binary mask set data.class_values: [0, 255] "
                   "(else 255 is class 255, or the ignore label)")
    empty = [n for i, n in enumerate(split.classes.names) if counts[i] == 0 and i != ignore]
    if empty:
        out.append(f"class(es) with no pixel in the training set: {', '.join(empty)}")
    return out


def _clamped_size(images: list[np.ndarray], input_size: int, margin: int, fit: Callable[[int], int] | None,
                  cfg: DataConfig, warnings: list[str]) -> int:
    """``input_size``, or a smaller accepted size when the patch is larger than every training image."""
    largest = max(min(im.shape[:2]) for im in images) + 2 * margin
    if fit is None or input_size <= largest:
        return input_size
    size = fit(largest)
    if size > largest:
        size = max(fit(max(largest - (size - largest), 1)), 2 * margin + 1)
    warnings.append(f"data.patch_size={cfg.patch_size} is larger than every training image (the largest fits "
                    f"{largest - 2 * margin} px); clamped to {size}")
    return size


def _filled(images: list[np.ndarray], valid: list[np.ndarray | None], norm: Normalization) -> list[np.ndarray]:
    """Images with invalid pixels set to the per-band mean (0 once normalised)."""
    out = []
    for image, ok in zip(images, valid, strict=True):
        if ok is not None:
            scale = norm.scale if norm.scale is not None else dtype_scale(image.dtype)
            image = fill_invalid(image, ok, fill_value(np.asarray(norm.mean) * scale, image.dtype))
        out.append(image)
    return out


def build_datasets(
    cfg: DataConfig, *, input_size: int, margin: int, seed: int = 0, context: int | None = None,
    fit_size: Callable[[int], int] | None = None, keep_normalization: Normalization | None = None,
) -> tuple[TrainPatches, ValImages, ClassTable, Normalization]:
    """Everything training needs from the data config.

    Args:
        cfg: the ``data:`` section.
        input_size: network input side for training crops, normally
            ``model.valid_input_size(cfg.patch_size)``.
        margin: ``model.margin`` (92 for the paper's U-Net, 0 for "same" padding).
        seed: base seed of crops and augmentation (the split uses ``cfg.split_seed``).
        context: the model's context in pixels (default ``margin``): the gap of a region split.
        fit_size: ``model.valid_input_size``, used to clamp a patch larger than every image.
        keep_normalization: a fine-tuned checkpoint's normalisation, kept unless the data's statistics differ
            markedly (:func:`unetseg.training.finetune.choose_normalization`; a warning then).

    Returns:
        ``(train, val, classes, normalization)``: :class:`TrainPatches` (its ``ignore_index`` is the ignore
        label in effect, its ``report`` a :class:`DataReport`); :class:`ValImages` (whole images as read,
        un-normalised: prediction applies the nodata rule, their masks are ignored there); the class table;
        per-band statistics of the valid training pixels.
    """
    if cfg.normalize == "zscore":
        raise UnetsegError("data.normalize: zscore (each volume by its own statistics) applies to 3D models; 2D "
                           "models take meanstd, percentile or ct")
    train, val = load_splits(cfg, gap=margin if context is None else context)
    none = [None] * len(train.images)
    try:
        normalization = Normalization.from_images(train.images, valid=train.info.get("valid", none),
                                                  method=cfg.normalize, foreground=train.masks,
                                                  ignore_index=train.info.get("ignore_index", cfg.ignore_index))
    except ValueError as err:
        raise UnetsegError(f"data: {err}") from None
    normalization, refit = kept_normalization(keep_normalization, normalization)
    images = _filled(train.images, train.info.get("valid", none), normalization)
    ignore = train.info.get("ignore_index", cfg.ignore_index)
    files = list(train.info.get("files", []))
    nodata = Nodata(cfg.nodata, resolve_nodata(cfg.nodata, file_nodata(files[0]) if files else None), cfg.nodata_rule)
    split = train.info.get("split") or {"mode": "sample", "sample": cfg.sample, "train": {"images": len(train)},
                                        "val": {"images": len(val)}}  # built-in samples have fixed splits
    kept = keep_normalization is not None and normalization is keep_normalization
    stats = {"method": "from the --init checkpoint" if kept else cfg.normalize, **normalization.to_dict()}
    report = DataReport(data_warnings(train, cfg, ignore) + ([refit] if refit else []), split, stats, nodata, files)
    report.pixel_size, report.pixel_unit = training_pixel_size(cfg, files, report.warnings)
    input_size = _clamped_size(images, input_size, margin, fit_size, cfg, report.warnings)
    train.images = images
    weights = training_weights(train, cfg, ignore)
    patches = TrainPatches(
        images, train.masks, weights, input_size=input_size, margin=margin, normalization=normalization,
        augment=cfg.augment, patches_per_epoch=cfg.patches_per_epoch, ignore_index=ignore, seed=seed,
    )
    patches.report = report
    names = list(val.info.get("stems", [])) or [f"{cfg.sample or 'val'}-{i}" for i in range(len(val))]
    val_instances = None if val.instances is None else list(val.instances)
    return (patches, ValImages(list(val.images), list(val.masks), names, val_instances, val.info.get("unscored")),
            train.classes, normalization)


def load_volume_splits(cfg: DataConfig, gap: int = 0) -> tuple[SampleSplit, SampleSplit]:
    """The ``(train, val)`` volume splits that ``cfg`` names for a 3D model: a built-in volume sample (its fixed
    split), or a folder of NIfTI volumes (:func:`unetseg.data.volume_folder.volume_folder_splits`: whole volumes,
    else slabs along z with ``gap`` slices, the model's context, between training labels and validation).
    ``info["spacing"]`` is the (z, y, x) voxel size."""
    if cfg.source == "folder":
        if cfg.mask_mode != "index":
            raise UnetsegError(f"data.mask_mode: {cfg.mask_mode} masks are 2D only; volumes take index masks "
                               "(voxel value = class id, or data.class_values)")
        return volume_folder_splits(cfg.images, cfg.masks, classes=cfg.configured_classes(),  # type: ignore[arg-type]
                                    ignore_index=cfg.ignore_index, class_values=cfg.class_values,
                                    val_fraction=cfg.val_fraction, val_files=cfg.val_files, seed=cfg.split_seed,
                                    split=cfg.split, gap=gap)
    train, val = load_splits(cfg)
    if not train.images or train.images[0].ndim < 3 or "spacing" not in train.info:
        raise UnetsegError(f"data: a 3D model needs volumes; sample {cfg.sample!r} gives 2D images here "
                           "(sample_options: {volume: true} gives the brain as volumes)")
    return train, val


def volume_normalization(cfg: DataConfig, train: SampleSplit, ignore: int | None) -> Normalization:
    """The normalisation ``data.normalize`` asks for, from the training volumes (``ct``: their foreground voxels;
    ``zscore``: per volume)."""
    try:
        return Normalization.from_images([volume_bands(v) for v in train.images], method=cfg.normalize,
                                         foreground=train.masks,
                                         ignore_index=ignore)
    except ValueError as err:
        raise UnetsegError(f"data: {err}") from None


def build_volume_datasets(
    cfg: DataConfig, *, rules: tuple[Any, ...], seed: int = 0, keep_normalization: Normalization | None = None,
    context: int = 0,
) -> tuple[VolumePatches, ValImages, ClassTable, Normalization]:
    """:func:`build_datasets` for a 3D model: the split's (Z, Y, X[, C]) volumes (:func:`load_volume_splits`;
    ``context``: the model's context in voxels, the gap of a z-slab split) become random 3D crops
    (:class:`~unetseg.data.volumes.VolumePatches`) of ``data.patch_size`` per axis (fitted to each axis's size
    ``rules``, :attr:`unetseg.models.base.SegmentationModel.axis_rules`, and to the volumes), normalised as
    ``data.normalize`` says (:func:`volume_normalization`); validation volumes are predicted whole."""
    train, val = load_volume_splits(cfg, gap=context)
    spacing = tuple(float(s) for s in train.info["spacing"])
    ignore = train.info.get("ignore_index", cfg.ignore_index)
    normalization = volume_normalization(cfg, train, ignore)
    normalization, refit = kept_normalization(keep_normalization, normalization)
    warnings = data_warnings(train, cfg, ignore) + ([refit] if refit else [])
    record = train.info.get("split") or {}
    if record.get("mode") == "z-slabs" and record.get("gap", 0) < record.get("context", 0):
        warnings.append(f"the volume is too thin for the model's context ({record['context']} slices) between the "
                        f"validation slab and the training labels: {record['gap']} kept, so validation scores may be "
                        "optimistic")
    spacings = train.info.get("spacings", {})
    if any(not np.allclose(s, spacing, rtol=0.01) for s in spacings.values()):
        warnings.append(f"the training volumes have different voxel spacings; augmentation follows their median, "
                        f"{'x'.join(f'{v:g}' for v in spacing)} (z, y, x)")
    sides = cfg.patch_size if isinstance(cfg.patch_size, tuple) else (cfg.patch_size,) * 3
    shape = []
    for axis, rule in enumerate(rules):
        largest = max(v.shape[axis] for v in train.images) + 2 * rule.margin
        wanted = min(sides[axis], largest)
        below, above = rule.nearest_valid(wanted)
        shape.append(below if below is not None and below > 2 * rule.margin else above)
    if tuple(shape) != tuple(sides):
        warnings.append(f"3D patches of {'x'.join(map(str, shape))} voxels (data.patch_size={cfg.patch_size}, "
                        "fitted to the volumes and the model's accepted sizes per axis)")
    stats = {"method": cfg.normalize, **normalization.to_dict()}
    split = train.info.get("split") or {"mode": "sample", "sample": cfg.sample, "train": {"volumes": len(train)},
                                        "val": {"volumes": len(val)}}
    files = list(train.info.get("files", []))
    report = DataReport(warnings, split, stats, Nodata(cfg.nodata, None, cfg.nodata_rule), files)
    patches = VolumePatches(train.images, train.masks, training_weights(train, cfg, ignore),
                            input_shape=tuple(shape), margins=tuple(r.margin for r in rules),
                            normalization=normalization, spacing=spacing,
                            augment=cfg.augment, patches_per_epoch=cfg.patches_per_epoch,
                            ignore_index=ignore, seed=seed)
    patches.report = report
    names = list(val.info.get("stems", [])) or [f"{cfg.sample}-volume-{i}" for i in range(len(val))]
    val_instances = None if val.instances is None else list(val.instances)
    return patches, ValImages(list(val.images), list(val.masks), names, val_instances), train.classes, normalization
