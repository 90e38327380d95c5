"""Built-in real sample datasets, shipped with the package (no downloads).

``load_sample(name, split)`` returns a :class:`SampleSplit` for

* ``"nuclei"`` -- one 512x512 fluorescence image of cell nuclei (2018 Data Science Bowl, BBBC038)
  with instance labels. Classes: background, nucleus (+ "border" with ``touching_border=True``).
* ``"brain"`` -- 143 axial 208x176 slices of the MNI ICBM152 2009a T1 template. Classes:
  background, grey matter, white matter.
* ``"fashion-scenes"`` -- scenes generated on the fly by :class:`FashionScenes` from 2,000 shipped
  Fashion-MNIST items. Classes: background + the 10 Fashion-MNIST classes.

Sources, derivations and licences: ``unetseg/data/samples/LICENSES.md`` (written by
``scripts/make_sample_data.py``).
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .classes import ClassTable
from .fashion import FASHION_CLASS_NAMES, FashionScenes, load_fashion_scenes
from .sample_split import SPLITS, SampleSplit, load_npz

__all__ = [
    "FASHION_CLASS_NAMES",
    "FashionScenes",
    "SampleSplit",
    "border_between_instances",
    "list_samples",
    "load_sample",
]

def _relabel(instances: np.ndarray) -> np.ndarray:
    """Renumber the non-zero ids of ``instances`` to 1..n (order kept); returns int32."""
    ids, inverse = np.unique(instances, return_inverse=True)
    lut = np.arange(len(ids), dtype=np.int32)
    if len(ids) and ids[0] != 0:
        lut += 1
    return lut[inverse].reshape(instances.shape)


def border_between_instances(instances: np.ndarray) -> np.ndarray:
    """Pixels separating touching objects: (H, W) bool.

    A pixel is *border* when its 3x3 neighbourhood (itself included) holds at least two different
    non-zero instance ids (8-connectivity). That marks the 1-px rim of a nucleus where it touches
    another nucleus (both rims), and the background pixels of a 1-px gap between two nuclei;
    nuclei 2 px or more apart, and isolated nuclei, get none.
    """
    import cv2  # deferred: keeps `import unetseg.data` light

    inst = instances.astype(np.int32, copy=False)
    kernel = np.ones((3, 3), np.uint8)
    # cv2 morphology on float32 is exact for ids < 2**24; 0 -> +inf so erosion is a min over objects.
    f = inst.astype(np.float32)
    hi = cv2.dilate(f, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0.0)
    lo = cv2.erode(np.where(inst > 0, f, np.float32(np.inf)), kernel,
                   borderType=cv2.BORDER_CONSTANT, borderValue=float(np.inf))
    return np.isfinite(lo) & (hi != lo)


# --------------------------------------------------------------------------------------------
# nuclei


def _load_nuclei(split: str, seed: int, *, touching_border: bool = False, val_columns: int = 128) -> SampleSplit:
    """Train = columns ``[0, 512 - val_columns)``, val = the last ``val_columns`` columns."""
    del seed  # a single fixed image: nothing random
    data = load_npz("nuclei.npz")
    image, inst = data["image"], data["instances"]
    width = image.shape[1]
    if not 0 < val_columns < width:
        raise ValueError(f"nuclei: val_columns must be in 1..{width - 1}, got {val_columns}")
    mask = (inst > 0).astype(np.uint8)
    names: tuple[str, ...] = ("background", "nucleus")
    colors: tuple[tuple[int, int, int], ...] = ((0, 0, 0), (255, 200, 0))
    if touching_border:
        # Computed on the whole image, so a border that the split line crosses is the same in both.
        mask[border_between_instances(inst)] = 2
        names += ("border",)
        colors += ((255, 0, 0),)
    c0, c1 = (0, width - val_columns) if split == "train" else (width - val_columns, width)
    region = np.s_[:, c0:c1]
    return SampleSplit(
        images=[np.ascontiguousarray(image[region])],
        masks=[np.ascontiguousarray(mask[region])],
        instances=[_relabel(inst[region])],
        classes=ClassTable(names, colors),
        info={"columns": (c0, c1)},
    )


# --------------------------------------------------------------------------------------------
# brain


def _load_brain(
    split: str, seed: int, *, val_fraction: float = 0.2, val_start: float = 0.4, gap: int = 3, volume: bool = False
) -> SampleSplit:
    """Val = a contiguous slab of ``round(val_fraction * S)`` slices starting at slice position
    ``round(val_start * S)``; train = the rest minus ``gap`` slices on each side of the slab. With ``volume``, the
    same voxels as (Z, Y, X) volumes: the val slab, and the train slabs below and above it."""
    del seed  # the split is fixed so that train and val never trade slices
    data = load_npz("brain.npz")
    image, labels, z = data["image"], data["labels"], data["z"].astype(np.int64)
    n = len(z)
    n_val = int(round(val_fraction * n))
    v0 = int(round(val_start * n))
    if not (0 < n_val and 0 <= v0 and v0 + n_val <= n) or gap < 0:
        raise ValueError(
            f"brain: val_fraction={val_fraction}, val_start={val_start}, gap={gap} do not fit {n} slices"
        )
    pos = np.arange(n)
    if split == "val":
        keep = (pos >= v0) & (pos < v0 + n_val)
    else:
        keep = (pos < v0 - gap) | (pos >= v0 + n_val + gap)
    idx = np.nonzero(keep)[0]
    if volume:
        runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
        runs = [r for r in runs if len(r)]
        return SampleSplit(images=[image[r[0] : r[-1] + 1].copy() for r in runs],
                           masks=[labels[r[0] : r[-1] + 1].copy() for r in runs], instances=None,
                           classes=BRAIN_CLASSES, info={"z": [z[r] for r in runs], "spacing": (1.0, 1.0, 1.0)})
    return SampleSplit(
        images=[image[i].copy() for i in idx],
        masks=[labels[i].copy() for i in idx],
        instances=None,
        classes=BRAIN_CLASSES,
        info={"z": z[idx]},
    )


# MNI ICBM152 2009a symmetric template, 1 mm: 197 x 233 x 189 voxels, voxel (0, 0, 0) at (-98, -134, -72) mm RAS
MNI_2009A_ORIGIN = (-98.0, -134.0, -72.0)
BRAIN_CLASSES = ClassTable(("background", "grey matter", "white matter"), ((0, 0, 0), (230, 159, 0), (86, 180, 233)))


@dataclass(frozen=True)
class SampleVolume:
    """A built-in volume: ``image`` and ``labels`` (Z, Y, X) uint8, ``spacing`` (z, y, x) in mm, ``affine`` the 4x4
    voxel-to-world (RAS mm) matrix for nibabel's (x, y, z) voxel indices (:mod:`unetseg.io.nifti`), ``classes``."""

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    classes: ClassTable

    def to_nifti(self, image_path: str | os.PathLike, labels_path: str | os.PathLike | None = None) -> None:
        """Write the image (and the labels) as NIfTI files with this volume's affine."""
        from ..io.nifti import write_nifti

        write_nifti(image_path, self.image, self.affine)
        if labels_path is not None:
            write_nifti(labels_path, self.labels, self.affine)


def brain_volume() -> SampleVolume:
    """The brain sample as the volume it was cut from: 143 contiguous axial slices (z, inferior to superior) of
    208 x 176 voxels (y: anterior up, i.e. posterior as the row index grows; x: left to right, the template's +x) of
    the MNI ICBM152 2009a T1 template at 1 mm, with its grey/white-matter labels and the template's world
    coordinates (RAS mm)."""
    data = load_npz("brain.npz")
    z = data["z"].astype(np.int64)
    if not (np.diff(z) == 1).all():
        raise ValueError("brain.npz: the slices are not contiguous")
    y0, y1, x0, _ = (int(v) for v in data["crop"])
    ox, oy, oz = MNI_2009A_ORIGIN
    # voxel (i, j, k) = (x, row, slice): x mm = ox + x0 + i, y mm = oy + (y1 - 1) - row (rows were flipped), z mm
    affine = np.array([[1.0, 0, 0, ox + x0], [0, -1.0, 0, oy + y1 - 1], [0, 0, 1.0, oz + int(z[0])], [0, 0, 0, 1]])
    return SampleVolume(np.ascontiguousarray(data["image"]), np.ascontiguousarray(data["labels"]), (1.0, 1.0, 1.0),
                        affine, BRAIN_CLASSES)


# --------------------------------------------------------------------------------------------

_LOADERS: dict[str, Callable[..., SampleSplit]] = {
    "nuclei": _load_nuclei,
    "brain": _load_brain,
    "fashion-scenes": load_fashion_scenes,
}


def list_samples() -> list[str]:
    """Names accepted by :func:`load_sample`: ``["nuclei", "brain", "fashion-scenes"]``."""
    return list(_LOADERS)


def load_sample(name: str, split: str = "train", *, seed: int = 0, **options: Any) -> SampleSplit:
    """Load one split (``"train"`` or ``"val"``) of a built-in sample dataset.

    Options per sample (defaults in brackets):

    * ``nuclei``: 1 image, uint8. Train = columns 0..383 (512x384), val = columns 384..511
      (512x128) of the same 512x512 image; instances renumbered 1..n within each region.
      ``touching_border`` [False] adds class 2 "border" (see :func:`border_between_instances`);
      ``val_columns`` [128]. ``seed`` is unused.
    * ``brain``: 208x176 uint8 axial slices, anterior up. Val = the contiguous slab of
      ``round(val_fraction*143)`` slices starting at position ``round(val_start*143)``; train =
      the other slices except ``gap`` slices on each side of the slab. ``val_fraction`` [0.2],
      ``val_start`` [0.4], ``gap`` [3] -> 108 train / 29 val slices. ``info["z"]`` holds template
      slice indices. ``volume`` [False]: the same split as (Z, Y, X) volumes (2 train slabs, 1 val slab) for 3D
      models. ``seed`` is unused.
    * ``fashion-scenes``: :class:`FashionScenes` scenes; train and val use disjoint items (a
      fixed stratified 80/20 split of the 2,000 shipped items) and seed streams ``[seed, 0]`` /
      ``[seed, 1]``. ``size`` [256] (int or (h, w)), ``n_scenes`` [8 train / 4 val],
      ``density`` [0.8], ``background`` ["noise"], ``val_fraction`` [0.2].

    Raises:
        ValueError: unknown sample name, split or option.
    """
    loader = _LOADERS.get(name)
    if loader is None:
        raise ValueError(f"unknown sample {name!r}; valid samples: {', '.join(_LOADERS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for sample {name!r}; valid splits: {', '.join(SPLITS)}")
    allowed = [p for p, v in inspect.signature(loader).parameters.items() if v.kind is v.KEYWORD_ONLY]
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise ValueError(
            f"unknown option(s) {', '.join(bad)} for sample {name!r}; valid options: {', '.join(allowed) or 'none'}"
        )
    return loader(split, seed, **options)
