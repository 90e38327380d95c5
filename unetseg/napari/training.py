"""Training from a painted Labels layer, without Qt: the labelled part of the image becomes a one-image data
folder inside a normal run folder, which is planned (:mod:`unetseg.training.plan`) and trained. A 3-D labels layer
over a volume becomes a one-volume folder (NIfTI, the layer's scale as the voxel spacing), planned as volumes
(:mod:`unetseg.training.volume_plan`: 2D, 2.5D or 3D by measurement) and trained into a 3D checkpoint."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.classes import ClassTable
from ..errors import UnetsegError
from ..training.trainer import RunResult
from .layers import UNLABELLED, training_mask

CONTEXT_MARGIN = 64  # px of unlabelled image kept around the labelled box: context for the patches at its edge


@dataclass(frozen=True)
class TrainingData:
    """The labelled crop written for training: the image and mask folders, the crop's box in the layer
    ((r0, r1, c0, c1); for a volume (z0, z1, r0, r1, c0, c1)), and the class names."""

    images: Path
    masks: Path
    box: tuple[int, ...]
    classes: list[str]


def training_image(data: Any, rgb: bool, shape: tuple[int, ...], name: str = "image") -> np.ndarray:
    """The layer's pixels as a numpy array of the labels' ``shape``: HxW or HxWxC, or for 3-D labels DxHxW or
    DxHxWxC (bands-first data, CxHxW or CxDxHxW, is moved last). Raises UnetsegError naming ``name`` when it is
    not one plane (one volume) of that size."""
    dims = len(shape)
    arr = np.asarray(data[0] if isinstance(data, (list, tuple)) or getattr(data, "multiscale", False) else data)
    if arr.ndim == dims or (rgb and arr.ndim == dims + 1):
        out = arr
    elif arr.ndim == dims + 1 and tuple(arr.shape[1:]) == tuple(shape):
        out = np.moveaxis(arr, 0, -1)
    else:
        what = "one plane (HxW, RGB, or bands first)" if dims == 2 else "one volume (DxHxW, or bands first)"
        raise UnetsegError(f"image {name!r}: shape {arr.shape}; train takes {what} of the labels' size "
                           f"{_size(shape)}")
    if tuple(out.shape[:dims]) != tuple(shape):
        unit = "px" if dims == 2 else "voxels"
        raise UnetsegError(f"image {name!r} is {_size(out.shape[:dims])} {unit} but the labels are {_size(shape)}: "
                           f"paint on a labels layer of the image's size")
    return np.ascontiguousarray(out)


def _size(shape: Sequence[int]) -> str:
    """A shape as a user reads it: W x H for a plane, D x H x W for a volume."""
    sides = [str(int(n)) for n in shape]
    return "x".join(sides[::-1] if len(sides) == 2 else sides)


def labelled_box(mask: np.ndarray, margin: int = CONTEXT_MARGIN) -> tuple[int, ...]:
    """(r0, r1, c0, c1) (a volume: (z0, z1, r0, r1, c0, c1)): the bounding box of the labelled pixels grown by
    ``margin`` on every axis, clipped to the image."""
    box: list[int] = []
    labelled = mask != UNLABELLED
    for axis, n in enumerate(mask.shape):
        found = np.flatnonzero(labelled.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box += [max(int(found[0]) - margin, 0), min(int(found[-1]) + 1 + margin, n)]
    return tuple(box)


def class_names(mask: np.ndarray, known: list[str] | None, parent: ClassTable | None,
                features: Any = None) -> list[str]:
    """Names of classes 0..K-1: a class-coded layer's own; else the parent checkpoint's (painted label ``v`` is
    its class ``v - 1``), extended when more were painted; else the layer's ``class`` feature; else defaults."""
    k = int(mask[mask != UNLABELLED].max()) + 1
    if known is not None:
        return known
    if parent is not None:
        names = list(parent.names)
        return names + list(ClassTable.default(max(k, len(names))).names[len(names):])
    painted = _feature_names(features)
    defaults = list(ClassTable.default(max(k, 2)).names)
    return [painted.get(i + 1, defaults[i]) for i in range(max(k, 2))]


def _feature_names(features: Any) -> dict[int, str]:
    """{label value: name} from a Labels layer's features (``index`` and ``class`` or ``name`` columns)."""
    try:
        column = next(c for c in ("class", "name") if c in features)
        index = features["index"] if "index" in features else range(len(features[column]))
        return {int(i): str(n) for i, n in zip(index, features[column], strict=True)}
    except (StopIteration, TypeError, KeyError, ValueError):
        return {}


def write_training_data(out: Path, image: np.ndarray, mask: np.ndarray, names: list[str], stem: str = "painted"
                        ) -> TrainingData:
    """The labelled crop of ``image`` and ``mask`` as ``out/data/images/<stem>.tif`` and
    ``out/data/masks/<stem>.tif`` (class ids, GDAL_NODATA = :data:`UNLABELLED`, so training ignores them)."""
    from ..io.maps import write_image, write_index

    _two_classes(mask, names)
    r0, r1, c0, c1 = box = labelled_box(mask)
    images, masks = out / "data" / "images", out / "data" / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    write_image(images / f"{stem}.tif", image[r0:r1, c0:c1])
    write_index(masks / f"{stem}.tif", mask[r0:r1, c0:c1], nodata=UNLABELLED)
    return TrainingData(images, masks, box, names)


def _two_classes(mask: np.ndarray, names: list[str]) -> None:
    labelled = np.unique(mask[mask != UNLABELLED])
    if len(labelled) < 2:
        raise UnetsegError(f"only {names[int(labelled[0])]!r} is painted: paint at least two classes (e.g. some "
                           "background too) so the model learns to tell them apart")


def write_training_volume(out: Path, volume: np.ndarray, mask: np.ndarray, names: list[str],
                          spacing: Sequence[float], stem: str = "painted") -> TrainingData:
    """The labelled box of ``volume`` (DxHxW[xC]) and ``mask`` (DxHxW) as ``out/data/images/<stem>.nii.gz`` and
    ``out/data/masks/<stem>.nii.gz`` with the voxel ``spacing`` (z, y, x: the layer's scale); unlabelled voxels
    hold :data:`UNLABELLED`, the run's ignore label."""
    from ..io.nifti import write_nifti
    from ..io.volume import diagonal_affine

    _two_classes(mask, names)
    box = labelled_box(mask)
    crop = tuple(slice(box[2 * a], box[2 * a + 1]) for a in range(3))
    images, masks = out / "data" / "images", out / "data" / "masks"
    affine = diagonal_affine(tuple(float(s) for s in spacing))  # type: ignore[arg-type]
    write_nifti(images / f"{stem}.nii.gz", volume[crop], affine)
    write_nifti(masks / f"{stem}.nii.gz", mask[crop], affine)
    return TrainingData(images, masks, box, names)


def plan_volume_config(data: TrainingData, minutes: float, init: str | None, out: Path,
                       overrides: Sequence[str] = (), started: float | None = None,
                       say: Callable[[str], Any] | None = None) -> Any:
    """:func:`plan_config` for a volume crop (:func:`write_training_volume`): the volume plan, the painted classes,
    unlabelled voxels ignored (a validation slab along z is chosen where voxels are labelled)."""
    from ..data.volume_fingerprint import fingerprint_volume_folder
    from ..training.volume_plan import make_volume_plan

    plan = make_volume_plan(fingerprint_volume_folder(data.images, data.masks, ignore_index=UNLABELLED), minutes,
                            started=started, say=say)
    plan.config["data"]["ignore_index"] = UNLABELLED
    plan.reasons["data.ignore_index"] = f"unlabelled voxels hold {UNLABELLED} and are ignored"
    return _finish_plan(plan, data, init, out, overrides)


def plan_config(data: TrainingData, minutes: float, init: str | None, out: Path, overrides: Sequence[str] = (),
                started: float | None = None, say: Callable[[str], Any] | None = None) -> Any:
    """The run config: the plan of the crop (written as ``out/plan.yaml``), its classes named, fine-tuning from
    ``init`` (whose architecture replaces the plan's model section) when given, then ``overrides``
    (``KEY.SUB=VALUE``, as ``unetseg train --set``). ``minutes`` counts from ``started`` (a
    ``time.perf_counter()``); ``say`` gets the plan's status lines."""
    from ..data.fingerprint import fingerprint_folder
    from ..training.plan import make_plan

    plan = make_plan(fingerprint_folder(data.images, data.masks), minutes, started=started, say=say)
    for key in ("class_values", "mask_mode"):  # the mask holds class ids 0..K-1 whatever was painted
        plan.config["data"].pop(key, None)
    return _finish_plan(plan, data, init, out, overrides)


def _finish_plan(plan: Any, data: TrainingData, init: str | None, out: Path, overrides: Sequence[str]) -> Any:
    """Name the painted classes, fine-tune from ``init``, apply ``overrides``, write plan.yaml (each overridden
    setting says so) and fingerprint.json; the validated run config."""
    from ..config.run import validate_config
    from ..io.maps import write_json, write_text

    plan.config["data"]["classes"] = [{"name": n} for n in data.classes]
    plan.reasons["data.classes"] = "the painted labels' classes (unlabelled pixels are the mask's nodata)"
    if init:
        plan.config["model"] = {}
        plan.header.append(f"model: the architecture of the checkpoint {init}")
    plan.override([*([f"train.init={_quoted(init)}"] if init else []), *overrides])
    config = validate_config(plan.config, str(out / "plan.yaml"))
    write_text(out / "plan.yaml", plan.to_yaml())  # as `unetseg train` writes it: with what the overrides changed
    write_json(out / "fingerprint.json", plan.fingerprint)
    return config


def _quoted(path: str) -> str:
    import json

    return json.dumps(os.fspath(path))


def train_from_labels(
    image: Any,
    labels: Any,
    out: str | os.PathLike,
    *,
    minutes: float = 2.0,
    epochs: int | None = None,
    init: str | os.PathLike | None = None,
    rgb: bool = False,
    metadata: dict[str, Any] | None = None,
    features: Any = None,
    scale: Sequence[float] | None = None,
    names: tuple[str, str] = ("image", "labels"),
    overrides: Sequence[str] = (),
    on_epoch: Callable[[dict[str, Any]], Any] | None = None,
    stop: Callable[[], bool] | None = None,
    on_status: Callable[[str], Any] | None = None,
) -> RunResult:
    """Train (or fine-tune from ``init``) on the labelled pixels of one image or volume; return the run's result.

    Args:
        image: the image layer's data: HxW, HxWxC (``rgb``) or CxHxW, any dtype; a multiscale layer's level 0.
            With 3-D labels, a volume: DxHxW, DxHxWxC (``rgb``) or CxDxHxW.
        labels: HxW (or DxHxW) labels: painted (0 = not labelled, ``v`` = class ``v - 1``) or class-coded
            (``metadata`` from :func:`unetseg.napari.layers.class_layer_kwargs`: a corrected segmentation). 3-D
            labels train a 3D checkpoint (the volume plan chooses 2D, 2.5D or 3D networks).
        scale: the labels layer's scale (its last three entries are a volume's voxel spacing, z, y, x; None:
            1 each).
        out: the run folder (created): ``data/`` (the labelled crop), ``plan.yaml``, and what ``unetseg train``
            writes (config.yaml, metrics.csv, best.pt, last.pt).
        minutes: the training time (the plan sizes the model and epochs for it).
        epochs: stop after this many epochs if the time is not up first (None: the time decides).
        init: a checkpoint to fine-tune (its architecture, normalisation unless the data's differ markedly,
            classes matched by name).
        names: the two layers' names, for error messages.
        overrides: config changes after the plan, ``KEY.SUB=VALUE`` as ``unetseg train --set`` takes them.
        on_epoch, stop, on_status: see :func:`unetseg.training.train`; ``on_status`` gets the plan's lines too.
            ``minutes`` covers everything from this call on: planning, training and what follows it.

    Raises UnetsegError (one line) for unusable layers: no or one painted class, sizes that differ.
    """
    from ..models import load_model
    from ..tiling.volume import spatial_dims
    from ..training import train

    started = time.perf_counter()
    if not minutes > 0:
        raise UnetsegError(f"training minutes {minutes:g}: must be positive")
    mask, known = training_mask(labels, metadata, names[1])
    volume = mask.ndim == 3
    pixels = training_image(image, rgb, mask.shape, names[0])
    parent = load_model(init) if init else None
    if parent is not None and spatial_dims(parent) != mask.ndim:
        raise UnetsegError(f"start from {init}: a {spatial_dims(parent)}D model cannot fine-tune on "
                           f"{mask.ndim}-D labels ({names[1]!r})")
    if epochs is not None and epochs < 1:
        raise UnetsegError(f"training epochs {epochs}: must be at least 1 (or none: the time decides)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    classes = class_names(mask, known, None if parent is None else parent.class_table, features)
    changes = [*([f"train.epochs={int(epochs)}"] if epochs else []), *overrides]
    init_path = os.fspath(init) if init else None
    if volume:
        spacing = tuple(float(s) for s in scale[-3:]) if scale is not None else (1.0, 1.0, 1.0)
        data = write_training_volume(out, pixels, mask, classes, spacing)
        config = plan_volume_config(data, minutes, init_path, out, changes, started, on_status)
    else:
        data = write_training_data(out, pixels, mask, classes)
        config = plan_config(data, minutes, init_path, out, changes, started, on_status)
    return train(config, out, name="napari", progress=False, on_epoch=on_epoch, stop=stop, on_status=on_status,
                 started=started)
