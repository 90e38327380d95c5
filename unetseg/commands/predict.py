"""``unetseg predict``: segment image files/folders with a checkpoint and write segmentation maps.

A batch survives any one bad file: each failure is one line naming the file and the cause, the other
inputs are done, and the exit code is 1. Only a failure that would make every later file fail too (the disk
is full, the output folder is read-only) stops the batch early, said once.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..engines.tta import TTAS
from ..errors import UnetsegError
from ..models.precision import AMP_CHOICES
from ..outputs.objects import POLYGONS
from ..scale.dask import DEFAULT_CHUNK
from ..tiling.options import COMPILE_CHOICES, DEFAULTS
from .common import (
    add_engine_argument,
    background_class,
    band_list,
    comma_list,
    error_line,
    first_line,
    nodata_value,
    torch_device,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..outputs import output_kinds

    predict = sub.add_parser("predict", help="segment images of any size by overlap-tile inference",
                             description="Segment images (files or folders; TIFFs larger than memory are streamed) "
                                         "with a trained checkpoint and write segmentation maps named "
                                         "<input stem>_<format> into the output folder (inputs sharing a stem "
                                         "keep their extension or folder name). A bad input is reported on one "
                                         "line and the others are done; the exit code is then 1.")
    predict.add_argument("--checkpoint", required=True, nargs="+", metavar="CKPT",
                         help="checkpoint written by training (best.pt/last.pt), or several, or a run folder of "
                              "folds (train --folds): an ensemble that averages the members' probabilities; or an "
                              "OpenVINO IR (.xml) that `unetseg export --format openvino[-int8]` wrote")
    predict.add_argument("--input", required=True, nargs="+", metavar="PATH",
                         help="image files and/or folders; with a 3D model, volumes: NIfTI (.nii, .nii.gz), TIFF "
                              "z-stacks (.tif, .tiff, .ome.tif: OME-TIFF, ImageJ) and OME-Zarr (.zarr)")
    predict.add_argument("--output", required=True, metavar="DIR", help="output folder")
    predict.add_argument("--tile-size", default=DEFAULTS.tile_size,
                         help=f"tile side in pixels or 'auto' (default: {DEFAULTS.tile_size})")
    predict.add_argument("--batch-size", default=DEFAULTS.batch_size,
                         help=f"tiles per forward pass or 'auto': 1 on CPU, 4 on GPU (default: {DEFAULTS.batch_size})")
    predict.add_argument("--halo", default=DEFAULTS.halo, metavar="N|auto|exact",
                         help="context per tile side of same-padding models: pixels, 'exact' (receptive field: "
                              "tiles == whole image) or 'auto' (measured after training, else exact; "
                              f"default: {DEFAULTS.halo})")
    predict.add_argument("--compile", choices=COMPILE_CHOICES, default=DEFAULTS.compile,
                         help="torch.compile the model: auto = when the image is large enough to pay it back "
                              f"(default: {DEFAULTS.compile})")
    predict.add_argument("--tta", choices=["auto", "none", *(t for t in TTAS if t)], default=DEFAULTS.tta,
                         help="test-time augmentation: auto = what training chose for the model's objects on its "
                              f"validation images, else none (default: {DEFAULTS.tta})")
    predict.add_argument("--format", default=None, metavar="LIST",
                         help=f"comma list of {','.join(output_kinds())} (default: ome-zarr for zarr inputs and "
                              "with --dask, else index,palette; with a 3D model the inputs' own format, nifti, tiff "
                              "or ome-zarr, else nifti; volumes take nifti,tiff,ome-zarr,summary)")
    predict.add_argument("--cog", action=argparse.BooleanOptionalAction, default=None,
                         help="write the TIFF maps of streamed inputs as Cloud Optimized GeoTIFFs (overviews first, "
                              "for range reads from object storage; needs rasterio: unetseg[geo]); --no-cog: plain "
                              "tiled TIFFs (default: COGs for GeoTIFF inputs when rasterio is installed)")
    predict.add_argument("--min-object-size", type=int, default=None, metavar="PX",
                         help="objects (instances, objects, geojson, gpkg) smaller than PX pixels are dropped "
                              "(default: the size tuned on the run's validation images, else 0)")
    predict.add_argument("--seed-level", type=int, default=None, metavar="L",
                         help="models trained on distance targets: pixels of level >= L seed objects (default: the "
                              "level tuned on the run's validation images, else the middle level)")
    predict.add_argument("--seed-height", type=int, default=None, metavar="H",
                         help="models trained on distance targets: the tops of domes at least H levels high seed "
                              "objects (h-maxima), instead of a seed level (default: as tuned on the run's "
                              "validation images)")
    predict.add_argument("--split-touching", type=int, nargs="?", const=3, default=0, metavar="PX",
                         help="cut touching objects of plain class maps apart: erode each class by PX (default 3 when "
                              "given; models trained on instance masks separate their objects themselves)")
    predict.add_argument("--polygons", choices=POLYGONS, default="objects",
                         help="geojson/gpkg outline the objects, or the class regions as they are (default: objects)")
    predict.add_argument("--background", default="0", metavar="N|none",
                         help="the class that makes no objects (default: 0; none: every class makes objects)")
    predict.add_argument("--nodata", default=DEFAULTS.nodata, metavar="V",
                         help="input nodata value: a number, 'none' (only NaN/Inf are invalid) or 'auto' (the "
                              f"file's GDAL_NODATA tag, else the checkpoint's; default: {DEFAULTS.nodata})")
    predict.add_argument("--nodata-label", type=int, default=DEFAULTS.nodata_label, metavar="N",
                         help="label of invalid pixels in the maps (default: 255 for uint8 maps, 65535 for uint16)")
    predict.add_argument("--bands", default=None, metavar="R,G,B",
                         help="image bands the overlay shows, from 0 (default: the checkpoint's display.bands, "
                              "else the first three, or band 0)")
    predict.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    predict.add_argument("--amp", choices=AMP_CHOICES, default=DEFAULTS.amp,
                         help="mixed precision: auto = fp16 on CUDA, bf16 on AMX/AVX512-BF16 CPUs, else off; "
                              "int8 = convolutions quantised on the OpenVINO engine, calibrated on the first image's "
                              f"tiles, refused under 99.5%% agreement with fp32 (default: {DEFAULTS.amp})")
    add_engine_argument(predict)
    predict.add_argument("--level", type=int, default=None, metavar="N",
                         help="pyramid level of pyramidal TIFF, whole-slide and OME-Zarr inputs, 0 = full size "
                              "(default: the level nearest the pixel size the checkpoint records, else 0)")
    predict.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                         help="segment the pyramid level whose pixel size (from the file's metadata) is nearest UM")
    predict.add_argument("--dask", default=None, metavar="local:N|ADDRESS",
                         help="spread each image's output chunks over Dask workers: local:N starts N worker processes "
                              "here, tcp://host:8786 uses a running cluster (its workers must see the checkpoint and "
                              "the inputs); writes ome-zarr (and summary) outputs")
    predict.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, metavar="PX",
                         help=f"with --dask: output chunk side, rounded to whole tiles (default: {DEFAULT_CHUNK})")
    predict.add_argument("--shard", default=None, metavar="I/N",
                         help="segment only shard I (0-based) of N of the sorted inputs; under torchrun the shard "
                              "comes from RANK/WORLD_SIZE. Inputs whose outputs are complete (<stem>.done.json) are "
                              "skipped, so a re-run resumes")


def run(args: argparse.Namespace) -> int:
    """Returns 0, or 1 when any input failed (each reported on one line)."""
    from ..io.atomic import remove_stale_temporaries
    from ..io.cog import require_cog
    from ..io.nifti import is_nifti
    from ..io.zarr_io import is_zarr
    from ..models import load_model
    from ..models.ensemble import as_model, checkpoint_paths
    from ..models.geometry import parse_halo
    from ..outputs import check_formats, output_kinds
    from ..outputs.batch import Shard, find_inputs
    from ..outputs.manifest import file_state, is_done
    from ..outputs.naming import output_stems
    from ..outputs.objects import ObjectOptions
    from ..scale.dask import dask_client
    from ..tiling.options import TileOptions, int_or_auto
    from ..tiling.volume import spatial_dims

    files = find_inputs(args.input)
    if not files:
        raise UnetsegError(f"--input {' '.join(args.input)}: no image files found")
    volumes = [f for f in files if is_nifti(f)]
    if volumes and args.dask:
        raise UnetsegError(f"--dask spreads images over workers; {volumes[0]} is a volume (run it without --dask)")
    if args.format is not None:
        check_formats(comma_list("--format", args.format, output_kinds()), dask=args.dask is not None)  # early
    if args.cog:
        require_cog("--cog")
    shard = Shard.parse(args.shard) if args.shard else Shard.from_env()
    device = shard.device(torch_device(args.device))
    checkpoints = checkpoint_paths(args.checkpoint)
    model = as_model([load_model(path, device=device) for path in checkpoints])
    three_d = spatial_dims(model) == 3
    if three_d and args.dask:
        raise UnetsegError("--dask spreads images over workers; the checkpoint's model is 3D (run volumes without "
                           "--dask)")
    default = (volume_format(files) if three_d
               else "ome-zarr" if args.dask or all(is_zarr(f) for f in files)
               else "nifti" if len(volumes) == len(files) else "index,palette")
    formats = comma_list("--format", args.format or default, output_kinds())
    check_formats(formats, dask=args.dask is not None)  # once, before any file
    out_dir = Path(args.output)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UnetsegError(f"--output {out_dir}: cannot create folder ({err.strerror})") from None
    stems = output_stems(sorted(files, key=str), out_dir)  # every shard names every input alike
    mine = shard.select(files)
    if shard.count == 1:
        for folder in {out_dir, *(s.parent for s in stems.values())}:
            remove_stale_temporaries(folder)  # left by a killed earlier run (other shards may be writing now)
    options = TileOptions(tile_size=int_or_auto(args.tile_size, "--tile-size"),
                          batch_size=int_or_auto(args.batch_size, "--batch-size"),
                          tta=None if args.tta == "none" else args.tta,
                          halo=parse_halo(args.halo, "--halo"), compile=args.compile,
                          amp=False if args.amp == "off" else args.amp, device=device,
                          nodata=nodata_value(args.nodata), nodata_label=args.nodata_label, engine=args.engine)
    bands = band_list(args.bands)
    objects = ObjectOptions(args.min_object_size, args.split_touching, background_class(args.background),
                            args.polygons, args.seed_level, args.seed_height)
    objects.rules(model)  # a bad --background or --split-touching is one line, before any file
    # what makes an earlier output the same as this run's (the device index does not: ranks may swap GPUs)
    states = [file_state(path) for path in checkpoints]
    run_key = {"checkpoint": states[0] if len(states) == 1 else states, "formats": formats, "level": args.level,
               "pixel_size": args.pixel_size, **options.recorded(), "compile": options.compile,
               "nodata": options.nodata, "nodata_label": options.nodata_label, "bands": bands, "device": device.type,
               "objects": vars(objects), "cog": args.cog}
    todo = [f for f in mine if not is_done(stems[f], f, run_key)]
    if len(todo) < len(mine):
        tqdm.write(f"unetseg predict: {len(mine) - len(todo)} input(s) already done, skipped", file=sys.stderr)
    with dask_client(args.dask) as client:
        shape = getattr(client, "unetseg_shape", None)
        if shape is not None:
            tqdm.write(f"unetseg predict: --dask {args.dask}: {shape.describe()}", file=sys.stderr)
        # workers load a checkpoint path once each; an ensemble travels as one model object
        shipped = checkpoints[0] if len(checkpoints) == 1 else model
        return _predict_all(todo, model, shipped, stems, formats, options, bands, objects, client, args, run_key)


def volume_format(files: list[Path]) -> str:
    """The default ``--format`` of a 3D model's inputs: their own format when they share one (nifti, tiff,
    ome-zarr), else nifti."""
    from ..io.nifti import is_nifti
    from ..io.zarr_io import is_zarr

    kinds = {"nifti" if is_nifti(f) else "ome-zarr" if is_zarr(f) else "tiff" for f in files}
    return kinds.pop() if len(kinds) == 1 else "nifti"


def _predict_all(files: list[Path], model: Any, shipped: Any, stems: dict[Path, Path], formats: list[str],
                 options: Any, bands: list[int] | None, objects: Any, client: Any, args: argparse.Namespace,
                 run_key: dict) -> int:
    from ..io.atomic import is_fatal
    from ..io.levels import input_level
    from ..io.nifti import is_nifti
    from ..io.volume import is_volume_file
    from ..outputs import Done, predict_file, predict_file_dask
    from ..outputs.volume import predict_volume_file
    from ..tiling.volume import spatial_dims

    failed = done = 0
    for path in tqdm(files, desc="images", unit="file", disable=len(files) < 2):
        try:
            if is_nifti(path) or spatial_dims(model) == 3:  # a TIFF or zarr is a volume when the model is 3D
                predict_volume_file(model, path, stems[path], formats, options=options, done=Done(path, run_key))
                done += 1
                continue
            if is_volume_file(path):
                raise UnetsegError(f"{path}: a volume (it has a Z axis); the checkpoint's model is 2D and segments "
                                   "images (a 3D checkpoint segments volumes)")
            level = input_level(path, args.level, args.pixel_size, model.meta.pixel_size_um())
            finished = Done(path, run_key)
            if client is not None:
                predict_file_dask(model, shipped, path, stems[path], formats, client=client, level=level,
                                  chunk=args.chunk, options=options, done=finished, objects=objects)
            else:
                predict_file(model, path, stems[path], formats, level=level, options=options, bands=bands,
                             done=finished, objects=objects, cog=args.cog)
            done += 1
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001  one bad file must not stop the batch, nor show a traceback
            failed += 1
            message = first_line(err) if isinstance(err, UnetsegError) else f"{type(err).__name__}: {first_line(err)}"
            error_line("predict", message if str(path) in message else f"{path}: {message}")
            if is_fatal(err):
                left = len(files) - done - failed
                error_line("predict", f"stopping: every later output would fail too ({left} file(s) not done)")
                failed += left
                break
    if failed:
        tqdm.write(f"unetseg predict: {failed} of {len(files)} file(s) failed, {done} done", file=sys.stderr)
    return 1 if failed else 0
