"""``unetseg evaluate``: score a checkpoint on a config's validation split or on image/mask folders."""
from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UnetsegError
from ..tiling.options import int_or_auto
from .common import add_engine_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("evaluate", help="score a checkpoint (per-class IoU/Dice, mIoU, accuracy)",
                              description="Evaluate a checkpoint on the validation split of a config, or on a "
                                          "folder of images and masks, by overlap-tile inference of whole images.")
    evaluate.add_argument("--checkpoint", required=True, nargs="+", metavar="CKPT",
                          help="checkpoint written by training (best.pt/last.pt), or several (their ensemble is "
                               "scored), or a folds folder (train --folds): each fold's best.pt scored on its own "
                               "validation part of the data, then the folds' mean, spread and pooled scores")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="YAML run config whose validation split is scored")
    source.add_argument("--images", help="folder of images (needs --masks)")
    evaluate.add_argument("--masks", help="folder of masks paired with --images by file stem")
    evaluate.add_argument("--tile-size", default="auto",
                          help="tile side or 'auto' (default: auto; for a folds folder: the folds' train.val_tile_size)")
    add_engine_argument(evaluate)
    evaluate.add_argument("--min-object-size", type=int, default=None, metavar="PX",
                          help="on instance data: predicted objects smaller than PX pixels are dropped (default: the "
                               "size tuned on the run's validation images, else 0)")
    evaluate.add_argument("--seed-level", type=int, default=None, metavar="L",
                          help="distance-target models: pixels of level >= L seed objects (default: the level tuned on "
                               "the run's validation images, else the middle level)")
    evaluate.add_argument("--seed-height", type=int, default=None, metavar="H",
                          help="distance-target models: the tops of domes at least H levels high seed objects "
                               "(h-maxima), instead of a seed level (default: as tuned on the run's validation images)")


def format_scores(scores: dict[str, Any], class_names: Sequence[str]) -> str:
    """A plain-text table: per-class IoU and Dice, then mIoU, mean Dice and pixel accuracy."""
    width = max([len(n) for n in class_names] + [5])
    lines = [f"{'class':<{width}}  {'IoU':>7}  {'Dice':>7}"]
    for name, iou, dice in zip(class_names, scores["iou"], scores["dice"], strict=True):
        fmt = lambda v: "    n/a" if math.isnan(v) else f"{v:7.4f}"  # noqa: E731
        lines.append(f"{name:<{width}}  {fmt(iou)}  {fmt(dice)}")
    lines.append(f"mIoU {scores['miou']:.4f}   mean Dice {scores['mdice']:.4f}   "
                 f"pixel accuracy {scores['accuracy']:.4f}   ({scores['pixels']} labelled pixels)")
    found = scores.get("objects")
    if found is not None:
        ap = "   ".join(f"AP@{t:g} {v:.4f}" for t, v in found["ap"].items())
        lines.append(f"objects: {ap}   PQ {found['pq']:.4f}   count error {found['count_error']:.4f}   "
                     f"({found['n_pred']} predicted, {found['n_true']} true)")
    return "\n".join(lines)


def volume_folder(folder: str) -> bool:
    """Whether ``folder`` holds NIfTI volumes (and no 2D images)."""
    from ..io.images import is_image_file
    from ..io.nifti import is_nifti

    files = [f for f in Path(folder).iterdir() if not f.name.startswith(".")] if Path(folder).is_dir() else []
    return any(is_nifti(f) for f in files) and not any(is_image_file(f) for f in files)


def _evaluate_volumes(model: Any, args: argparse.Namespace) -> int:
    """Score a 3D checkpoint on NIfTI volumes paired with label volumes by stem (``--images``/``--masks``), or on a
    config's validation volumes (``--config``): per-class IoU and Dice of each volume, their mean over the
    volumes, and the scores of all voxels pooled. Volumes are read and checked as for training
    (:func:`unetseg.data.volume_folder.load_volume_folder`: a mask on another grid, with non-integer values or
    class ids the model lacks is a one-line error naming the file)."""
    from ..config import load_config
    from ..data.volume_folder import load_volume_folder
    from ..training.datasets import load_volume_splits
    from ..training.evaluate import mean_over_items, score_images

    if model.spatial_dims != 3:
        what = f"--images {args.images}" if args.images else f"--config {args.config}"
        raise UnetsegError(f"{what}: volumes need a 3D checkpoint; this model is 2D")
    if args.config:
        _, val = load_volume_splits(load_config(args.config, []).data)
        if not len(val):
            raise UnetsegError(f"{args.config}: the config has no validation volumes")
        items, names = list(zip(val.images, val.masks, strict=True)), list(val.info.get("stems", []))
        ignore_index, source = val.info.get("ignore_index", model.meta.ignore_index), f"{len(items)} validation volume(s) of {args.config}"
    else:
        found, _ = load_volume_folder(args.images, args.masks, classes=model.class_table,
                                      ignore_index=model.meta.ignore_index, class_values=model.meta.class_values)
        items, names = [(it.image, it.mask) for it in found], [str(it.image_path) for it in found]
        ignore_index, source = model.meta.ignore_index, f"{len(items)} volume(s) in {os.fspath(args.images)}"
    names = names or [f"volume {i}" for i in range(len(items))]
    overall = score_images(model, items, num_classes=model.num_classes, ignore_index=ignore_index,
                           tile_size=int_or_auto(args.tile_size, "--tile-size"), engine=args.engine, names=names,
                           progress=True, per_item=True)
    for scores, name in zip(overall["items"], names, strict=True):
        print(f"{name}:")
        print(format_scores(scores, model.class_table.names))
    print(f"mean over the {len(items)} volumes (each volume's scores averaged):")
    print(format_scores(mean_over_items(overall["items"]), model.class_table.names))
    print(f"{' + '.join(args.checkpoint)} on {source} (all voxels pooled):")
    print(format_scores(overall, model.class_table.names))
    return 0


def _evaluate_folds(args: argparse.Namespace) -> int:
    """A folds folder (``train --folds K``): fold i's best.pt scored on the validation part of fold i of K (never
    on data it trained on) of the --config's data, or of --images/--masks split as the folds split theirs (each
    fold's config.yaml); pixel scores, and object scores on instance data; then the folds' table (mean, spread,
    pooled) as ``train --folds`` prints it."""
    from ..config import load_config, validate_config
    from ..models import load_model
    from ..training.folds import fold_record, folds_table, validation_amp_of

    root = Path(args.checkpoint[0])
    runs = sorted(path.parent for path in root.glob("fold*/best.pt"))
    configs = []
    for run in runs:
        if not (run / "config.yaml").is_file():
            raise UnetsegError(f"{run / 'config.yaml'}: missing; a fold's config says which part of the data it "
                               "validates on")
        configs.append(load_config(run / "config.yaml", []))
    k = configs[0].data.folds
    order = [c.data.fold for c in configs]
    if k is None or sorted(o for o in order if o is not None) != list(range(k)):
        raise UnetsegError(f"--checkpoint {root}: holds the best.pt of fold(s) {order} of {k}; finish the "
                           "cross-validation (the same train --folds command) first")
    runs = [run for _, run in sorted(zip(order, runs, strict=True))]  # type: ignore[type-var]
    if args.config:
        config = load_config(args.config, [])
        source = f"the folds of {args.config}'s data"
    else:
        data = configs[0].model_dump(mode="json")
        data["data"].update(source="folder", sample=None, sample_options={}, images=os.fspath(args.images),
                            masks=os.fspath(args.masks))
        config = validate_config(data, f"{runs[0] / 'config.yaml'} with --images/--masks")
        source = f"the folds of {args.images}"
    tile = config.train.val_tile_size if args.tile_size == "auto" else int_or_auto(args.tile_size, "--tile-size")
    models = [load_model(run / "best.pt") for run in runs]
    record = fold_record(config, root, models, [str(r) for r in runs], tile_size=tile,
                         amp=validation_amp_of(config), engine=args.engine, min_size=args.min_object_size,
                         progress=True)
    print(f"{root}: each fold's best.pt on its own validation part of {source}:")
    print(folds_table(record))
    return 0


def _trained_mask_coding(model: Any) -> dict[str, Any]:
    """How the masks the checkpoint trained on coded classes (``mask_mode`` "color" with its ``ignore_color``; else
    index masks), from its run config, so ``--images/--masks`` folders of the same kind read as training read them."""
    record = model.meta.training
    data = ((record.config or {}).get("data") or {}) if record is not None else {}
    if data.get("mask_mode") != "color":
        return {}
    ignore = data.get("ignore_color")
    return {"mask_mode": "color", "ignore_color": None if ignore is None else tuple(ignore)}


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..data.folder import InstanceMasks, PixelRules, load_folder
    from ..data.nodata import Nodata
    from ..models import load_model
    from ..models.ensemble import as_model, checkpoint_paths
    from ..objects.separate import label_objects
    from ..outputs.objects import object_rules
    from ..training.datasets import load_splits
    from ..training.evaluate import score_images

    if args.images and not args.masks:
        raise UnetsegError("--images needs --masks (a folder of masks paired by file stem)")
    if args.masks and not args.images:
        raise UnetsegError("--masks needs --images")
    if len(args.checkpoint) == 1 and any(Path(args.checkpoint[0]).glob("fold*/best.pt")):
        return _evaluate_folds(args)
    model = as_model([load_model(path) for path in checkpoint_paths(args.checkpoint)])
    instances, unscored = None, None
    if (args.images and volume_folder(args.images)) or (args.config and model.spatial_dims == 3):
        return _evaluate_volumes(model, args)
    if args.config:
        cfg = load_config(args.config, [])
        _, val = load_splits(cfg.data)
        if not len(val):
            raise UnetsegError(f"{args.config}: the config has no validation images")
        items = list(zip(val.images, val.masks, strict=True))
        instances = val.instances if cfg.data.mask_mode == "instances" else None
        unscored = val.info.get("unscored") if instances is not None else None
        names = [f"{args.config} validation image {i}" for i in range(len(val))]
        ignore_index = val.info.get("ignore_index", cfg.data.ignore_index)
        source = f"{len(items)} validation volume(s) of {args.config}"
    else:
        ignore_index = model.meta.ignore_index
        trained = model.meta.nodata or Nodata()
        rules = PixelRules(trained.setting, trained.rule, None, model.meta.class_values)
        record = model.meta.instances
        instance_masks = None if record is None else InstanceMasks(record.layout(
            tuple(model.class_table.names[c] for c in record.object_classes)))
        coded = _trained_mask_coding(model)
        found, _, ignore_index = load_folder(args.images, args.masks, classes=model.class_table,
                                             ignore_index=ignore_index, rules=rules, instance_masks=instance_masks,
                                             **coded)
        items, names = [(it.image, it.mask) for it in found], [str(it.mask_path) for it in found]
        instances = None if record is None else [it.instances for it in found]
        source = f"{len(items)} image(s) in {os.fspath(args.images)}"
    rule = object_rules(model, args.min_object_size, args.seed_level, args.seed_height)
    scores = score_images(model, items, num_classes=model.num_classes, ignore_index=ignore_index,
                          tile_size=int_or_auto(args.tile_size, "--tile-size"), engine=args.engine, names=names,
                          progress=True,
                          instances=instances, objects_of=lambda labels: label_objects(labels, rule, model.num_classes)[0],
                          unscored=unscored)
    print(f"{' + '.join(args.checkpoint)} on {source}:")
    print(format_scores(scores, model.class_table.names))
    return 0
