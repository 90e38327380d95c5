"""k-fold cross-validation (``train --folds K``): one run folder per fold, then ``cv.json``.

``OUT/fold0 .. fold{K-1}`` are ordinary run folders (each validates on its fold, :mod:`unetseg.data.folds`);
``OUT/cv.json`` holds each fold's validation score of its best.pt, the pooled score (the folds' confusion
matrices summed: every item scored once, by the model that did not train on it) and, for built-in samples,
the score on the sample's held-out validation images of every fold and of their ensemble. A killed
cross-validation resumes where it stopped: finished folds are kept, a started one resumes from its last.pt.
``unetseg predict --checkpoint OUT`` runs the folds' ensemble.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import RunConfig, validate_config
from ..errors import UnetsegError
from ..io.maps import write_json
from ..metrics import ConfusionMatrix
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


def train_folds(config: RunConfig, out_dir: str | os.PathLike | None, folds: int, *, name: str = "run",
                progress: bool = True) -> FoldsResult:
    """Train ``folds`` runs, fold i validating on the i-th part of the data, into ``OUT/fold{i}``; write cv.json.

    Raises UnetsegError (one line) when the data has fewer items than folds, or ``OUT`` already holds a finished
    cross-validation."""
    if folds < 2:
        raise UnetsegError(f"--folds {folds}: cross-validation needs at least 2 folds")
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


def _scores(scores: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {"miou": scores["miou"], "accuracy": scores["accuracy"],
            "iou": {n: v for n, v in zip(names, scores["iou"], strict=True)}}


def cross_validation(config: RunConfig, out: Path, results: list[RunResult]) -> dict[str, Any]:
    """cv.json: per-fold and pooled validation scores of the folds' best.pt, and the held-out scores of a sample."""
    device = torch.device("cpu")
    models = [load_model(r.best_checkpoint, device=device) for r in results]
    names = models[0].class_table.names
    k = models[0].num_classes
    pooled = np.zeros((k, k), np.int64)
    per_fold = []
    amp = validation_amp_of(config)
    for i, (model, result) in enumerate(zip(models, results, strict=True)):
        cfg = with_parent_architecture(fold_config(config, i, len(results)))
        _, val = load_splits(cfg.data, gap=model_context(model))
        ignore = val.info.get("ignore_index", cfg.data.ignore_index)
        scores = score_images(model, list(zip(val.images, val.masks, strict=True)), num_classes=k,
                              ignore_index=ignore, tile_size=config.train.val_tile_size, amp=amp, engine="torch")
        pooled += np.asarray(scores["matrix"], np.int64)
        per_fold.append({"fold": i, "run": str(result.run_dir), "images": len(val.images), **_scores(scores, names)})
    record: dict[str, Any] = {"folds": len(results), "per_fold": per_fold,
                              "pooled": _scores(_from_matrix(pooled), names),
                              "ensemble": str(out), "checkpoints": [str(r.best_checkpoint) for r in results]}
    if config.data.source == "sample":
        record["held_out"] = _held_out(config, models, names, amp)
    return record


def _held_out(config: RunConfig, models: list, names: tuple[str, ...], amp: str | bool) -> dict[str, Any]:
    """The sample's own validation images: never seen by any fold; each fold and the ensemble scored on them."""
    cfg = with_parent_architecture(config).data
    _, val = load_splits(cfg, gap=model_context(models[0]))
    items = list(zip(val.images, val.masks, strict=True))
    k = models[0].num_classes

    def score(model: Any) -> dict[str, Any]:
        return _scores(score_images(model, items, num_classes=k, ignore_index=cfg.ignore_index,
                                    tile_size=config.train.val_tile_size, amp=amp, engine="torch"), names)

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
