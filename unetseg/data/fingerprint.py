"""The dataset fingerprint a plan is made from (nnU-Net's idea): sizes, bands, dtype, nodata, intensity ranges,
how the masks code their classes, class frequencies, object sizes and pixel spacing.

:func:`fingerprint_folder` reads an ``images/`` + ``masks/`` pair of folders as training would (every problem is
one line naming the file); :func:`fingerprint_sample` a built-in sample.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import UnetsegError
from ..io.images import file_nodata, read_image, read_labels
from ..io.source import recorded_pixel_size
from .folder import find_pairs
from .nodata import resolve_nodata, valid_mask
from .samples import load_sample

MAX_COLORS = 64  # an RGB mask with more distinct colours is not a class-colour mask
INSTANCE_VALUES = 16  # a one-band mask with this many values, each mostly one blob, holds object ids
SAMPLED_PIXELS = 1_000_000  # intensity percentiles over about this many valid pixels
SMALLEST_OBJECT = 9  # components smaller than this (px) are noise, not objects


@dataclass
class Fingerprint:
    """What a plan needs to know of a training set.

    Attributes:
        source: "folder" (``images``/``masks`` folders) or "sample" (``sample``: its name).
        shapes: (H, W) of each image. bands, dtype: of the images.
        nodata: the images' nodata value (GeoTIFF tag), if any; invalid_fraction: of the image pixels.
        low, median, high: per band, the 1st, 50th and 99th percentiles of the valid pixels; lowest, highest:
            their extremes. geo: the images carry GeoTIFF georeferencing.
        coding: how masks code classes: "index" (value = class id), "values" (``class_values`` listed),
            "color" (``colors``, RGB) or "instances" (object ids, 0 = background).
        class_fractions: pixel share of each class (under "instances": background, objects).
        object_diameter: median equivalent diameter (px) of the objects (instances, or the connected regions of
            the non-background classes); None when there are none. objects: how many.
        pixel_size, pixel_unit: (y, x) spacing the files record, if any.
        has_instances: the data hold object ids (instance masks, or a sample's), for the border weight map.
    """

    source: str
    shapes: list[tuple[int, int]]
    bands: int
    dtype: str
    coding: str
    class_fractions: list[float]
    low: list[float]
    median: list[float]
    high: list[float]
    lowest: list[float]
    highest: list[float]
    nodata: float | None = None
    invalid_fraction: float = 0.0
    class_values: list[float] | None = None
    colors: list[tuple[int, int, int]] | None = None
    class_names: list[str] | None = None
    object_diameter: float | None = None
    objects: int = 0
    pixel_size: tuple[float, float] | None = None
    pixel_unit: str | None = None
    geo: bool = False
    has_instances: bool = False
    sample: str | None = None
    images_dir: str | None = None
    masks_dir: str | None = None

    @property
    def images(self) -> int:
        return len(self.shapes)

    @property
    def num_classes(self) -> int:
        return len(self.class_fractions)

    @property
    def smallest_side(self) -> int:
        return min(min(s) for s in self.shapes)

    @property
    def median_shape(self) -> tuple[int, int]:
        return int(np.median([s[0] for s in self.shapes])), int(np.median([s[1] for s in self.shapes]))

    def heavy_tailed(self) -> list[bool]:
        """Per band: the extremes lie far beyond the 1-99 % range (CT-like values, saturated sensors, outliers),
        so mean/std statistics would be dominated by them."""
        out = []
        for lo, hi, mn, mx in zip(self.low, self.high, self.lowest, self.highest, strict=True):
            spread = max(hi - lo, 1e-12)
            out.append((mx - mn) / spread > 4.0)
        return out

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _intensity(images: list[np.ndarray], valid: list[np.ndarray | None]) -> dict[str, list[float]]:
    bands = 1 if images[0].ndim == 2 else images[0].shape[2]
    total = sum(int(v.sum()) if v is not None else im.shape[0] * im.shape[1] for im, v in zip(images, valid, strict=True))
    step = max(1, total // SAMPLED_PIXELS)
    picked = []
    for image, ok in zip(images, valid, strict=True):
        flat = image.reshape(-1, bands)
        if ok is not None:
            flat = flat[ok.reshape(-1)]
        picked.append(flat[::step].astype(np.float64))
    pixels = np.concatenate(picked)
    if not len(pixels):
        raise UnetsegError("the training images hold no valid pixel")
    low, median, high = np.percentile(pixels, [1, 50, 99], axis=0)
    return {"low": low.tolist(), "median": median.tolist(), "high": high.tolist(),
            "lowest": pixels.min(0).tolist(), "highest": pixels.max(0).tolist()}


def _objects(label_images: list[np.ndarray], background: int | None, ignore: set[float]) -> tuple[float | None, int]:
    """Median equivalent diameter and count of objects: the blobs of each non-background value."""
    areas: list[int] = []
    for labels in label_images:
        values = [v for v in np.unique(labels) if v != background and v not in ignore]
        for v in values:
            comps, n = ndimage.label(labels == v)
            if n:
                sizes = np.bincount(comps.ravel())[1:]
                areas += sizes[sizes >= SMALLEST_OBJECT].tolist()
    return typical_diameter(areas), len(areas)


def typical_diameter(areas: list[int]) -> float | None:
    """The equivalent diameter of the object a typical object pixel belongs to (the area-weighted median), px."""
    if not areas:
        return None
    sizes = np.sort(np.asarray(areas, np.float64))
    cumulative = np.cumsum(sizes)
    median = sizes[int(np.searchsorted(cumulative, cumulative[-1] / 2))]
    return float(2 * np.sqrt(median / np.pi))


def _instance_like(masks: list[np.ndarray]) -> bool:
    """Many values, each mostly a single blob: object ids rather than classes."""
    values = np.unique(np.concatenate([np.unique(m) for m in masks]))
    if len(values) < INSTANCE_VALUES or not np.issubdtype(masks[0].dtype, np.integer) or values.min() < 0:
        return False
    blobs = ids = 0
    for m in masks:
        for v in np.unique(m)[1:]:
            blobs += ndimage.label(m == v)[1]
            ids += 1
    return ids > 0 and blobs / ids < 1.5


def _coding(masks: list[np.ndarray], nodata: float | None) -> tuple[str, list[float] | None, Any]:
    """("index" | "values" | "color" | "instances", class values, colours)."""
    if masks[0].ndim == 3 and not all(np.array_equal(m[..., 0], m[..., c]) for m in masks for c in (1, 2)):
        colors = np.unique(np.concatenate([m[..., :3].reshape(-1, 3) for m in masks]), axis=0)
        if len(colors) > MAX_COLORS:
            raise UnetsegError(f"the RGB masks hold {len(colors)} colours; class-colour masks hold few (at most "
                               f"{MAX_COLORS})")
        return "color", None, [tuple(int(v) for v in c) for c in colors]
    masks = [m[..., 0] if m.ndim == 3 else m for m in masks]
    if _instance_like(masks):
        return "instances", None, None
    values = np.unique(np.concatenate([np.unique(m[valid_mask(m, nodata)]) for m in masks]))
    if np.issubdtype(values.dtype, np.floating) and not np.array_equal(values, np.round(values)):
        raise UnetsegError(f"the masks hold non-integral values (e.g. {float(values[values != np.round(values)][0])}); "
                           "masks hold class ids, class values, colours or object ids")
    coding = "index" if len(values) >= 2 and np.array_equal(values, np.arange(len(values))) else "values"
    return coding, [int(v) for v in values], None


def fingerprint_folder(images_dir: str | os.PathLike, masks_dir: str | os.PathLike) -> Fingerprint:
    """The fingerprint of ``images_dir`` + ``masks_dir`` (paired by stem, as training pairs them)."""
    pairs = find_pairs(images_dir, masks_dir)
    images, masks, valid, shapes = [], [], [], []
    for _stem, image_path, mask_path in pairs:
        image, mask = read_image(image_path), read_labels(mask_path)
        if image.shape[:2] != mask.shape[:2]:
            raise UnetsegError(f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} (WxH) differs from image "
                               f"{image_path.name} size {image.shape[1]}x{image.shape[0]}")
        if images and (image.shape[2:] != images[0].shape[2:] or image.dtype != images[0].dtype):
            raise UnetsegError(f"{image_path}: {image.dtype} with shape {image.shape}, unlike {pairs[0][1].name} "
                               f"({images[0].dtype}, {images[0].shape}); all images must share bands and dtype")
        nodata = resolve_nodata("auto", file_nodata(image_path))
        ok = valid_mask(image, nodata)
        images.append(image)
        masks.append(mask)
        valid.append(None if ok.all() else ok)
        shapes.append(image.shape[:2])
    mask_nodata = file_nodata(pairs[0][2])
    coding, values, colors = _coding(masks, mask_nodata)
    ignore = set() if mask_nodata is None else {mask_nodata}
    if coding == "color":
        codes = [(m[..., 0].astype(np.int64) << 16) | (m[..., 1].astype(np.int64) << 8) | m[..., 2] for m in masks]
        keys = [(r << 16) | (g << 8) | b for r, g, b in colors]
        counts = np.array([sum(int((c == k).sum()) for c in codes) for k in keys], np.float64)
        background = keys[int(np.argmax(counts))]
        diameter, n = _objects(codes, background, set())
        names = [f"class{i}" for i in range(len(colors))]
    elif coding == "instances":
        flat = [m[..., 0] if m.ndim == 3 else m for m in masks]
        fg = sum(int((m > 0).sum()) for m in flat)
        total = sum(m.size for m in flat)
        counts = np.array([total - fg, fg], np.float64)
        areas = [int(a) for m in flat for a in np.bincount(m.ravel().astype(np.int64))[1:] if a >= SMALLEST_OBJECT]
        diameter, n = typical_diameter(areas), len(areas)
        names = ["background", "object"]
    else:
        flat = [m[..., 0] if m.ndim == 3 else m for m in masks]
        keys = values
        counts = np.array([sum(int((m == k).sum()) for m in flat) for k in keys], np.float64)
        background = keys[0] if coding == "index" else keys[int(np.argmax(counts))]
        diameter, n = _objects(flat, background, ignore)
        names = None
    if int((counts > 0).sum()) < 2:
        held = (f"the one colour {colors[0]}" if coding == "color" else "no object ids" if coding == "instances"
                else f"the one value {values[0] if values else 'nodata'}")
        raise UnetsegError(f"{masks_dir}: every mask holds {held}: segmentation needs at least two classes (masks "
                           "saved empty, or the foreground in a band or value the masks do not hold?)")
    size = next((s for s in map(recorded_pixel_size, (p[1] for p in pairs)) if s is not None), None)
    invalid = sum(int((~v).sum()) for v in valid if v is not None) / sum(h * w for h, w in shapes)
    image_nodata = file_nodata(pairs[0][1])
    return Fingerprint(
        source="folder", shapes=[tuple(map(int, s)) for s in shapes], bands=1 if images[0].ndim == 2 else images[0].shape[2],
        dtype=str(images[0].dtype), coding=coding, class_fractions=(counts / max(counts.sum(), 1)).tolist(),
        **_intensity(images, valid), nodata=image_nodata, invalid_fraction=invalid,
        class_values=values if coding == "values" else None,
        colors=colors, class_names=names, object_diameter=diameter, objects=n,
        pixel_size=None if size is None else tuple(size[0]), pixel_unit=None if size is None else size[1],
        geo=_georeferenced(pairs[0][1]), has_instances=coding == "instances",
        images_dir=str(images_dir), masks_dir=str(masks_dir))


def _georeferenced(path: Path) -> bool:
    from ..io.source import open_image

    try:
        return bool(open_image(path).geotags)
    except UnetsegError:
        return False


def fingerprint_sample(name: str) -> Fingerprint:
    """The fingerprint of a built-in sample's training split (its classes as the sample defines them)."""
    try:
        split = load_sample(name, "train")
    except ValueError as err:
        raise UnetsegError(str(err)) from None
    k = split.classes.num_classes
    counts = np.zeros(k, np.float64)
    for m in split.masks:
        counts += np.bincount(m.ravel(), minlength=k)[:k]
    if split.instances is not None:
        areas = [int(a) for inst in split.instances for a in np.bincount(inst.ravel())[1:] if a >= SMALLEST_OBJECT]
        diameter, n = typical_diameter(areas), len(areas)
    else:
        diameter, n = _objects(split.masks, 0, set())
    first = split.images[0]
    return Fingerprint(
        source="sample", sample=name, shapes=[tuple(map(int, im.shape[:2])) for im in split.images],
        bands=1 if first.ndim == 2 else first.shape[2], dtype=str(first.dtype), coding="index",
        class_fractions=(counts / counts.sum()).tolist(), **_intensity(split.images, [None] * len(split.images)),
        class_names=list(split.classes.names), object_diameter=diameter, objects=n,
        has_instances=split.instances is not None)
