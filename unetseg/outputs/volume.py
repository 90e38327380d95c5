"""Segment one volume file (NIfTI, TIFF z-stack, OME-Zarr) with a 3D model into its outputs, every one on the
input's voxel grid and with its geometry, streamed slab by slab along D:

- ``nifti``: labels as ``.nii.gz``; for NIfTI inputs with the input's header (affine, qform/sform and their codes,
  spacing, units); for other inputs with the affine ``diag(dx, dy, dz)`` (they carry no orientation; the summary
  says so);
- ``tiff``: an OME-TIFF z-stack (axes ZYX, uint8/uint16) with the input's spacing as PhysicalSizeZ/Y/X;
- ``ome-zarr``: OME-Zarr labels (class names and colours) whose level-0 ``scale`` is the input's spacing, with a
  pyramid down-sampled in-plane only while z is more than twice as coarse (:func:`unetseg.io.ome_zarr_labels.
  level_factors`);
- ``summary``: voxels (and millilitres, when the spacing's unit is known) per class, the spacing and its unit.

The volume half of ``unetseg predict``; the image half is :mod:`unetseg.outputs.predict`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.labels import map_dtype
from ..errors import UnetsegError
from ..io import maps
from ..io.nifti import NiftiVolume, label_writer
from ..io.volume import Volume, millilitres_per_voxel, open_volume
from ..io.volume_tiff import OmeTiffSlabWriter
from ..models.base import SegmentationModel
from ..tiling.options import DEFAULTS, TileOptions
from ..tiling.result import TiledResult
from ..tiling.volume import plan_volume, run_volume, spatial_dims
from .kinds import Finished, KindWriter, OutputKind, check_formats, register_output_kind
from .manifest import resumable, run_identity, write_manifest
from .outputset import Done
from .summary import summary

ZARR_CHUNKS = (16, 256, 256)  # (D, H, W) chunks of OME-Zarr labels (capped by the volume's sides)


@register_output_kind("nifti", part="labels", suffixes=(".nii.gz", ".nii.gz"), needs="labels", dims=(3,),
                      help="volumes: labels as .nii.gz on the input's grid (a NIfTI input's affine, qform/sform and "
                           "spacing; diag(dx, dy, dz) for other inputs)")
class NiftiLabelsWriter(KindWriter):
    """The ``nifti`` kind: its file is written slab by slab by :class:`unetseg.io.nifti.NiftiSlabWriter`."""

    def finish(self, done: Finished) -> list[Path]:
        return [self.path]


@register_output_kind("tiff", part="labels", suffixes=(".ome.tif", ".ome.tif"), needs="labels", dims=(3,),
                      help="volumes: labels as an OME-TIFF z-stack (ZYX, uint8/uint16) with the input's "
                           "PhysicalSizeZ/Y/X")
class TiffLabelsWriter(KindWriter):
    """The ``tiff`` kind: its file is written slab by slab by :class:`unetseg.io.volume_tiff.OmeTiffSlabWriter`."""

    def finish(self, done: Finished) -> list[Path]:
        return [self.path]


class _ZarrSlabs:
    """An :class:`~unetseg.io.ome_zarr_labels.OmeZarrLabelsWriter` behind the slab-writer interface
    (``w[z0:z1] = slab``, ``close()``, ``abort()``)."""

    def __init__(self, path: Path, volume: Volume, dtype: np.dtype, model: SegmentationModel,
                 resume: dict[str, Any] | None = None) -> None:
        from ..io.ome_zarr_labels import OmeZarrLabelsWriter

        shape = tuple(int(n) for n in volume.shape[:3])
        table = model.class_table
        self.path = path
        self._writer = OmeZarrLabelsWriter(
            path, shape, dtype, tuple(min(c, n) for c, n in zip(ZARR_CHUNKS, shape, strict=True)),
            class_names=list(table.names), colors=table.palette(), pixel_size=tuple(volume.spacing),
            unit=volume.unit, resume=resume).__enter__()
        self.journal = self._writer.journal

    def __setitem__(self, key: slice, slab: np.ndarray) -> None:
        self._writer[key] = slab

    def close(self) -> Path:
        self._writer.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        error = UnetsegError("writing stopped before the volume was complete")
        self._writer.__exit__(UnetsegError, error, None)


class _Fanout:
    """Hands each finished slab to every writer (``out[z0:z1] = slab``)."""

    def __init__(self, writers: list[Any]) -> None:
        self.writers = writers

    def __setitem__(self, key: slice, slab: np.ndarray) -> None:
        for writer in self.writers:
            writer[key] = slab


def _slab_writer(kind: OutputKind, stem: Path, volume: Volume, dtype: np.dtype, model: SegmentationModel,
                 resume: dict[str, Any] | None) -> Any:
    path = kind.path(stem, "stream")
    if kind.name == "nifti":
        return label_writer(path, volume, dtype)
    if kind.name == "tiff":
        return OmeTiffSlabWriter(path, volume.shape[:3], dtype, volume.spacing, volume.unit)
    return _ZarrSlabs(path, volume, dtype, model, resume)


def predict_volume_file(model: SegmentationModel, path: Path, stem: Path, formats: list[str], *,
                        options: TileOptions = DEFAULTS, done: Done | None = None) -> list[Path]:
    """Segment the volume ``path`` (NIfTI, TIFF z-stack or OME-Zarr: :func:`unetseg.io.volume.open_volume`) with the
    3D ``model`` and write each requested kind (``nifti``, ``tiff``, ``ome-zarr``, ``summary``) as
    ``<stem>_<part><suffix>``; returns the written paths. Labels never sit whole in memory: each slab goes to every
    label file as it completes. Nothing is left at the final names if a step fails.

    OME-Zarr labels (with at most a summary beside them: :func:`unetseg.outputs.manifest.resumable`) are written
    resumably: each finished slab is recorded, and a run killed part-way is taken up by the next run with the same
    input, model and settings, which computes only the slabs not recorded (labels and summary equal an
    uninterrupted run's)."""
    kinds = check_formats(formats, dims=3)
    if spatial_dims(model) != 3:
        raise UnetsegError(f"{path}: a volume needs a 3D model (spatial_dims=3); this checkpoint's model is 2D")
    volume = open_volume(path)
    plan = plan_volume(model, volume, replace(options, output="labels"))
    dtype = map_dtype(model.num_classes, plan.nodata_label)
    resume = run_identity(path, formats, options, model) if resumable(formats) else None
    writers: list[Any] = []
    try:
        for kind in kinds:
            if kind.name != "summary":
                writers.append(_slab_writer(kind, stem, volume, dtype, model, resume))
        journal = next((w.journal for w in writers if isinstance(w, _ZarrSlabs)), None)
        result = run_volume(model, volume, plan, out=_Fanout(writers) if writers else None,
                            progress=True, journal=journal).check_valid()
        written = []
        while writers:  # a writer whose close() fails has removed its own temporary
            written.append(writers.pop(0).close())
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    if any(k.name == "summary" for k in kinds):
        written.append(maps.write_json(next(k for k in kinds if k.name == "summary").path(stem, "stream"),
                                       volume_summary(model, volume, result, plan.nodata_label, options, path,
                                                      formats=[k.name for k in kinds])))
    if done is not None:
        write_manifest(stem, done.input, done.key, written)
    return written


def volume_summary(model: SegmentationModel, volume: Volume, result: TiledResult, nodata_label: int | None,
                   options: TileOptions, path: Path, formats: Sequence[str] = ()) -> dict:
    """The image summary's fields for a volume, plus its depth, spacing (dz, dy, dx), the spacing's unit, each
    class's volume in millilitres (when the unit is known) and notes on the geometry the ``formats`` written
    keep (default: none named)."""
    settings = {**options.recorded(), "input": str(path), **result.report.as_dict()}
    data = summary(result, volume.shape[1:3], model.class_table.names, settings, nodata_label,
                   model.class_table.colors)
    voxel_ml = millilitres_per_voxel(tuple(volume.spacing), volume.unit)
    if voxel_ml is not None:
        for entry in data["classes"]:
            entry["millilitres"] = entry["pixels"] * voxel_ml
    notes = []
    if volume.unit is None:
        notes.append("the input gives no voxel size unit: spacing as read (1.0 where it says nothing), unit unknown, "
                     "no millilitres")
    if not isinstance(volume, NiftiVolume) and "nifti" in formats:
        notes.append("the input has no orientation: the nifti output's affine is diag(dx, dy, dz)")
    if isinstance(volume, NiftiVolume) and {"tiff", "ome-zarr"} & set(formats):
        notes.append("tiff and ome-zarr outputs keep the voxel grid, axis order and spacing, not the NIfTI "
                     "orientation (affine); the nifti output keeps it")
    return {"depth": int(volume.shape[0]), "spacing": list(volume.spacing), "unit": volume.unit,
            **({"notes": notes} if notes else {}), **data}
