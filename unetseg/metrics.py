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
            ``pixels``: number of labelled pixels counted;
            ``matrix``: the counts, [true class][predicted class] (pooling scores over runs sums these).
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
            "matrix": m.long().tolist(),
        }


class ObjectScores:
    """Object metrics accumulated over images: average precision at IoU thresholds (one-to-one matching, as
    StarDist computes it: AP = TP / (TP + FP + FN)), panoptic quality at IoU 0.5 (Kirillov et al. 2019) and
    the object-count error.

    ``update(true, pred)`` takes two HxW instance maps (0 = no object, any ids); matched pairs are those of a
    maximum-IoU one-to-one assignment among pairs with IoU >= the threshold.
    """

    def __init__(self, thresholds: tuple[float, ...] = (0.5, 0.75)) -> None:
        self.thresholds = tuple(thresholds)
        self.tp = dict.fromkeys(self.thresholds, 0)
        self.matched_iou = 0.0  # summed IoU of the pairs matched at 0.5 (panoptic quality)
        self.tp50 = 0
        self.n_true = self.n_pred = 0

    def update(self, true: Any, pred: Any, unscored: Any = None) -> None:
        """Add one image: ``true`` and ``pred`` HxW instance maps; ``unscored`` (HxW bool, or None) marks truth
        pixels that are not scored (pieces of objects a validation block's edge cuts off,
        :func:`unetseg.data.regions.minor_pieces`): they hold no true object, and predicted objects with more
        than half of their pixels there are dropped rather than counted as false."""
        import numpy as np
        from scipy.optimize import linear_sum_assignment

        true, pred = np.asarray(true).ravel(), np.asarray(pred).ravel()
        if true.shape != pred.shape:
            raise ValueError(f"prediction has {pred.size} pixels but the target has {true.size}")
        if unscored is not None:
            off = np.asarray(unscored, bool).ravel()
            if off.shape != true.shape:
                raise ValueError(f"the unscored mask has {off.size} pixels but the target has {true.size}")
            if off.any():
                ids, inv = np.unique(pred, return_inverse=True)
                mostly = np.bincount(inv, weights=off, minlength=len(ids)) * 2 > np.bincount(inv, minlength=len(ids))
                pred = np.where(mostly[inv] & (pred > 0), 0, pred)
                true = np.where(off, 0, true)
        t_ids, t_inv = np.unique(true, return_inverse=True)
        p_ids, p_inv = np.unique(pred, return_inverse=True)
        t_area = np.bincount(t_inv, minlength=len(t_ids))
        p_area = np.bincount(p_inv, minlength=len(p_ids))
        both = (true > 0) & (pred > 0)
        pairs, inter = np.unique(np.stack([t_inv[both], p_inv[both]]), axis=1, return_counts=True)
        t_keep, p_keep = t_ids > 0, p_ids > 0
        self.n_true += int(t_keep.sum())
        self.n_pred += int(p_keep.sum())
        if not pairs.size:
            return
        iou = inter / (t_area[pairs[0]] + p_area[pairs[1]] - inter)
        rows, row_of = np.unique(pairs[0], return_inverse=True)
        cols, col_of = np.unique(pairs[1], return_inverse=True)
        for tau in sorted(set(self.thresholds) | {0.5}):
            matrix = np.zeros((len(rows), len(cols)))
            ok = iou >= tau
            matrix[row_of[ok], col_of[ok]] = iou[ok]
            r, c = linear_sum_assignment(matrix, maximize=True)
            hit = matrix[r, c] >= tau
            if tau in self.tp:
                self.tp[tau] += int(hit.sum())
            if tau == 0.5:
                self.tp50 += int(hit.sum())
                self.matched_iou += float(matrix[r, c][hit].sum())

    def counts(self) -> dict[str, Any]:
        """The raw counts the scores come from (JSON-ready): ``thresholds``, ``tp`` (one per threshold), ``tp50``,
        ``matched_iou`` (summed IoU of the pairs matched at 0.5), ``n_true``, ``n_pred``. Pooling scores over
        several evaluations (cross-validation folds) sums these: :meth:`from_counts` + :meth:`merge`."""
        return {"thresholds": list(self.thresholds), "tp": [self.tp[t] for t in self.thresholds], "tp50": self.tp50,
                "matched_iou": self.matched_iou, "n_true": self.n_true, "n_pred": self.n_pred}

    @classmethod
    def from_counts(cls, counts: dict[str, Any]) -> ObjectScores:
        """The accumulator that :meth:`counts` described (its ``compute()`` gives the same scores)."""
        out = cls(tuple(float(t) for t in counts["thresholds"]))
        out.tp = {t: int(n) for t, n in zip(out.thresholds, counts["tp"], strict=True)}
        out.tp50, out.matched_iou = int(counts["tp50"]), float(counts["matched_iou"])
        out.n_true, out.n_pred = int(counts["n_true"]), int(counts["n_pred"])
        return out

    def merge(self, other: ObjectScores) -> ObjectScores:
        """A new accumulator holding both's matches, as if every image of both had been updated into one (the
        thresholds must agree; ValueError otherwise)."""
        if other.thresholds != self.thresholds:
            raise ValueError(f"object scores at thresholds {self.thresholds} and {other.thresholds} do not pool")
        out = ObjectScores(self.thresholds)
        out.tp = {t: self.tp[t] + other.tp[t] for t in self.thresholds}
        out.tp50, out.matched_iou = self.tp50 + other.tp50, self.matched_iou + other.matched_iou
        out.n_true, out.n_pred = self.n_true + other.n_true, self.n_pred + other.n_pred
        return out

    def compute(self) -> dict[str, Any]:
        """``ap``: {threshold: AP}; ``pq``, ``sq`` (mean IoU of matches), ``rq`` (F1 of matches) at IoU 0.5;
        ``n_true``, ``n_pred``; ``count_error``: ``|n_pred - n_true| / n_true``; ``counts``: :meth:`counts`."""
        ap = {t: self.tp[t] / (self.n_true + self.n_pred - self.tp[t]) if self.n_true + self.n_pred else math.nan
              for t in self.thresholds}
        tp = self.tp50
        fp, fn = self.n_pred - tp, self.n_true - tp
        sq = self.matched_iou / tp if tp else 0.0
        rq = tp / (tp + fp / 2 + fn / 2) if tp + fp + fn else math.nan
        return {"ap": ap, "pq": sq * rq, "sq": sq, "rq": rq, "n_true": self.n_true, "n_pred": self.n_pred,
                "count_error": abs(self.n_pred - self.n_true) / self.n_true if self.n_true else math.nan,
                "counts": self.counts()}


def spread_of(values: list[float]) -> dict[str, Any]:
    """Mean and spread of per-fold scores: ``mean``, ``spread`` (max - min), ``min``, ``max`` over the values that
    are not NaN (a fold without any object has no AP), and ``n`` (how many were); all NaN when none is."""
    finite = [float(v) for v in values if not math.isnan(float(v))]
    if not finite:
        return {"mean": math.nan, "spread": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"mean": sum(finite) / len(finite), "spread": max(finite) - min(finite), "min": min(finite),
            "max": max(finite), "n": len(finite)}
