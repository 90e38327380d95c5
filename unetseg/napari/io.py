"""napari reader and writer: unetseg's maps open with their class names and colours; a Labels layer saves as
a mask ``unetseg train`` reads.

Read: ``<stem>_index.{tif,png}`` and ``<stem>_palette.{tif,png}`` maps (names and colours from the sibling
``<stem>_summary.json``, else the palette), and OME-Zarr labels (``*.ome.zarr`` / ``*.zarr`` groups with NGFF
``image-label`` metadata; multiscale, read lazily). Write: a Labels layer as a class-id TIFF/PNG mask.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..data.classes import ClassTable
from ..errors import UnetsegError
from .layers import UNLABELLED, class_layer_kwargs, training_mask

MAP_PARTS = ("index", "palette")
MAP_SUFFIXES = (".tif", ".tiff", ".png")


def get_reader(path: str | list[str]) -> Callable[[Any], list[tuple]] | None:
    """npe2 reader: a function reading ``path`` when it is a unetseg map or OME-Zarr labels group, else None
    (so napari offers the file to other readers)."""
    if isinstance(path, list):
        return None if len(path) != 1 else get_reader(path[0])
    p = Path(path)
    if p.is_dir() and _label_group(p) is not None:
        return read_labels_zarr
    if p.is_file() and p.suffix.lower() in MAP_SUFFIXES and _map_stem(p) is not None:
        return read_map
    return None


def _map_stem(path: Path) -> str | None:
    name = path.name[: -len(path.suffix)]
    for part in MAP_PARTS:
        if name.endswith(f"_{part}") and len(name) > len(part) + 1:
            return name[: -len(part) - 1]
    return None


def read_map(path: str | list[str]) -> list[tuple]:
    """A unetseg index or palette map as a class-coded Labels layer."""
    from ..io.images import read_labels

    p = Path(path[0] if isinstance(path, list) else path)
    labels = read_labels(p)  # integer ids as written (a map of more than 65536 classes is int32)
    if labels.ndim != 2:
        raise UnetsegError(f"{p}: a label map is one band; this file has shape {labels.shape}")
    summary = p.with_name(f"{_map_stem(p)}_summary.json")
    table, nodata = _summary_table(summary) if summary.is_file() else (None, None)
    if table is None:
        table = _palette_table(p) or ClassTable.default(int(labels.max(initial=0)) + 1)
    return [(labels, class_layer_kwargs(table, p.stem, nodata), "labels")]


def _summary_table(path: Path) -> tuple[ClassTable | None, int | None]:
    try:
        data = json.loads(path.read_text())
        classes = data["classes"]
        names = [c["name"] for c in classes]
        colors = [tuple(c["color"]) for c in classes] if all("color" in c for c in classes) else None
        table = ClassTable(tuple(names), colors or ClassTable.default(len(names)).colors)
        return table, data.get("nodata_label")
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def _palette_table(path: Path) -> ClassTable | None:
    """The colours of a paletted PNG/TIFF, named by the default names."""
    import PIL.Image

    try:
        with PIL.Image.open(path) as im:
            palette = im.getpalette() if im.mode == "P" else None
    except OSError:
        return None
    if not palette:
        return None
    colors = np.asarray(palette, np.uint8).reshape(-1, 3)
    k = len(colors)
    return ClassTable(ClassTable.default(k).names, tuple(tuple(int(v) for v in c) for c in colors))


def _label_group(path: Path) -> Any:
    """The zarr group at ``path`` when it holds NGFF labels (``image-label`` + ``multiscales``), else None."""
    if not any((path / f).exists() for f in (".zattrs", "zarr.json")):
        return None
    try:
        import zarr

        group = zarr.open_group(str(path), mode="r")
    except Exception:  # noqa: BLE001  not a zarr group we can read: another reader's file
        return None
    attrs = dict(group.attrs)
    attrs = attrs.get("ome", attrs)
    return group if "image-label" in attrs and "multiscales" in attrs else None


def read_labels_zarr(path: str | list[str]) -> list[tuple]:
    """OME-Zarr labels as a multiscale Labels layer (lazy: napari reads the chunks on screen), with the class
    names (``properties``) and colours (``colors``) of the NGFF metadata and its pixel size as the scale."""
    p = Path(path[0] if isinstance(path, list) else path)
    group = _label_group(p)
    if group is None:
        raise UnetsegError(f"{p}: not an OME-Zarr labels group (no image-label/multiscales metadata)")
    attrs = dict(group.attrs)
    attrs = attrs.get("ome", attrs)
    meta = attrs["image-label"]
    datasets = attrs["multiscales"][0]["datasets"]
    levels = [group[d["path"]] for d in datasets]
    colors = {int(c["label-value"]): tuple(int(v) for v in c["rgba"][:3]) for c in meta.get("colors", [])}
    names = {int(c["label-value"]): str(c.get("class", c["label-value"])) for c in meta.get("properties", [])}
    k = max([*colors, *names, 0]) + 1
    defaults = ClassTable.default(k)
    table = ClassTable(tuple(names.get(i, defaults.names[i]) for i in range(k)),
                       tuple(colors.get(i, defaults.colors[i]) for i in range(k)))
    scale = next((t["scale"] for t in datasets[0].get("coordinateTransformations", []) if t["type"] == "scale"),
                 None)
    extra = {"scale": tuple(scale)} if scale else {}
    name = p.name.removesuffix(".zarr").removesuffix(".ome")
    return [(levels if len(levels) > 1 else levels[0],
             class_layer_kwargs(table, name, None, multiscale=len(levels) > 1, **extra), "labels")]


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer: a Labels layer as a training mask, a TIFF of class ids whose unlabelled pixels are
    :data:`UNLABELLED`, recorded as its GDAL_NODATA (which ``unetseg train`` ignores; a PNG could not say so). A
    painted layer (0 = not labelled) is shifted to class ids; a class-coded one (a corrected segmentation) is
    kept."""
    from ..io.maps import write_index

    p = Path(path)
    if p.suffix.lower() not in (".tif", ".tiff"):
        raise UnetsegError(f"{p}: save a training mask as .tif (its unlabelled pixels are the TIFF's nodata)")
    mask, _ = training_mask(np.asarray(data[0] if meta.get("multiscale") else data), meta.get("metadata"),
                            meta.get("name", p.stem))
    write_index(p, mask, nodata=UNLABELLED)
    return [os.fspath(p)]
