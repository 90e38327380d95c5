"""k-fold cross-validation (``train --folds K``): one run folder per fold, then ``cv.json``.

``OUT/fold0 .. fold{K-1}`` are ordinary run folders (each validates on its fold, :mod:`unetseg.data.folds`);
``OUT/cv.json`` holds each fold's validation score of its best.pt (pixel scores; on instance data also object
scores: AP@0.5, AP@0.75, PQ, count error), their mean and spread (max - min) across folds, the pooled score (the
folds' confusion matrices summed and their object matches counted together: every item scored once, by the
model that did not train on it) and, for built-in samples,
the score on the sample's held-out validation images of every fold and of their ensemble. A killed
cross-validation resumes where it stopped: finished folds are kept, a started one resumes from its last.pt.
``unetseg predict --checkpoint OUT`` runs the folds' ensemble.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import RunConfig, validate_config
from ..errors import UnetsegError
from ..io.maps import write_json
from ..metrics import ConfusionMatrix, ObjectScores, spread_of
from ..models import load_model
from ..models.ensemble import as_model
from .checkpointing import LAST_NAME
from .datasets import load_splits
from .evaluate import score_images
from .finetune import with_parent_architecture
from .setup import default_run_dir, model_context, training_precision, validation_amp
from .trainer import RunResult, train

CV_NAME = "cv.json"


@dataclass
class FoldsResult:
    """What :func:`train_folds` returns: the folder, each fold's run and the cross-validation record."""

    run_dir: Path
    folds: list[RunResult]
    cv: dict[str, Any]


def fold_config(config: RunConfig, fold: int, folds: int) -> RunConfig:
    data = config.model_dump(mode="json")
    data["data"].update(folds=folds, fold=fold)
    return validate_config(data, "fold config")


def check_fold_count(folds: int) -> None:
    """A one-line UnetsegError unless ``folds`` (``--folds``) is at least 2."""
    if folds < 2:
        raise UnetsegError(f"--folds {folds}: cross-validation needs at least 2 folds")


def train_folds(config: RunConfig, out_dir: str | os.PathLike | None, folds: int, *, name: str = "run",
                progress: bool = True) -> FoldsResult:
    """Train ``folds`` runs, fold i validating on the i-th part of the data, into ``OUT/fold{i}``; write cv.json.

    Raises UnetsegError (one line) when the data has fewer items than folds, or ``OUT`` already holds a finished
    cross-validation."""
    check_fold_count(folds)
    if config.data.folds is not None:
        raise UnetsegError("data.folds/data.fold are set by --folds; remove them from the config")
    out = Path(out_dir) if out_dir else default_run_dir(name)
    if (out / CV_NAME).exists():
        raise UnetsegError(f"{out} already holds a finished cross-validation ({CV_NAME}); choose another --out")
    results = []
    for i in range(folds):
        run_dir = out / f"fold{i}"
        started = (run_dir / LAST_NAME).exists()
        if progress:
            print(f"fold {i + 1}/{folds}{' (resumed)' if started else ''}: {run_dir}")
        results.append(train(fold_config(config, i, folds), None if started else run_dir,
                             run_dir if started else None, name=name, progress=progress))
    cv = cross_validation(config, out, results)
    write_json(out / CV_NAME, cv)
    return FoldsResult(out, results, cv)


def object_labeller(model: Any, min_size: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """``class map HxW int -> object ids HxW uint32`` the way ``unetseg predict --format instances`` makes them
    from ``model``'s predictions (its object rule: interior/boundary classes for a model trained on instance
    masks, else connected components; objects under ``min_size`` px dropped; None: the post-processing tuned on the
    run's validation part and stored in its checkpoint, as predict uses it). The one place cross-validation turns
    class maps into objects."""
    from ..objects.separate import label_objects, object_rule

    rule = object_rule(model, min_size=min_size)
    k = int(model.num_classes)
    return lambda labels: label_objects(labels, rule, k)[0]


def _scores(scores: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    out = {"miou": scores["miou"], "accuracy": scores["accuracy"],
           "iou": {n: v for n, v in zip(names, scores["iou"], strict=True)}}
    if "objects" in scores:
        out["objects"] = _objects(scores["objects"])
    return out


def _objects(found: dict[str, Any]) -> dict[str, Any]:
    """ObjectScores.compute() for JSON: AP thresholds as "0.5"-style keys, the raw counts kept for pooling."""
    return {**found, "ap": {f"{t:g}": v for t, v in found["ap"].items()}}


def score_fold(model: Any, fold_cfg: RunConfig, *, tile_size: int | str, amp: str | bool = "auto",
               engine: str = "torch", objects: bool | None = None, min_size: int | None = None,
               progress: bool = False) -> dict[str, Any]:
    """``model`` (one fold's best.pt) scored on the validation part of its fold (``fold_cfg``: the run config with
    ``data.folds``/``data.fold`` set, as in the fold's config.yaml).

    Returns :func:`score_images`'s scores plus ``images`` (how many validation items). On instance data
    (``data.mask_mode: instances``; ``objects`` None = then) the scores hold ``objects`` too: the predicted class
    map of each item made objects by :func:`object_labeller` (objects under ``min_size`` px dropped) and matched to the item's true instances
    (:class:`unetseg.metrics.ObjectScores`). Region folds score each validation block on its own, with its true
    instances cut at the block's edges exactly as the image and the prediction are: an object that a block
    edge cuts counts, in truth and prediction alike, as its part inside the block, and only where that part holds
    at least half of the object (smaller pieces are unscored, :func:`unetseg.data.regions.minor_pieces`: so an
    object that reaches two validation blocks counts once, in the block that holds most of it); the pieces of one
    that the edge cuts apart inside a block, :func:`unetseg.data.regions.cut_pieces`, count as objects of their
    own, as a prediction within the block can only find them. Nothing outside the block is seen or scored.
    """
    cfg = with_parent_architecture(fold_cfg)
    _, val = load_splits(cfg.data, gap=model_context(model))
    if not len(val.images):
        raise UnetsegError(f"fold {cfg.data.fold} of {cfg.data.folds} has no validation images")
    with_objects = (cfg.data.mask_mode == "instances") if objects is None else objects
    instances = val.instances if with_objects else None
    unscored = val.info.get("unscored") if with_objects else None
    if with_objects and instances is None:
        raise UnetsegError(f"fold {cfg.data.fold}: object scores need instance masks; the data has none")
    scores = score_images(model, list(zip(val.images, val.masks, strict=True)), num_classes=model.num_classes,
                          ignore_index=val.info.get("ignore_index", cfg.data.ignore_index), tile_size=tile_size,
                          amp=amp, engine=engine, progress=progress, instances=instances,
                          objects_of=object_labeller(model, min_size) if instances is not None else None,
                          unscored=unscored,
                          names=[str(n) for n in val.info.get("stems", range(len(val.images)))])
    return {**scores, "images": len(val.images)}


SUMMARY_KEYS = ("miou", "ap@0.5", "ap@0.75", "pq", "count_error")


def _value(fold: dict[str, Any], key: str) -> float:
    if key == "miou":
        return float(fold["miou"])
    found = fold["objects"]
    return float(found["ap"][key[3:]] if key.startswith("ap@") else found[key])


def summarize_folds(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """Across folds (cv.json ``per_fold`` entries): the mean and spread (max - min) of each fold's mIoU and, when
    the folds hold object scores, of AP@0.5, AP@0.75, PQ and the count error (:func:`unetseg.metrics.spread_of`:
    also ``min``, ``max`` and ``n``, the folds that had a value)."""
    keys = [k for k in SUMMARY_KEYS if k == "miou" or all("objects" in f for f in per_fold)]
    return {k: spread_of([_value(f, k) for f in per_fold]) for k in keys}


def fold_record(config: RunConfig, out: Path, models: list[Any], runs: list[str], *, tile_size: int | str,
                amp: str | bool, engine: str = "torch", min_size: int | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Each fold's ``models[i]`` scored on the validation part of fold i of ``len(models)`` of ``config``'s data
    (:func:`score_fold`), with the folds' mean and spread (:func:`summarize_folds`) and the pooled scores: the
    folds' confusion matrices summed and, on instance data, their object matches counted together (every item
    scored once, by the model that did not train on it). ``runs``: the fold run folders (cv.json names them; fold
    0's split.json names the kind of folds)."""
    names = models[0].class_table.names
    k = models[0].num_classes
    pooled = np.zeros((k, k), np.int64)
    found: ObjectScores | None = None
    per_fold = []
    for i, (model, run) in enumerate(zip(models, runs, strict=True)):
        scores = score_fold(model, fold_config(config, i, len(models)), tile_size=tile_size, amp=amp,
                            engine=engine, min_size=min_size, progress=progress)
        pooled += np.asarray(scores["matrix"], np.int64)
        if "objects" in scores:
            fold_found = ObjectScores.from_counts(scores["objects"]["counts"])
            found = fold_found if found is None else found.merge(fold_found)
        per_fold.append({"fold": i, "run": run, "images": scores["images"], **_scores(scores, names)})
    total = _scores(_from_matrix(pooled), names)
    if found is not None:
        total["objects"] = _objects(found.compute())
    split = _split_kind(runs[0])
    return {"folds": len(models), **({"split": split} if split else {}), "per_fold": per_fold,
            "summary": summarize_folds(per_fold), "pooled": total, "ensemble": str(out)}


def _split_kind(run: str) -> dict[str, Any] | None:
    """What fold 0's split.json says about the folds: ``{"mode": "files"}`` or ``{"mode": "regions", "grid"}``."""
    path = Path(run) / "split.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {"mode": record.get("mode", "files"), **({"grid": record["grid"]} if "grid" in record else {})}


def cross_validation(config: RunConfig, out: Path, results: list[RunResult]) -> dict[str, Any]:
    """cv.json: per-fold and pooled validation scores of the folds' best.pt (pixel scores, and object scores on
    instance data), their mean and spread, and the held-out scores of a sample."""
    device = torch.device("cpu")
    models = [load_model(r.best_checkpoint, device=device) for r in results]
    amp = validation_amp_of(config)
    record = fold_record(config, out, models, [str(r.run_dir) for r in results],
                         tile_size=config.train.val_tile_size, amp=amp)
    record["checkpoints"] = [str(r.best_checkpoint) for r in results]
    if config.data.source == "sample":
        record["held_out"] = _held_out(config, models, models[0].class_table.names, amp)
    return record


def folds_table(record: dict[str, Any]) -> str:
    """A plain-text table of a cv.json record: one row per fold (mIoU; AP@0.5, AP@0.75, PQ and count error on
    instance data), then the folds' mean, spread (max - min) and the pooled scores."""
    objects = "ap@0.5" in record["summary"]
    head = f"{'fold':<7} {'items':>5} {'mIoU':>7}" + (f" {'AP@0.5':>7} {'AP@0.75':>7} {'PQ':>7} {'count err':>9}"
                                                      if objects else "")

    def fmt(v: float, width: int = 7) -> str:
        return f"{'n/a':>{width}}" if math.isnan(v) else f"{v:{width}.4f}"

    def row(label: str, items: str, values: dict[str, float]) -> str:
        line = f"{label:<7} {items:>5} {fmt(values['miou'])}"
        if objects:
            line += "".join(f" {fmt(values[k])}" for k in SUMMARY_KEYS[1:4]) + f" {fmt(values['count_error'], 9)}"
        return line

    lines = [head]
    for f in record["per_fold"]:
        lines.append(row(str(f["fold"]), str(f["images"]), {k: _value(f, k) for k in SUMMARY_KEYS
                                                             if k == "miou" or objects}))
    summary = record["summary"]
    lines.append(row("mean", "", {k: v["mean"] for k, v in summary.items()}))
    lines.append(row("spread", "", {k: v["spread"] for k, v in summary.items()}))
    pooled = record["pooled"]
    lines.append(row("pooled", str(sum(f["images"] for f in record["per_fold"])),
                     {k: _value(pooled, k) for k in SUMMARY_KEYS if k == "miou" or objects}))
    return "\n".join(lines)


def _held_out(config: RunConfig, models: list, names: tuple[str, ...], amp: str | bool) -> dict[str, Any]:
    """The sample's own validation images: never seen by any fold; each fold and the ensemble scored on them
    (objects too on instance data)."""
    cfg = with_parent_architecture(config).data
    _, val = load_splits(cfg, gap=model_context(models[0]))
    items = list(zip(val.images, val.masks, strict=True))
    k = models[0].num_classes
    instances = val.instances if cfg.mask_mode == "instances" else None

    def score(model: Any) -> dict[str, Any]:
        return _scores(score_images(model, items, num_classes=k, ignore_index=cfg.ignore_index,
                                    tile_size=config.train.val_tile_size, amp=amp, engine="torch",
                                    instances=instances,
                                    objects_of=object_labeller(models[0]) if instances is not None else None), names)

    members = [score(m) for m in models]
    ensemble = score(as_model(models))
    best = max(m["miou"] for m in members)
    return {"images": len(items), "per_fold": members, "ensemble": ensemble,
            "ensemble_minus_best_member": ensemble["miou"] - best}


def validation_amp_of(config: RunConfig) -> str | bool:
    """The precision the runs validated in (on this process's CPU)."""
    return validation_amp(training_precision(config.train.amp, torch.device("cpu"), config.train.channels_last))


def _from_matrix(matrix: np.ndarray) -> dict[str, Any]:
    cm = ConfusionMatrix(len(matrix))
    cm.matrix += torch.as_tensor(matrix, dtype=cm.matrix.dtype)
    return cm.compute()
