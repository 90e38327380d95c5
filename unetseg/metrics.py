"""Segmentation metrics from a confusion matrix accumulated over a whole evaluation set.

IoU and Dice are computed once from the summed counts, not averaged over batches or images: the
mean of per-batch IoUs over-weights small batches and classes that are rare in a batch.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist


class ConfusionMatrix:
    """(num_classes x num_classes) int64 counts; rows = true class, columns = predicted class.

    Args:
        num_classes: number of classes C; labels are 0..C-1.
        ignore_index: target label whose pixels are skipped (None = none).
        device: where the counts live (the device of the predictions, for DDP reduction).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, device: str | torch.device = "cpu") -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor | Any, target: torch.Tensor | Any) -> None:
        """Add a prediction/target pair of the same shape (any shape; tensors or numpy arrays of ints).

        Raises ValueError on a shape mismatch or on a label outside 0..C-1 (other than ignore_index).
        """
        pred = torch.as_tensor(pred, device=self.matrix.device).long().reshape(-1)
        target = torch.as_tensor(target, device=self.matrix.device).long().reshape(-1)
        if pred.shape != target.shape:
            raise ValueError(f"prediction has {pred.numel()} pixels but the target has {target.numel()}")
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            pred, target = pred[keep], target[keep]
        c = self.num_classes
        for name, labels in (("target", target), ("prediction", pred)):
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= c):
                bad = int(labels.max()) if int(labels.max()) >= c else int(labels.min())
                raise ValueError(f"{name} holds label {bad}, outside 0..{c - 1}")
        self.matrix += torch.bincount(target * c + pred, minlength=c * c).reshape(c, c)

    def reduce_(self) -> ConfusionMatrix:
        """Sum the counts over all ranks of the default process group (no-op when not distributed)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)
        return self

    def compute(self) -> dict[str, Any]:
        """Scores from the accumulated counts.

        Returns a dict with
            ``iou``: list of per-class IoU = TP / (TP + FP + FN), NaN for a class absent from both
            targets and predictions;
            ``dice``: list of per-class Dice = 2TP / (2TP + FP + FN), NaN likewise;
            ``miou``: mean IoU over the classes that are not NaN (NaN if none);
            ``mdice``: mean Dice likewise;
            ``accuracy``: correctly labelled pixels / labelled pixels (NaN if none);
            ``pixels``: number of labelled pixels counted.
        """
        m = self.matrix.double().cpu()
        tp = m.diag()
        fp = m.sum(0) - tp
        fn = m.sum(1) - tp
        union = tp + fp + fn
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        iou = torch.where(union > 0, tp / union.clamp_min(1), nan)
        dice = torch.where(union > 0, 2 * tp / (2 * tp + fp + fn).clamp_min(1), nan)
        total = m.sum()
        present = ~torch.isnan(iou)
        return {
            "iou": iou.tolist(),
            "dice": dice.tolist(),
            "miou": float(iou[present].mean()) if present.any() else math.nan,
            "mdice": float(dice[present].mean()) if present.any() else math.nan,
            "accuracy": float(tp.sum() / total) if total > 0 else math.nan,
            "pixels": int(total),
        }
