"""Training from a painted Labels layer, without Qt: the labelled part of the image becomes a one-image data
folder inside a normal run folder, which is planned (:mod:`unetseg.training.plan`) and trained."""
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
    """The labelled crop written for training: the image and mask files, the crop's box in the layer
    (r0, r1, c0, c1), and the class names."""

    images: Path
    masks: Path
    box: tuple[int, int, int, int]
    classes: list[str]


def training_image(data: Any, rgb: bool, shape: tuple[int, int], name: str = "image") -> np.ndarray:
    """The layer's pixels as an HxW or HxWxC numpy array of the labels' ``shape`` (bands-first 3-D data is
    moved last). Raises UnetsegError naming ``name`` when it is not one plane of that size."""
    arr = data[0] if isinstance(data, (list, tuple)) or getattr(data, "multiscale", False) else data
    arr = np.asarray(arr)
    if rgb and arr.ndim == 3:
        out = arr
    elif arr.ndim == 2:
        out = arr
    elif arr.ndim == 3 and tuple(arr.shape[1:]) == tuple(shape):
        out = np.moveaxis(arr, 0, -1)
    else:
        raise UnetsegError(f"image {name!r}: shape {arr.shape}; train takes one plane (HxW, RGB, or bands first) "
                           f"of the labels' size {shape[1]}x{shape[0]}")
    if tuple(out.shape[:2]) != tuple(shape):
        raise UnetsegError(f"image {name!r} is {out.shape[1]}x{out.shape[0]} px but the labels are "
                           f"{shape[1]}x{shape[0]}: paint on a labels layer of the image's size")
    return np.ascontiguousarray(out)


def labelled_box(mask: np.ndarray, margin: int = CONTEXT_MARGIN) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1): the bounding box of the labelled pixels grown by ``margin``, clipped to the image."""
    rows = np.flatnonzero((mask != UNLABELLED).any(axis=1))
    cols = np.flatnonzero((mask != UNLABELLED).any(axis=0))
    h, w = mask.shape
    return (max(int(rows[0]) - margin, 0), min(int(rows[-1]) + 1 + margin, h),
            max(int(cols[0]) - margin, 0), min(int(cols[-1]) + 1 + margin, w))


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

    labelled = np.unique(mask[mask != UNLABELLED])
    if len(labelled) < 2:
        raise UnetsegError(f"only {names[int(labelled[0])]!r} is painted: paint at least two classes (e.g. some "
                           "background too) so the model learns to tell them apart")
    r0, r1, c0, c1 = box = labelled_box(mask)
    images, masks = out / "data" / "images", out / "data" / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    write_image(images / f"{stem}.tif", image[r0:r1, c0:c1])
    write_index(masks / f"{stem}.tif", mask[r0:r1, c0:c1], nodata=UNLABELLED)
    return TrainingData(images, masks, box, names)


def plan_config(data: TrainingData, minutes: float, init: str | None, out: Path, overrides: Sequence[str] = (),
                started: float | None = None, say: Callable[[str], Any] | None = None) -> Any:
    """The run config: the plan of the crop (written as ``out/plan.yaml``), its classes named, fine-tuning from
    ``init`` (whose architecture replaces the plan's model section) when given, then ``overrides``
    (``KEY.SUB=VALUE``, as ``unetseg train --set``). ``minutes`` counts from ``started`` (a
    ``time.perf_counter()``); ``say`` gets the plan's status lines."""
    from ..config.base import apply_overrides
    from ..config.run import validate_config
    from ..data.fingerprint import fingerprint_folder
    from ..io.maps import write_json, write_text
    from ..training.plan import make_plan

    plan = make_plan(fingerprint_folder(data.images, data.masks), minutes, started=started, say=say)
    section = plan.config["data"]
    for key in ("class_values", "mask_mode"):  # the mask holds class ids 0..K-1 whatever was painted
        section.pop(key, None)
    section["classes"] = [{"name": n} for n in data.classes]
    plan.reasons["data.classes"] = "the painted labels' classes (unlabelled pixels are the mask's nodata)"
    if init:
        plan.config["model"] = {}
        plan.header.append(f"model: the architecture of the checkpoint {init}")
    write_text(out / "plan.yaml", plan.to_yaml())
    write_json(out / "fingerprint.json", plan.fingerprint)
    changes = [*([f"train.init={_quoted(init)}"] if init else []), *overrides]
    return validate_config(apply_overrides(plan.config, changes), str(out / "plan.yaml"))


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
    names: tuple[str, str] = ("image", "labels"),
    overrides: Sequence[str] = (),
    on_epoch: Callable[[dict[str, Any]], Any] | None = None,
    stop: Callable[[], bool] | None = None,
    on_status: Callable[[str], Any] | None = None,
) -> RunResult:
    """Train (or fine-tune from ``init``) on the labelled pixels of one image; return the run's result.

    Args:
        image: the image layer's data: HxW, HxWxC (``rgb``) or CxHxW, any dtype; a multiscale layer's level 0.
        labels: HxW labels: painted (0 = not labelled, ``v`` = class ``v - 1``) or class-coded (``metadata``
            from :func:`unetseg.napari.layers.class_layer_kwargs`: a corrected segmentation).
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
    from ..training import train

    started = time.perf_counter()
    if not minutes > 0:
        raise UnetsegError(f"training minutes {minutes:g}: must be positive")
    mask, known = training_mask(labels, metadata, names[1])
    pixels = training_image(image, rgb, mask.shape, names[0])
    parent = load_model(init).class_table if init else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = write_training_data(out, pixels, mask, class_names(mask, known, parent, features))
    if epochs is not None and epochs < 1:
        raise UnetsegError(f"training epochs {epochs}: must be at least 1 (or none: the time decides)")
    changes = [*([f"train.epochs={int(epochs)}"] if epochs else []), *overrides]
    config = plan_config(data, minutes, os.fspath(init) if init else None, out, changes, started, on_status)
    return train(config, out, name="napari", progress=False, on_epoch=on_epoch, stop=stop, on_status=on_status,
                 started=started)
