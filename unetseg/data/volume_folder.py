"""Folders of volumes for 3D training: ``images/`` and ``masks/`` of volume files (NIfTI ``.nii``/``.nii.gz``, TIFF
z-stacks, OME-Zarr: whatever :func:`unetseg.io.open_volume` reads) paired by stem, read and checked, and split into training and validation volumes.

Every file is read by :func:`read_training_volume`, the one place that opens a training volume. The split keeps
whole volumes as files when there are at least two (as the 2D folder split does), else cuts each volume into slabs
along z (:func:`z_slab_split`): a seeded validation slab, the training slabs below and above it with the labels
within ``gap`` slices of it (the model's context) ignored, so no training target is predicted from validation
voxels.

Every problem with the user's files is a one-line :class:`~unetseg.errors.UnetsegError` naming the file.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnetsegError
from ..io.volume import VOLUME_SUFFIXES, file_stem, is_volume_file, open_volume
from .classes import ClassTable
from .folder import DEFAULT_FILL, split_items
from .labels import label_dtype
from .samples import SampleSplit

__all__ = ["VolumeItem", "find_volume_pairs", "load_volume_folder", "read_training_volume", "volume_folder_splits",
           "z_slab_split"]

_SHOW = 5
SPACING_RTOL = 1e-3  # image and mask voxel sizes that differ by more than this are on different grids


def read_training_volume(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The volume at ``path`` as ``(array, spacing)``: array (Z, Y, X) or (Z, Y, X, C) in the file's dtype
    (float32 when the header scales values), spacing (z, y, x) voxel size (usually mm). A bad file is a one-line
    UnetsegError naming it. Reads what :func:`unetseg.io.open_volume` reads."""
    volume = open_volume(path)
    return np.asarray(volume[:, :, :]), (float(volume.spacing[0]), float(volume.spacing[1]), float(volume.spacing[2]))


@dataclass
class VolumeItem:
    """One image/mask pair: ``image`` (Z, Y, X[, C]), ``mask`` (Z, Y, X) integer class ids, ``spacing`` (z, y, x)."""

    stem: str
    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]
    image_path: Path
    mask_path: Path


def _listing(stems: Sequence[str]) -> str:
    shown = ", ".join(sorted(stems)[:_SHOW])
    return shown + (f" (+{len(stems) - _SHOW} more)" if len(stems) > _SHOW else "")


def _index(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise UnetsegError(f"{what} folder {folder} does not exist or is not a folder")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not is_volume_file(path):
            continue
        stem = file_stem(path)
        if stem in files:
            raise UnetsegError(f"{what} folder {folder} holds two volumes with stem {stem!r}: {files[stem].name} and "
                               f"{path.name}")
        files[stem] = path
    if not files:
        raise UnetsegError(f"{what} folder {folder} holds no volumes ({', '.join(VOLUME_SUFFIXES)})")
    return files


def find_volume_pairs(images_dir: str | os.PathLike, masks_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """``(stem, image_path, mask_path)`` for every stem in both folders (``a.nii.gz`` has stem ``a``), sorted by
    stem; a missing or empty folder, two files of one stem, or unpaired stems are a one-line UnetsegError."""
    images, masks = _index(Path(images_dir), "images"), _index(Path(masks_dir), "masks")
    no_mask, no_image = sorted(set(images) - set(masks)), sorted(set(masks) - set(images))
    if no_mask or no_image:
        parts = []
        if no_mask:
            parts.append(f"{len(no_mask)} volume(s) without a mask in {masks_dir}: {_listing(no_mask)}")
        if no_image:
            parts.append(f"{len(no_image)} mask(s) without a volume in {images_dir}: {_listing(no_image)}")
        raise UnetsegError("unpaired volumes: " + "; ".join(parts))
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def read_mask_volume(path: Path, image_path: Path, image_shape: tuple[int, ...],
                     image_spacing: tuple[float, float, float],
                     class_values: Sequence[float] | None = None) -> np.ndarray:
    """The label volume at ``path`` (Z, Y, X) as integer class ids, checked against its image: one channel, the
    same shape and spacing, integral values (mapped through ``class_values`` when given), none negative."""
    mask, spacing = read_training_volume(path)
    if mask.ndim != 3:
        raise UnetsegError(f"{path}: a mask volume has one channel, got shape {mask.shape} (Z, Y, X, C)")
    if mask.shape != tuple(image_shape[:3]):
        raise UnetsegError(f"{path}: not on the voxel grid of {image_path.name}: mask shape {mask.shape} (Z, Y, X), "
                           f"image {tuple(image_shape[:3])}")
    if not np.allclose(spacing, image_spacing, rtol=SPACING_RTOL):
        raise UnetsegError(f"{path}: not on the voxel grid of {image_path.name}: mask spacing {_mm(spacing)} "
                           f"(z, y, x), image {_mm(image_spacing)}")
    if np.issubdtype(mask.dtype, np.floating):
        bad = ~np.isfinite(mask) | (mask != np.round(mask))
        if bad.any():
            raise UnetsegError(f"{path}: mask value {float(mask[bad].flat[0])!r} is not an integer (masks hold class "
                               "ids; was an image put in the masks folder, or the mask resampled with interpolation?)")
    if class_values is not None:
        values = np.asarray(class_values, np.float64)
        found = np.unique(mask)
        unknown = found[~np.isin(found, values)]
        if unknown.size:
            raise UnetsegError(f"{path}: mask value {unknown[0]:g} is not one of data.class_values "
                               f"{[float(v) for v in values]}")
        lut_order = np.argsort(values)
        mask = lut_order[np.searchsorted(values[lut_order], mask)]
    low = mask.min()
    if low < 0:
        raise UnetsegError(f"{path}: mask value {low} is negative (masks hold class ids >= 0)")
    top = int(mask.max())
    return mask.astype(label_dtype(top + 1), copy=False)


def _strip(name: str) -> str:
    """A ``val_files`` entry as a stem: without its volume suffix (``.nii.gz``, ``.tif``, ...)."""
    return file_stem(name) if name.lower().endswith(VOLUME_SUFFIXES + (".ome.tif", ".ome.tiff")) else name


def _mm(spacing: Sequence[float]) -> str:
    return "x".join(f"{s:g}" for s in spacing)


def load_volume_folder(
    images_dir: str | os.PathLike, masks_dir: str | os.PathLike, *, classes: ClassTable | None = None,
    ignore_index: int | None = None, class_values: Sequence[float] | None = None,
) -> tuple[list[VolumeItem], ClassTable]:
    """Read and check every volume/mask pair of two folders (paired by stem).

    Args:
        images_dir, masks_dir: folders of ``.nii``/``.nii.gz`` files.
        classes: the class table; default ``len(class_values)`` classes, else ``max label + 1`` (at least 2).
        ignore_index: label of unlabelled voxels, passed through.
        class_values: mask values of classes 0..K-1 (default: the value is the class id).

    Returns:
        ``(items, classes)``: items sorted by stem.

    Raises:
        UnetsegError: missing/empty folder, unpaired or duplicate stems, unreadable file, image and mask of
            different shapes or spacings, a mask with non-integer values, images with different channel counts or
            dtypes, a mask value >= the number of classes that is not ``ignore_index``.
    """
    items: list[VolumeItem] = []
    for stem, image_path, mask_path in find_volume_pairs(images_dir, masks_dir):
        image, spacing = read_training_volume(image_path)
        mask = read_mask_volume(mask_path, image_path, image.shape, spacing, class_values)
        item = VolumeItem(stem, image, mask, spacing, image_path, mask_path)
        if items:
            _check_like(item, items[0])
        items.append(item)
    if classes is None:
        if class_values is not None:
            classes = ClassTable.default(len(class_values))
        else:
            top = max(int(_labels_max(it.mask, ignore_index)) for it in items)
            classes = ClassTable.default(max(top + 1, 2))
    for it in items:
        bad = it.mask >= classes.num_classes
        if ignore_index is not None:
            bad &= it.mask != ignore_index
        if bad.any():
            hint = "" if ignore_index is None else f" and is not the ignore label {ignore_index}"
            raise UnetsegError(f"{it.mask_path}: mask value {int(it.mask[bad].max())} is >= the number of classes "
                               f"({classes.num_classes}: {', '.join(classes.names)}){hint}")
    return items, classes


def _check_like(item: VolumeItem, first: VolumeItem) -> None:
    channels = 1 if item.image.ndim == 3 else item.image.shape[3]
    first_channels = 1 if first.image.ndim == 3 else first.image.shape[3]
    if channels != first_channels:
        raise UnetsegError(f"{item.image_path}: {channels} channel(s), but {first.image_path.name} has "
                           f"{first_channels}; all volumes must have the same channels")
    if item.image.dtype != first.image.dtype:
        raise UnetsegError(f"{item.image_path}: dtype {item.image.dtype}, but {first.image_path.name} is "
                           f"{first.image.dtype}; all volumes must share one dtype")


def _labels_max(mask: np.ndarray, ignore_index: int | None) -> int:
    values = mask if ignore_index is None else mask[mask != ignore_index]
    return int(values.max()) if values.size else 0


def z_slab_split(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray], names: Sequence[str], *, val_fraction: float,
    seed: int, gap: int, ignore: int,
) -> tuple[dict[str, list], dict[str, list], dict[str, Any]]:
    """:func:`slab_split` with the widest gap up to ``gap`` (the model's context) that leaves labelled training
    slices: volumes too thin for the whole context (a small painted volume) still split, and the record says so
    (``gap`` the slices kept, ``context`` the model's; training reports a warning). A volume too thin for even a
    gap of 0 is a one-line UnetsegError."""
    for tried in sorted({gap, 3 * gap // 4, gap // 2, gap // 4, gap // 8, 0}, reverse=True):
        try:
            train, val, record = slab_split(images, masks, names, val_fraction=val_fraction, seed=seed, gap=tried,
                                            ignore=ignore)
        except _TooThin:
            continue
        return train, val, {**record, "context": gap}
    raise UnetsegError("the volumes are too thin along z for a validation slab and labelled slices to train on; "
                       "lower data.val_fraction, add volumes or label more slices")


class _TooThin(Exception):
    pass


def slab_split(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray], names: Sequence[str], *, val_fraction: float,
    seed: int, gap: int, ignore: int,
) -> tuple[dict[str, list], dict[str, list], dict[str, Any]]:
    """Split each (Z, Y, X[, C]) volume along z: a validation slab of ``round(val_fraction * Z)`` slices (>= 1) at
    a seeded position (among those where both the slab and the slices left to train on hold labelled voxels, when
    any do: a volume labelled on a few slices validates on some of them), and the training slabs below and above
    it, whose labels within ``gap`` slices of the validation slab are set to ``ignore`` (a training slab left
    without a label is dropped).

    Returns ``(train, val, record)``: ``{"images", "masks", "names"}`` lists per side (names ``stem@z0-z1``) and
    the split.json record (``mode: "z-slabs"``, the slabs of each side).
    """
    rng = np.random.default_rng(seed)
    train: dict[str, list] = {"images": [], "masks": [], "names": []}
    val: dict[str, list] = {"images": [], "masks": [], "names": []}
    record: dict[str, Any] = {"mode": "z-slabs", "gap": gap, "train": {"files": [], "slabs": []},
                              "val": {"files": [], "slabs": []}}
    for image, mask, name in zip(images, masks, names, strict=True):
        depth = mask.shape[0]
        n_val = 0 if val_fraction == 0 else max(1, int(round(val_fraction * depth)))
        if n_val >= depth:
            raise UnetsegError(f"{name}: val_fraction={val_fraction} takes all {depth} slices of the volume for "
                               "validation; lower data.val_fraction or add volumes")
        v0 = _val_slab_start(mask, n_val, gap, ignore, rng) if n_val else depth
        if n_val:
            val["images"].append(image[v0 : v0 + n_val])
            val["masks"].append(mask[v0 : v0 + n_val])
            val["names"].append(f"{name}@z{v0}-{v0 + n_val}")
            record["val"]["slabs"].append({"file": name, "z": [v0, v0 + n_val]})
            record["val"]["files"].append(name)
        kept = 0
        for z0, z1 in ((0, v0), (v0 + n_val, depth)):
            if z1 <= z0:
                continue
            labels = mask[z0:z1].astype(label_dtype(max(int(mask.max()), ignore) + 1), copy=True)
            if n_val and z1 == v0:
                labels[max(z1 - gap, 0) :] = ignore
            elif n_val:
                labels[: gap] = ignore
            if (labels == ignore).all():
                continue
            train["images"].append(image[z0:z1])
            train["masks"].append(labels)
            train["names"].append(f"{name}@z{z0}-{z1}")
            record["train"]["slabs"].append({"file": name, "z": [z0, z1]})
            kept += 1
        if kept:
            record["train"]["files"].append(name)
    if not train["images"]:
        raise _TooThin
    return train, val, record


def _val_slab_start(mask: np.ndarray, n_val: int, gap: int, ignore: int, rng: np.random.Generator) -> int:
    """A seeded first slice of the validation slab: drawn among the starts whose slab and whose training slices
    (beyond ``gap`` of the slab) both hold a voxel not labelled ``ignore``; among all starts when none does."""
    depth = mask.shape[0]
    per_slice = (mask != ignore).reshape(depth, -1).any(1)
    before = np.concatenate([[0], np.cumsum(per_slice)])  # labelled slices in [0, z): before[z]

    def labelled(z0: int, z1: int) -> bool:
        return before[min(max(z1, 0), depth)] > before[min(max(z0, 0), depth)]

    starts = range(depth - n_val + 1)
    good = [v for v in starts if labelled(v, v + n_val)
            and (labelled(0, v - gap) or labelled(v + n_val + gap, depth))]
    chosen = good or list(starts)
    return int(chosen[int(rng.integers(0, len(chosen)))])


def volume_folder_splits(
    images_dir: str | os.PathLike, masks_dir: str | os.PathLike, *, classes: ClassTable | None = None,
    ignore_index: int | None = None, class_values: Sequence[float] | None = None, val_fraction: float = 0.2,
    val_files: Sequence[str] | None = None, seed: int = 0, split: str = "files", gap: int = 0,
) -> tuple[SampleSplit, SampleSplit]:
    """:func:`load_volume_folder` + a split -> ``(train, val)`` :class:`SampleSplit` pairs of volumes.

    Whole volumes (:func:`unetseg.data.folder.split_items`) when ``split="files"`` and there are at least two
    volumes (or ``val_files`` names some); else (one volume, or ``split="regions"``) slabs along z
    (:func:`z_slab_split`, ``gap`` = the model's context in slices; the ignore label is ``ignore_index``, else
    255). ``info`` holds ``stems``, ``files``, ``spacing`` (the per-axis median of the volumes' spacings),
    ``spacings`` (each volume's), ``ignore_index`` (the label in effect) and, on the train split, ``split``
    (the split.json record).
    """
    items, table = load_volume_folder(images_dir, masks_dir, classes=classes, ignore_index=ignore_index,
                                      class_values=class_values)
    spacing = tuple(float(v) for v in np.median([it.spacing for it in items], axis=0))
    common = {"spacing": spacing, "spacings": {it.stem: list(it.spacing) for it in items}}
    by_stem = {it.stem: it for it in items}
    if split == "files" and (len(items) >= 2 or val_files is not None):
        train_stems, val_stems = split_items([it.stem for it in items], val_fraction=val_fraction,
                                             val_files=None if val_files is None else [_strip(f) for f in val_files],
                                             seed=seed)

        def made(stems: list[str], extra: dict[str, Any]) -> SampleSplit:
            chosen = [by_stem[s] for s in stems]
            return SampleSplit(images=[it.image for it in chosen], masks=[it.mask for it in chosen], instances=None,
                               classes=table, info={"stems": stems, "files": [str(it.image_path) for it in chosen],
                                                    "ignore_index": ignore_index, **common, **extra})

        record = {"mode": "files", "train": {"files": train_stems}, "val": {"files": val_stems}}
        return made(train_stems, {"split": record}), made(val_stems, {})
    ignore = ignore_index if ignore_index is not None else DEFAULT_FILL
    if ignore < table.num_classes:
        raise UnetsegError(f"a z-slab split needs an ignore label >= the number of classes ({table.num_classes}); "
                           "set data.ignore_index")
    train, val, record = z_slab_split([it.image for it in items], [it.mask for it in items],
                                      [it.stem for it in items], val_fraction=val_fraction, seed=seed, gap=gap,
                                      ignore=ignore)
    paths = {it.stem: str(it.image_path) for it in items}

    def side(part: dict[str, list], extra: dict[str, Any]) -> SampleSplit:
        return SampleSplit(images=part["images"], masks=part["masks"], instances=None, classes=table,
                           info={"stems": part["names"], "files": [paths[n.split("@")[0]] for n in part["names"]],
                                 "ignore_index": ignore, **common, **extra})

    return side(train, {"split": record}), side(val, {})
