"""Segmenting a layer's image, without Qt: checkpoint(s) -> :func:`unetseg.predict_tiled` -> napari layer data.

The Segment widget runs :func:`segment_layer` in a worker thread; tests and scripts call it directly.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnetsegError
from .layers import class_layer_kwargs, level_placement, model_input

OUTPUTS = ("labels", "probabilities", "uncertainty", "instances")
PRECISIONS = {"auto": "auto", "fp32": False, "bf16": "bf16", "fp16": "fp16", "int8": "int8"}  # widget -> amp=
TILE_SIZES = ("auto", "256", "512", "1024", "2048")
TTA_CHOICES = ("auto", "none", "flips", "d4")

LayerData = tuple[Any, dict[str, Any], str]  # napari's LayerDataTuple: (data, kwargs, "labels" | "image")


class Cancelled(Exception):  # noqa: N818  (a user's choice, not an error)
    """Raised from the progress callback to stop a run; nothing is added."""


@dataclass(frozen=True)
class SegmentSettings:
    """What the Segment widget asks for; the defaults are :func:`unetseg.predict_tiled`'s.

    checkpoint: a ``.pt`` file, a run folder (its best.pt) or a folds folder (the fold ensemble).
    engine: "auto" or an engine name; precision: a key of :data:`PRECISIONS`; tile_size: "auto" or pixels;
    tta: "none", "flips", "d4"; output: one of :data:`OUTPUTS`; level: the pyramid level of a multiscale
    layer (0 = full resolution)."""

    checkpoint: str
    engine: str = "auto"
    precision: str = "auto"
    tile_size: str = "auto"
    tta: str = "auto"
    output: str = "labels"
    level: int = 0

    def predict_kwargs(self) -> dict[str, Any]:
        if self.precision not in PRECISIONS:
            raise UnetsegError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.output not in OUTPUTS:
            raise UnetsegError(f"output {self.output!r} is not one of {', '.join(OUTPUTS)}")
        tile: int | str = self.tile_size if self.tile_size == "auto" else int(self.tile_size)
        return {"engine": self.engine, "amp": PRECISIONS[self.precision], "tile_size": tile,
                "tta": None if self.tta == "none" else self.tta}


def load_checkpoints(checkpoint: str | os.PathLike) -> Any:
    """The model (or list of fold models) a checkpoint file, run folder or folds folder names, cached by path
    and modification time so repeated runs in the viewer load once."""
    from ..models.ensemble import checkpoint_paths

    if not str(checkpoint).strip():
        raise UnetsegError("choose a checkpoint (.pt file, run folder or folds folder) first")
    paths = checkpoint_paths([checkpoint])
    return _load(tuple((os.fspath(p), p.stat().st_mtime_ns) for p in paths))


@lru_cache(maxsize=2)
def _load(keys: tuple[tuple[str, int], ...]) -> Any:
    from ..models import load_model

    models = [load_model(path) for path, _ in keys]
    return models[0] if len(models) == 1 else models


def pick_level(data: Any, multiscale: bool, level: int, name: str = "image") -> Any:
    """The array of pyramid ``level`` of a multiscale layer (level 0 of a plain one); never read whole."""
    if not multiscale:
        if level:
            raise UnetsegError(f"image {name!r} has one level; level {level} does not exist")
        return data
    if not 0 <= level < len(data):
        raise UnetsegError(f"image {name!r} has pyramid levels 0..{len(data) - 1}; level {level} does not exist")
    return data[level]


def segment_layer(
    data: Any,
    settings: SegmentSettings,
    *,
    name: str = "image",
    rgb: bool = False,
    multiscale: bool = False,
    leading: Sequence[int] = (),
    scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> list[LayerData]:
    """Segment an image layer's data with ``settings``; return the layers to add (napari LayerDataTuples).

    Args:
        data: the layer's data (a list of levels when ``multiscale``): HxW, HxWxC (``rgb``), CxHxW, or with
            leading stack axes (``leading``: the plane on screen); numpy, dask or zarr, read a tile row at a time.
            A 3D model's checkpoint segments the volume on screen: DxHxW (DxHxWxC ``rgb``, CxDxHxW), leading
            axes (time) indexed by ``leading``, read a slab of tiles at a time.
        settings: checkpoint and options (:class:`SegmentSettings`).
        name: the image layer's name; the new layers are named after it.
        scale, translate: the image layer's (None: ones, zeros), so results at a pyramid level lie over it and
            a volume's labels keep its voxel size.
        progress: ``progress(tiles_done, tiles_total)``; raising :class:`Cancelled` from it stops the run.

    Returns:
        "labels": one Labels layer of class ids (the checkpoint's class names and colours); "instances": a
        Labels layer of object ids with per-object features (class, area, mean probability); "probabilities":
        one Image layer per class (0..1); "uncertainty": the predictive entropy and, with several views (TTA,
        a fold ensemble), their disagreement, as Image layers. A 3D model's layers are DxHxW with the volume's
        scale; its "instances" are the 26-connected components of each class but the first, with their volume in
        voxels; "uncertainty" is for 2D models (a one-line UnetsegError).
    """
    from ..models.ensemble import as_model
    from ..tiling import predict_tiled
    from ..tiling.volume import spatial_dims

    kwargs = settings.predict_kwargs()
    loaded = load_checkpoints(settings.checkpoint)
    model = as_model(loaded)
    dims = spatial_dims(model)
    level = pick_level(data, multiscale, settings.level, name)
    image = model_input(level, rgb, model.in_channels, leading, name, dims)
    base = data[0].shape if multiscale else level.shape
    ndim = len(base)
    sc, tr = level_placement(_spatial_shape(base, rgb, dims), _spatial_shape(level.shape, rgb, dims),
                             scale if scale is not None else (1.0,) * ndim,
                             translate if translate is not None else (0.0,) * ndim, dims)
    where = {"scale": sc, "translate": tr}
    table = model.class_table
    label = f"{name} ({settings.output if settings.output != 'labels' else 'classes'})"
    if settings.output in ("labels", "instances"):
        labels = predict_tiled(loaded, image, output="labels", progress=progress or False, **kwargs)
        if settings.output == "labels":
            nodata = 255 if labels.dtype == np.uint8 else 65535 if labels.dtype == np.uint16 else None
            return [(labels, class_layer_kwargs(table, label, nodata, **where), "labels")]
        return [_instances(model, labels, label, where) if dims == 2 else _volume_instances(model, labels, label, where)]
    if settings.output == "probabilities":
        probs = predict_tiled(loaded, image, output="probs", progress=progress or False, **kwargs)
        names = list(table.names) if probs.shape[-1] == table.num_classes else ["foreground"]
        shown = {len(names) - 1} if len(names) <= 2 else set(range(1, len(names)))
        return [(probs[..., k], {"name": f"{name} p({n})", "colormap": "magma", "contrast_limits": (0.0, 1.0),
                                 "visible": k in shown, "blending": "additive", **where}, "image")
                for k, n in enumerate(names)]
    if dims == 3:
        raise UnetsegError("output 'uncertainty' is for 2D models; a 3D model gives labels, probabilities or "
                           "instances")
    unc = predict_tiled(loaded, image, output="uncertainty", progress=progress or False, **kwargs)
    from ..models.ensemble import entropy_bound

    views = isinstance(loaded, list) or kwargs["tta"] is not None
    out = [(unc[..., 0], {"name": f"{name} entropy", "colormap": "inferno",
                          "contrast_limits": (0.0, entropy_bound(model.num_classes)), **where}, "image")]
    if views:
        out.append((unc[..., 1], {"name": f"{name} disagreement", "colormap": "viridis", "visible": False,
                                  "contrast_limits": (0.0, max(float(unc[..., 1].max()), 1e-6)), **where}, "image"))
    return out


def _spatial_shape(shape: Sequence[int], rgb: bool, dims: int) -> tuple[int, ...]:
    """The last ``dims`` spatial sides of a layer's ``shape`` (an RGB layer's last axis is its bands)."""
    sides = tuple(int(s) for s in shape)
    return sides[-dims - 1 : -1] if rgb else sides[-dims:]


def _instances(model: Any, labels: np.ndarray, label: str, where: dict[str, Any]) -> LayerData:
    """Objects of the class map (an instance-trained model's interiors grown over its boundaries; else the
    connected regions of each class but the first), numbered 1..N, with their table as features."""
    from ..objects.separate import label_objects, object_rule

    rule = object_rule(model)
    ids, table = label_objects(labels, rule, model.num_classes)
    names = model.class_table.names
    n = len(table)
    features = {"index": list(range(1, n + 1)),
                "class": [names[c] if c < len(names) else str(c) for c in table.class_id],
                "area_px": table.area.tolist()}
    return ids, {"name": label, "features": features, **where}, "labels"


def _volume_instances(model: Any, labels: np.ndarray, label: str, where: dict[str, Any]) -> LayerData:
    """Objects of a 3D class map: the 26-connected components of each class but the first (background), numbered
    1..N class by class, with their class and volume (voxels) as features."""
    from scipy import ndimage

    names = model.class_table.names
    ids = np.zeros(labels.shape, np.int32)
    classes: list[str] = []
    volumes: list[int] = []
    for c in range(1, int(model.num_classes)):
        found, n = ndimage.label(labels == c, np.ones((3, 3, 3), bool))
        if not n:
            continue
        inside = found > 0
        ids[inside] = found[inside] + len(classes)
        classes += [names[c]] * n
        volumes += np.bincount(found[inside], minlength=n + 1)[1:].tolist()
    features = {"index": list(range(1, len(classes) + 1)), "class": classes, "volume_voxels": volumes}
    return ids, {"name": label, "features": features, **where}, "labels"


def last_checkpoint_file() -> Path:
    """Where the viewer remembers the last checkpoint used (``$UNETSEG_CONFIG_DIR``, default
    ``~/.config/unetseg``)."""
    root = os.environ.get("UNETSEG_CONFIG_DIR") or Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"),
                                                         "unetseg")
    return Path(root) / "napari.json"


def remembered_checkpoint() -> str:
    """The last checkpoint used in the viewer, or ""."""
    import json

    try:
        return str(json.loads(last_checkpoint_file().read_text()).get("checkpoint", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def remember_checkpoint(path: str | os.PathLike) -> None:
    """Record ``path`` as the last checkpoint used (best effort: a read-only home only forgets it)."""
    from ..errors import OutputError
    from ..io.maps import write_json

    file = last_checkpoint_file()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        write_json(file, {"checkpoint": os.fspath(path)})
    except (OSError, OutputError):
        pass
