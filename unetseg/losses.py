"""Training losses: the paper's weighted per-pixel cross-entropy, plus optional smp losses.

The U-Net paper (eq. 1) trains with a pixel-wise softmax cross-entropy in which every pixel's
term is multiplied by a weight map ``w(x)`` (class balancing + emphasis on the thin borders
between touching objects). :class:`SegmentationLoss` computes exactly that and can add Dice,
focal and Lovasz terms from segmentation-models-pytorch, each with its own weight.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .config import LossConfig


def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight_map: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Per-pixel softmax cross-entropy times ``class_weights[target] * weight_map``, averaged over
    the pixels whose label is not ``ignore_index``.

    Args:
        logits: (N, C, H, W) float logits (computed in float32 whatever their dtype).
        target: (N, H, W) int64 labels in ``0..C-1`` or ``ignore_index``.
        weight_map: (N, H, W) float per-pixel weights ``w(x)``; None = all ones.
        class_weights: (C,) float weights per class; None = all ones.
        ignore_index: label whose pixels contribute nothing (to the sum or the count); None = none.

    Returns a scalar. The mean is over non-ignored pixels (not a weighted mean), so a weight map
    scales the loss as in the paper. A batch with no labelled pixels gives 0 (with a gradient).
    """
    per_pixel = F.cross_entropy(
        logits.float(), target, weight=class_weights, reduction="none",
        ignore_index=-100 if ignore_index is None else ignore_index,
    )
    if weight_map is not None:
        per_pixel = per_pixel * weight_map.to(per_pixel.dtype)
    if ignore_index is None:
        return per_pixel.mean()
    count = (target != ignore_index).sum().clamp_min(1)
    return per_pixel.sum() / count


class SegmentationLoss(nn.Module):
    """``ce * CE_w + dice * Dice + focal * Focal + lovasz * Lovasz`` (terms with weight 0 are skipped).

    Args:
        ce: weight of :func:`weighted_cross_entropy` (the paper's loss).
        dice, focal, lovasz: weights of smp's DiceLoss / FocalLoss / LovaszLoss (mode="multiclass").
        class_weights: per-class weights for the cross-entropy (and Dice), or None.
        ignore_index: label ignored by every term, or None.
        focal_gamma: focusing parameter of the focal term.

    ``forward(logits (N,C,H,W), target (N,H,W) int64, weight_map (N,H,W) float | None) -> scalar``.
    The weight map only applies to the cross-entropy term (the smp losses are not per-pixel sums).
    """

    def __init__(
        self,
        ce: float = 1.0,
        dice: float = 0.0,
        focal: float = 0.0,
        lovasz: float = 0.0,
        class_weights: list[float] | None = None,
        ignore_index: int | None = None,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if min(ce, dice, focal, lovasz) < 0 or ce + dice + focal + lovasz <= 0:
            raise ValueError("loss weights must be >= 0 with at least one > 0")
        self.ce_weight = ce
        self.ignore_index = ignore_index
        self.register_buffer(
            "class_weights", None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        )
        self.extra = nn.ModuleDict()
        self.extra_weights: dict[str, float] = {}
        if dice > 0 or focal > 0 or lovasz > 0:
            # imported here: smp's package loads its encoders and torchvision (~3 s of every CLI start on 2 cores)
            import segmentation_models_pytorch.losses as smp_losses
        if dice > 0:
            self.extra["dice"] = smp_losses.DiceLoss("multiclass", ignore_index=ignore_index, class_weights=class_weights)
            self.extra_weights["dice"] = dice
        if focal > 0:
            self.extra["focal"] = smp_losses.FocalLoss("multiclass", gamma=focal_gamma, ignore_index=ignore_index)
            self.extra_weights["focal"] = focal
        if lovasz > 0:
            self.extra["lovasz"] = smp_losses.LovaszLoss("multiclass", ignore_index=ignore_index)
            self.extra_weights["lovasz"] = lovasz

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight_map: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits = logits.float()
        total = logits.new_zeros(())
        if self.ce_weight > 0:
            total = total + self.ce_weight * weighted_cross_entropy(
                logits, target, weight_map, self.class_weights, self.ignore_index
            )
        for name, term in self.extra.items():
            total = total + self.extra_weights[name] * term(logits, target)
        return total


def build_loss(cfg: LossConfig, ignore_index: int | None = None, num_classes: int | None = None) -> SegmentationLoss:
    """The loss a run's ``loss:`` config section describes.

    ``ignore_index`` comes from the data config; ``num_classes`` (when given) checks the length of
    ``cfg.class_weights``.
    """
    if cfg.class_weights is not None and num_classes is not None and len(cfg.class_weights) != num_classes:
        from .errors import UnetsegError

        raise UnetsegError(
            f"loss.class_weights has {len(cfg.class_weights)} values but the data has {num_classes} classes"
        )
    return SegmentationLoss(
        ce=cfg.ce, dice=cfg.dice, focal=cfg.focal, lovasz=cfg.lovasz, class_weights=cfg.class_weights,
        ignore_index=ignore_index, focal_gamma=cfg.focal_gamma,
    )
