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

import numpy as np

from ..errors import UnetsegError
from ..io.images import IMAGE_SUFFIXES, is_image_file, read_image
from ..io.labels import label_dtype
from .classes import ClassTable
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

MASK_MODES = ("index", "color")
_SHOW = 5  # how many offending stems an error message lists


@dataclass
class FolderItem:
    """One image/mask pair: ``image`` HxW or HxWxC (uint8/uint16/float32), ``mask`` HxW integer."""

    stem: str
    image: np.ndarray
    mask: np.ndarray
    image_path: Path
    mask_path: Path


def _listing(stems: Sequence[str]) -> str:
    shown = ", ".join(sorted(stems)[:_SHOW])
    return shown + (f" (+{len(stems) - _SHOW} more)" if len(stems) > _SHOW else "")


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
    """``(stem, image_path, mask_path)`` for every stem in both folders, sorted by stem.

    Raises UnetsegError when a folder is missing or empty, a folder holds two files with one stem,
    or some image has no mask (or some mask no image); the message lists a few such stems.
    """
    images = _index_files(Path(images_dir), "images")
    masks = _index_files(Path(masks_dir), "masks")
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if no_mask or no_image:
        parts = []
        if no_mask:
            parts.append(f"{len(no_mask)} image(s) without a mask in {masks_dir}: {_listing(no_mask)}")
        if no_image:
            parts.append(f"{len(no_image)} mask(s) without an image in {images_dir}: {_listing(no_image)}")
        raise UnetsegError("unpaired files: " + "; ".join(parts))
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def colors_to_index(
    rgb: np.ndarray, classes: ClassTable, *, ignore_color: Sequence[int] | None = None,
    ignore_index: int | None = None, name: str = "mask",
) -> np.ndarray:
    """Map an HxWx3 RGB (or HxW gray, read as (v, v, v)) mask onto class ids via ``classes.colors``.

    Pixels of ``ignore_color`` become ``ignore_index``. Returns HxW uint8 (uint16 beyond 255).
    Raises UnetsegError naming ``name`` and the first colour not in the table.
    """
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    if not np.issubdtype(rgb.dtype, np.integer) or rgb.max(initial=0) > 255:
        raise UnetsegError(f"{name}: colour masks must be 8-bit RGB, got dtype {rgb.dtype} "
                           f"with values up to {rgb.max()}")
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(classes.colors)}
    if ignore_color is not None:
        if ignore_index is None:
            raise UnetsegError("ignore_color needs an ignore_index to map it to")
        r, g, b = (int(v) for v in ignore_color)
        table[(r << 16) | (g << 8) | b] = ignore_index
    keys = np.array(sorted(table), np.int32)
    values = np.array([table[k] for k in keys.tolist()], np.int64)
    pos = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
    unknown = keys[pos] != codes
    if unknown.any():
        y, x = np.argwhere(unknown)[0]
        code = int(codes[y, x])
        colour = (code >> 16, (code >> 8) & 255, code & 255)
        raise UnetsegError(f"{name}: colour {colour} (at row {y}, column {x}; {int(unknown.sum())} pixel(s) "
                           f"in all) is not in the class table {dict(zip(classes.names, classes.colors))}")
    return values[pos].astype(label_dtype(int(values.max()) + 1))


def read_mask(
    path: str | os.PathLike, *, mask_mode: str = "index", classes: ClassTable | None = None,
    ignore_index: int | None = None, ignore_color: Sequence[int] | None = None,
) -> np.ndarray:
    """Read a mask as HxW class ids: uint8 (uint16 when ids exceed 255).

    ``mask_mode="index"``: the pixel values are the ids (a gray mask saved as RGB with equal
    channels is accepted). ``"color"``: RGB colours are mapped through ``classes`` (required) by
    :func:`colors_to_index`; an alpha channel is dropped. Range checks are left to the caller.
    """
    path = Path(path)
    if mask_mode not in MASK_MODES:
        raise UnetsegError(f"mask_mode={mask_mode!r} is not one of {MASK_MODES}")
    array = read_image(path)
    if mask_mode == "color":
        if classes is None:
            raise UnetsegError("mask_mode='color' needs a class table (names and colours)")
        if array.ndim == 3:
            if array.shape[2] not in (3, 4):
                raise UnetsegError(f"{path}: a colour mask needs 3 (RGB) or 4 (RGBA) channels, got {array.shape[2]}")
            array = array[..., :3]
        return colors_to_index(array, classes, ignore_color=ignore_color, ignore_index=ignore_index, name=str(path))
    if array.ndim == 3:
        if not all(np.array_equal(array[..., 0], array[..., c]) for c in range(1, min(array.shape[2], 3))):
            raise UnetsegError(f"{path}: index mask has {array.shape[2]} channels with different values; "
                               "use mask_mode='color' with a class table for colour masks")
        array = array[..., 0]
    if not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.round(array)) or array.min() < 0:
            raise UnetsegError(f"{path}: index mask must hold non-negative integers, got dtype {array.dtype}")
    if array.min() < 0:
        raise UnetsegError(f"{path}: index mask holds negative value {int(array.min())}")
    top = int(array.max())
    return array.astype(label_dtype(top + 1), copy=False)


def load_folder(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike,
    *,
    classes: ClassTable | None = None,
    mask_mode: str = "index",
    ignore_index: int | None = None,
    ignore_color: Sequence[int] | None = None,
) -> tuple[list[FolderItem], ClassTable]:
    """Read every image/mask pair of two folders (paired by stem) and check them.

    Args:
        images_dir, masks_dir: folders of PNG/JPEG/TIFF files.
        classes: class table. Required for ``mask_mode="color"``. For index masks it fixes
            ``num_classes`` (else ``max label + 1``, at least 2, with default names/colours).
        mask_mode: ``"index"`` (pixel = class id) or ``"color"`` (RGB looked up in ``classes``).
        ignore_index: label that marks unlabelled pixels (e.g. 255); passes through unchanged.
        ignore_color: RGB colour mapped to ``ignore_index`` in colour masks.

    Returns:
        ``(items, classes)``: items sorted by stem; masks HxW uint8 (uint16 beyond 255).

    Raises:
        UnetsegError: missing/empty folder, unpaired or duplicate stems, unreadable file, image and
            mask of different sizes, images with different channel counts or dtypes, a mask
            value >= num_classes that is not ``ignore_index``, an unknown mask colour.
    """
    if ignore_index is not None and ignore_index < 0:
        raise UnetsegError(f"ignore_index must be >= 0, got {ignore_index}")
    if classes is not None and ignore_index is not None and ignore_index < classes.num_classes:
        raise UnetsegError(f"ignore_index {ignore_index} is a class id (there are {classes.num_classes} classes); "
                           "pick a value >= the number of classes, e.g. 255")
    items: list[FolderItem] = []
    first: FolderItem | None = None
    for stem, image_path, mask_path in find_pairs(images_dir, masks_dir):
        image = read_image(image_path)
        mask = read_mask(mask_path, mask_mode=mask_mode, classes=classes, ignore_index=ignore_index,
                         ignore_color=ignore_color)
        if image.shape[:2] != mask.shape:
            raise UnetsegError(f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from "
                               f"image {image_path.name} size {image.shape[1]}x{image.shape[0]}")
        item = FolderItem(stem, image, mask, image_path, mask_path)
        if first is None:
            first = item
        else:
            if _channels(image) != _channels(first.image):
                raise UnetsegError(f"{image_path}: {_channels(image)} channel(s), but {first.image_path.name} has "
                                   f"{_channels(first.image)}; all images must have the same channels")
            if image.dtype != first.image.dtype:
                raise UnetsegError(f"{image_path}: dtype {image.dtype}, but {first.image_path.name} is "
                                   f"{first.image.dtype}; all images must share one dtype")
        items.append(item)

    if classes is None:
        top = max(int(_labels_max(it.mask, ignore_index)) for it in items)
        classes = ClassTable.default(max(top + 1, 2))
    for it in items:
        bad = (it.mask >= classes.num_classes)
        if ignore_index is not None:
            bad &= it.mask != ignore_index
        if bad.any():
            value = int(it.mask[bad].max())
            hint = "" if ignore_index is None else f" and is not the ignore label {ignore_index}"
            raise UnetsegError(f"{it.mask_path}: mask value {value} is >= the number of classes "
                               f"({classes.num_classes}: {', '.join(classes.names)}){hint}")
    return items, classes


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
                               "add images, lower val_fraction or set val_fraction: 0")
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
) -> tuple[SampleSplit, SampleSplit]:
    """:func:`load_folder` + :func:`split_items` -> ``(train, val)`` :class:`SampleSplit` pairs.

    ``instances`` is None (folder masks carry classes, not instances); ``info["stems"]`` and
    ``info["files"]`` name the image files of each split.
    """
    items, table = load_folder(images_dir, masks_dir, classes=classes, mask_mode=mask_mode,
                               ignore_index=ignore_index, ignore_color=ignore_color)
    train, val = split_items([it.stem for it in items], val_fraction=val_fraction, val_files=val_files, seed=seed)
    by_stem = {it.stem: it for it in items}

    def make(stems: list[str]) -> SampleSplit:
        chosen = [by_stem[s] for s in stems]
        return SampleSplit(
            images=[it.image for it in chosen], masks=[it.mask for it in chosen], instances=None, classes=table,
            info={"stems": stems, "files": [str(it.image_path) for it in chosen]},
        )

    return make(train), make(val)
