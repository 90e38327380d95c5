"""Segment one volume file (NIfTI) with a 3D model into its outputs: labels as NIfTI on the input's grid (affine,
qform/sform, spacing and axis order kept), streamed slab by slab, and the summary (voxels and millilitres per
class). The volume half of ``unetseg predict``; the image half is :mod:`unetseg.outputs.predict`.
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from ..data.labels import map_dtype
from ..errors import UnetsegError
from ..io import maps
from ..io.nifti import NiftiVolume, label_writer, open_nifti
from ..models.base import SegmentationModel
from ..tiling.options import DEFAULTS, TileOptions
from ..tiling.volume import plan_volume, run_volume, spatial_dims
from .kinds import Finished, KindWriter, check_formats, register_output_kind
from .manifest import write_manifest
from .outputset import Done
from .summary import summary


@register_output_kind("nifti", part="labels", suffixes=(".nii.gz", ".nii.gz"), needs="labels", dims=(3,),
                      help="volumes: labels as .nii.gz on the input's grid (its affine, qform/sform and spacing)")
class NiftiLabelsWriter(KindWriter):
    """The ``nifti`` kind: its file is written slab by slab by :class:`unetseg.io.nifti.NiftiSlabWriter`."""

    def finish(self, done: Finished) -> list[Path]:
        return [self.path]


def predict_volume_file(model: SegmentationModel, path: Path, stem: Path, formats: list[str], *,
                        options: TileOptions = DEFAULTS, done: Done | None = None) -> list[Path]:
    """Segment the NIfTI volume ``path`` with the 3D ``model`` and write each requested kind (``nifti``,
    ``summary``) as ``<stem>_<part><suffix>``; returns the written paths. Labels never sit whole in memory: each
    slab goes to the compressed file as it completes. Nothing is left at the final names if a step fails."""
    kinds = check_formats(formats, dims=3)
    if spatial_dims(model) != 3:
        raise UnetsegError(f"{path}: a volume needs a 3D model (spatial_dims=3); this checkpoint's model is 2D")
    volume = open_nifti(path)
    plan = plan_volume(model, volume, replace(options, output="labels"))
    dtype = map_dtype(model.num_classes, plan.nodata_label)
    names = [k.name for k in kinds]
    written: list[Path] = []
    sink = None
    if "nifti" in names:
        sink = label_writer(next(k for k in kinds if k.name == "nifti").path(stem, "stream"), volume, dtype)
    try:
        result = run_volume(model, volume, plan, out=sink, progress=True).check_valid()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    if sink is not None:
        written.append(sink.close())
    if "summary" in names:
        written.append(maps.write_json(next(k for k in kinds if k.name == "summary").path(stem, "stream"),
                                       volume_summary(model, volume, result, plan.nodata_label, options, path)))
    if done is not None:
        write_manifest(stem, done.input, done.key, written)
    return written


def volume_summary(model: SegmentationModel, volume: NiftiVolume, result, nodata_label: int | None,
                   options: TileOptions, path: Path) -> dict:
    """The image summary's fields for a volume, plus its depth, spacing and each class's volume in millilitres
    (spacing taken as millimetres, NIfTI's usual unit)."""
    settings = {**options.recorded(), "input": str(path), **result.report.as_dict()}
    data = summary(result, volume.shape[1:3], model.class_table.names, settings, nodata_label,
                   model.class_table.colors)
    voxel_ml = math.prod(volume.spacing) / 1000.0
    for entry in data["classes"]:
        entry["millilitres"] = entry["pixels"] * voxel_ml
    return {"depth": int(volume.shape[0]), "spacing": list(volume.spacing), **data}
