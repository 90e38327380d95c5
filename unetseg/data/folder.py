"""Folder datasets: ``images/`` and ``masks/`` paired by file stem.

Images: any format :func:`unetseg.io.read_image` reads (PNG, JPEG, TIFF, BMP, WebP, ...), uint8, uint16 or
float, gray, RGB(A) or multi-band. Masks are
either class-index images (``mask_mode="index"``: pixel value = class id) or colour images
(``mask_mode="color"``: each RGB colour is looked up in a class table; palette PNGs are expanded
to colours by OpenCV and so also belong here). An optional ignore label (e.g. 255) passes through.

Every problem with the user's files raises :class:`~unetseg.errors.UnetsegError` with one line
that names the file.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnetsegError
from ..io.images import IMAGE_SUFFIXES, file_nodata, is_image_file, read_image, read_labels
from .classes import ClassTable
from .folds import fold_assignment, fold_mode
from .instances import InstanceLayout, check_instances
from .labels import label_dtype
from .masks import colors_to_index, read_mask, read_mask_counted
from .nodata import check_has_valid, resolve_nodata, valid_mask
from .regions import region_split
from .samples import SampleSplit

__all__ = [
    "FolderItem",
    "colors_to_index",
    "find_pairs",
    "folder_splits",
    "load_folder",
    "read_mask",
    "split_items",
]

_SHOW = 5  # how many offending stems an error message lists


@dataclass
class FolderItem:
    """One image/mask pair: ``image`` HxW or HxWxC (uint8/uint16/float32), ``mask`` HxW integer; ``valid``
    HxW bool (True = the image pixel holds data) or None when every pixel does."""

    stem: str
    image: np.ndarray
    mask: np.ndarray
    image_path: Path
    mask_path: Path
    valid: np.ndarray | None = None
    instances: np.ndarray | None = None  # HxW object ids (instance masks only)


def _listing(stems: Sequence[str]) -> str:
    shown = ", ".join(sorted(stems)[:_SHOW])
    return shown + (f" (+{len(stems) - _SHOW} more)" if len(stems) > _SHOW else "")


LOSSY_SUFFIXES = (".jpg", ".jpeg")  # masks in these formats do not keep their values
# what tools and datasets append to an image's name for its mask (cellpose saves <name>_cp_masks.png)
MASK_SUFFIXES = ("_mask", "_masks", "-mask", "_label", "_labels", "-label", "_seg", "_gt", "_cp_masks", "_annotation")


def _suffixed_masks(images: dict[str, Path], masks: dict[str, Path]) -> dict[str, Path]:
    """``masks`` by image stem: as they are where every image has a mask of its own stem, else with the one
    suffix of :data:`MASK_SUFFIXES` that every mask's stem ends with, where that pairs every image (a partial
    match is left to the unpaired-files error, which lists the stems)."""
    if set(masks) == set(images):
        return masks
    for suffix in MASK_SUFFIXES:
        if all(stem.lower().endswith(suffix) and len(stem) > len(suffix) for stem in masks):
            stripped = {stem[: -len(suffix)]: path for stem, path in masks.items()}
            if set(stripped) == set(images):
                return stripped
    return masks


def _index_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise UnetsegError(f"{what} folder {folder} does not exist or is not a folder")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not is_image_file(path):
            continue
        if path.stem in files:
            raise UnetsegError(f"{what} folder {folder} holds two files with stem {path.stem!r}: "
                               f"{files[path.stem].name} and {path.name}")
        files[path.stem] = path
    if not files:
        raise UnetsegError(f"{what} folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def find_pairs(images_dir: str | os.PathLike, masks_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """``(stem, image_path, mask_path)`` for every stem in both folders, sorted by stem. Masks named as their
    images (``a.tif`` / ``a.png``), or all with one of the common suffixes (:data:`MASK_SUFFIXES`: ``a_mask.png``,
    cellpose's ``a_cp_masks.png``, ...).

    Raises UnetsegError when a folder is missing or empty, a folder holds two files with one stem,
    or some image has no mask (or some mask no image); the message lists a few such stems.
    """
    images = _index_files(Path(images_dir), "images")
    masks = _suffixed_masks(images, _index_files(Path(masks_dir), "masks"))
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if no_mask or no_image:
        parts = []
        if no_mask:
            parts.append(f"{len(no_mask)} image(s) without a mask in {masks_dir}: {_listing(no_mask)}")
        if no_image:
            parts.append(f"{len(no_image)} mask(s) without an image in {images_dir}: {_listing(no_image)}")
        raise UnetsegError("unpaired files: " + "; ".join(parts))
    lossy = [path for path in masks.values() if path.suffix.lower() in LOSSY_SUFFIXES]
    if lossy:
        raise UnetsegError(f"{lossy[0]}: a JPEG mask: its lossy compression turns every class edge into a ramp of "
                           f"other values (new classes); save masks as PNG or TIFF ({len(lossy)} JPEG mask(s) in "
                           f"{masks_dir})")
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


DEFAULT_FILL = 255  # label of nodata pixels when no ignore_index is configured


@dataclass(frozen=True)
class PixelRules:
    """How mask values and invalid pixels become labels (the ``data:`` keys of the same names).

    ``nodata``: image nodata setting ("auto": each TIFF's GDAL_NODATA tag; a number; None: only NaN/Inf);
    ``nodata_rule``: "any" | "all" bands; ``mask_nodata``: mask value to ignore (default: the mask's tag);
    ``class_values``: mask values of classes 0..K-1 (None: the value is the id).
    """

    nodata: str | float | None = "auto"
    nodata_rule: str = "any"
    mask_nodata: float | None = None
    class_values: tuple[float, ...] | None = None


@dataclass(frozen=True)
class InstanceMasks:
    """Masks are instance label images: their targets' ``layout`` and each object's class per image stem
    (``classes[stem]`` or ``classes[None]``: {id: class id}; default the first object class)."""

    layout: InstanceLayout
    classes: dict[str | None, dict[int, int]] | None = None

    def read(self, path: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
        """(targets HxW uint8, instances HxW int64) of the mask file ``path``."""
        instances = check_instances(read_labels(path), path)
        lut = None if self.classes is None else {**self.classes.get(None, {}), **self.classes.get(stem, {})}
        return self.layout.targets(instances, lut), instances


def _load_item(stem: str, image_path: Path, mask_path: Path, mask_kw: dict, rules: PixelRules,
               fill: int, instance_masks: InstanceMasks | None = None) -> tuple[FolderItem, int]:
    """One pair read and checked; nodata mask pixels and invalid image pixels labelled ``fill``.
    Returns the item and how many pixels got ``fill``."""
    image = read_image(image_path)
    instances = None
    if instance_masks is not None:
        (mask, instances), filled = instance_masks.read(mask_path, stem), 0
    else:
        mask, filled = read_mask_counted(mask_path, class_values=rules.class_values, nodata=rules.mask_nodata,
                                         nodata_label=fill, **mask_kw)
    if image.shape[:2] != mask.shape:
        raise UnetsegError(f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from "
                           f"image {image_path.name} size {image.shape[1]}x{image.shape[0]}")
    valid = valid_mask(image, resolve_nodata(rules.nodata, file_nodata(image_path)), rules.nodata_rule)
    check_has_valid(valid, image_path)
    if valid.all():
        return FolderItem(stem, image, mask, image_path, mask_path, None, instances), filled
    mask = mask.astype(label_dtype(max(int(mask.max()), fill) + 1), copy=True)
    filled += int((~valid & (mask != fill)).sum())
    mask[~valid] = fill
    return FolderItem(stem, image, mask, image_path, mask_path, valid, instances), filled


def load_folder(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike,
    *,
    classes: ClassTable | None = None,
    mask_mode: str = "index",
    ignore_index: int | None = None,
    ignore_color: Sequence[int] | None = None,
    rules: PixelRules = PixelRules(),
    instance_masks: InstanceMasks | None = None,
) -> tuple[list[FolderItem], ClassTable, int | None]:
    """Read every image/mask pair of two folders (paired by stem) and check them.

    Args:
        images_dir, masks_dir: folders of PNG/JPEG/TIFF files.
        classes: class table. Required for ``mask_mode="color"``. For index masks it fixes
            ``num_classes`` (else ``len(class_values)``, or ``max label + 1`` at least 2, with default names).
        mask_mode: ``"index"`` (pixel = class id, or mapped by ``rules.class_values``) or ``"color"``.
        ignore_index: label that marks unlabelled pixels (e.g. 255); passes through unchanged.
        ignore_color: RGB colour mapped to ``ignore_index`` in colour masks.
        rules: nodata and class-value rules (:class:`PixelRules`). Mask pixels that are the mask's nodata,
            and pixels where the image is invalid, get the ignore label (``ignore_index``, else 255).
        instance_masks: the masks are instance label images (:class:`InstanceMasks`): their targets are the
            masks, the layout's classes the class table, and each item keeps its ``instances``.

    Returns:
        ``(items, classes, ignore)``: items sorted by stem; masks HxW uint8 (uint16 beyond 255); the ignore
        label in effect (``ignore_index``, else 255 when some pixel was nodata, else None).

    Raises:
        UnetsegError: missing/empty folder, unpaired or duplicate stems, unreadable file, image and
            mask of different sizes, images with different channel counts or dtypes, a mask
            value >= num_classes that is not ``ignore_index``, a value not in ``class_values``, an unknown mask
            colour, an image without a valid pixel.
    """
    if ignore_index is not None and ignore_index < 0:
        raise UnetsegError(f"ignore_index must be >= 0, got {ignore_index}")
    if classes is not None and ignore_index is not None and ignore_index < classes.num_classes:
        raise UnetsegError(f"ignore_index {ignore_index} is a class id (there are {classes.num_classes} classes); "
                           "pick a value >= the number of classes, e.g. 255")
    fill = ignore_index if ignore_index is not None else DEFAULT_FILL
    mask_kw = dict(mask_mode=mask_mode, classes=classes, ignore_index=ignore_index, ignore_color=ignore_color)
    items: list[FolderItem] = []
    filled = 0
    if instance_masks is not None:
        classes = instance_masks.layout.classes()
    for stem, image_path, mask_path in find_pairs(images_dir, masks_dir):
        item, n = _load_item(stem, image_path, mask_path, mask_kw, rules, fill, instance_masks)
        filled += n
        if items:
            _check_like(item, items[0])
        items.append(item)
    ignore = ignore_index if ignore_index is not None or not filled else fill
    if classes is None and rules.class_values is not None:
        classes = ClassTable.default(len(rules.class_values), [f"value{_shown(v)}" for v in rules.class_values])
    if classes is None:
        top = max(int(_labels_max(it.mask, ignore)) for it in items)
        classes = ClassTable.default(max(top + 1, 2))
    if ignore is not None and ignore < classes.num_classes:
        raise UnetsegError(f"nodata pixels would get label {ignore}, which is a class id ({classes.num_classes} "
                           "classes); set data.ignore_index to a value >= the number of classes")
    for it in items:
        bad = (it.mask >= classes.num_classes)
        if ignore is not None:
            bad &= it.mask != ignore
        if bad.any():
            value = int(it.mask[bad].max())
            hint = "" if ignore is None else f" and is not the ignore label {ignore}"
            raise UnetsegError(f"{it.mask_path}: mask value {value} is >= the number of classes "
                               f"({classes.num_classes}: {', '.join(classes.names)}){hint}")
    return items, classes, ignore


def _shown(value: float) -> int | float:
    return int(value) if value == round(value) else value


def _check_like(item: FolderItem, first: FolderItem) -> None:
    if _channels(item.image) != _channels(first.image):
        raise UnetsegError(f"{item.image_path}: {_channels(item.image)} channel(s), but {first.image_path.name} has "
                           f"{_channels(first.image)}; all images must have the same channels")
    if item.image.dtype != first.image.dtype:
        raise UnetsegError(f"{item.image_path}: dtype {item.image.dtype}, but {first.image_path.name} is "
                           f"{first.image.dtype}; all images must share one dtype")


def _channels(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else image.shape[2]


def _labels_max(mask: np.ndarray, ignore_index: int | None) -> int:
    if ignore_index is None:
        return int(mask.max())
    values = mask[mask != ignore_index]
    return int(values.max()) if values.size else 0


def split_items(
    stems: Sequence[str], *, val_fraction: float = 0.2, val_files: Sequence[str] | None = None, seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Split stems into ``(train, val)``.

    ``val_files`` (stems or file names) wins over ``val_fraction``; unknown entries are an error.
    Otherwise ``round(val_fraction * n)`` stems (at least 1 when ``val_fraction > 0``) are drawn
    with ``numpy.random.default_rng(seed)``; ``val_fraction=0`` gives no validation set.
    Both lists keep the input order.
    """
    stems = list(stems)
    if val_files is not None:
        wanted = {Path(f).stem if Path(f).suffix.lower() in IMAGE_SUFFIXES else f for f in val_files}
        unknown = sorted(wanted - set(stems))
        if unknown:
            raise UnetsegError(f"val_files: {len(unknown)} name(s) match no image/mask pair: {_listing(unknown)}")
        val = [s for s in stems if s in wanted]
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise UnetsegError(f"val_fraction must be in [0, 1), got {val_fraction}")
        n_val = 0 if val_fraction == 0 else max(1, int(round(val_fraction * len(stems))))
        if n_val and n_val >= len(stems):
            raise UnetsegError(f"val_fraction={val_fraction} leaves no training images out of {len(stems)}; "
                               "add images, use data.split: regions (blocks of each image), lower val_fraction "
                               "or set val_fraction: 0")
        chosen = set(np.random.default_rng(seed).permutation(len(stems))[:n_val].tolist())
        val = [s for i, s in enumerate(stems) if i in chosen]
    train = [s for s in stems if s not in set(val)]
    if not train:
        raise UnetsegError("val_files takes every image; leave at least one for training")
    return train, val


def folder_splits(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike,
    *,
    classes: ClassTable | None = None,
    mask_mode: str = "index",
    ignore_index: int | None = None,
    ignore_color: Sequence[int] | None = None,
    val_fraction: float = 0.2,
    val_files: Sequence[str] | None = None,
    seed: int = 0,
    rules: PixelRules = PixelRules(),
    split: str = "files",
    split_grid: tuple[int, int] = (4, 4),
    gap: int = 0,
    instance_masks: InstanceMasks | None = None,
    fold: tuple[int, int] | None = None,
) -> tuple[SampleSplit, SampleSplit]:
    """:func:`load_folder` + a split -> ``(train, val)`` :class:`SampleSplit` pairs.

    ``split="files"``: whole images (:func:`split_items`); ``"regions"``: blocks of a ``split_grid`` of every
    image (:func:`unetseg.data.regions.region_split`, ``gap`` = the model's context). ``instances`` holds the
    object ids of instance masks (``instance_masks``), else None; ``info`` holds ``stems`` and ``files`` (names of the images), ``valid`` (per image HxW bool or None),
    ``ignore_index`` (the ignore label in effect), on the train split ``split`` (the split.json record) and, on the
    validation blocks of a region split with instances, ``unscored`` (:func:`unetseg.data.regions.minor_pieces`).
    ``fold``: ``(i, k)`` validates on fold i of k (:mod:`unetseg.data.folds`): file folds, or region folds under
    ``split="regions"`` or with fewer than k images.
    """
    items, table, ignore = load_folder(images_dir, masks_dir, classes=classes, mask_mode=mask_mode,
                                       ignore_index=ignore_index, ignore_color=ignore_color, rules=rules,
                                       instance_masks=instance_masks)
    with_instances = instance_masks is not None
    if fold is not None:
        split = "regions" if split == "regions" else fold_mode(len(items), fold[1])
    if split == "regions":
        if ignore is None:
            ignore = _free_fill(table)
        train, val, record = region_split(
            [it.image for it in items], [it.mask for it in items], [it.valid for it in items],
            [it.stem for it in items], grid=split_grid, val_fraction=val_fraction, seed=seed, gap=gap, ignore=ignore,
            instances=[it.instances for it in items] if with_instances else None, fold=fold)
        paths = {it.stem: str(it.image_path) for it in items}

        def made(side: dict[str, list], extra: dict[str, Any]) -> SampleSplit:
            return SampleSplit(images=side["images"], masks=side["masks"],
                               instances=side["instances"] if with_instances else None, classes=table,
                               info={"stems": side["names"], "files": [paths[n.split("@")[0]] for n in side["names"]],
                                     "valid": side["valid"], "ignore_index": ignore, **extra})

        return made(train, {"split": record}), made(val, {"unscored": val["unscored"]} if with_instances else {})
    stems = [it.stem for it in items]
    if fold is not None:
        chosen = fold_assignment(len(stems), fold[1], seed) == fold[0]
        val_stems = [s for s, c in zip(stems, chosen, strict=True) if c]
        train_stems = [s for s, c in zip(stems, chosen, strict=True) if not c]
    else:
        train_stems, val_stems = split_items(stems, val_fraction=val_fraction, val_files=val_files, seed=seed)
    by_stem = {it.stem: it for it in items}

    def make(stems: list[str], extra: dict[str, Any]) -> SampleSplit:
        chosen = [by_stem[s] for s in stems]
        return SampleSplit(
            images=[it.image for it in chosen], masks=[it.mask for it in chosen],
            instances=[it.instances for it in chosen] if with_instances else None, classes=table,
            info={"stems": stems, "files": [str(it.image_path) for it in chosen], "valid": [it.valid for it in chosen],
                  "ignore_index": ignore, **extra},
        )

    record = {"mode": "files", **({} if fold is None else {"fold": fold[0], "folds": fold[1]}),
              "train": {"files": train_stems}, "val": {"files": val_stems}}
    return make(train_stems, {"split": record}), make(val_stems, {})


def _free_fill(table: ClassTable) -> int:
    if DEFAULT_FILL < table.num_classes:
        raise UnetsegError(f"split='regions' needs an ignore label >= the number of classes ({table.num_classes}); "
                           "set data.ignore_index")
    return DEFAULT_FILL
