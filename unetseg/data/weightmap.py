"""The U-Net paper's pixel-wise loss weights (Ronneberger et al. 2015, eq. 2).

``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))`` where ``w_c`` balances the
class frequencies and ``d1``/``d2`` are the distances to the nearest and second-nearest object.
The border term is added on background pixels only (the paper's Fig. 3d), so thin gaps between
touching objects get a large weight and the network learns to keep them open.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["border_weight_map", "class_balance_weights", "border_cutoff"]


def class_balance_weights(
    masks: Sequence[np.ndarray], num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """Inverse class-frequency weights, normalised so that the mean weight of a labelled pixel is 1.

    Args:
        masks: HxW integer class maps (any number, any sizes).
        num_classes: length of the result.
        ignore_index: label excluded from the counts.

    Returns:
        (num_classes,) float32: ``w_c = 1 / (K * f_c)`` for the ``K`` classes present, where
        ``f_c`` is the fraction of labelled pixels of class ``c``; then ``sum_c f_c w_c = 1``.
        Classes that never occur get 1.0.
    """
    counts = np.zeros(num_classes, np.int64)
    for mask in masks:
        values = mask.ravel()
        if ignore_index is not None:
            values = values[values != ignore_index]
        counts += np.bincount(values.astype(np.int64), minlength=num_classes)[:num_classes]
    weights = np.ones(num_classes, np.float64)
    present = counts > 0
    if present.any():
        freq = counts[present] / counts[present].sum()
        weights[present] = 1.0 / (present.sum() * freq)
    return weights.astype(np.float32)


def border_cutoff(w0: float, sigma: float, tolerance: float = 1e-3) -> float:
    """Distance ``d1 + d2`` beyond which the border term ``w0 exp(-(d1+d2)^2 / 2 sigma^2)`` < tolerance."""
    if w0 <= tolerance:
        return 0.0
    return sigma * math.sqrt(2.0 * math.log(w0 / tolerance))


def _class_weight_map(
    class_mask: np.ndarray, class_weights: None | str | Sequence[float] | np.ndarray, ignore_index: int | None
) -> np.ndarray:
    labelled = class_mask if ignore_index is None else np.where(class_mask == ignore_index, 0, class_mask)
    num_classes = int(labelled.max()) + 1
    if class_weights is None:
        table = np.ones(num_classes, np.float32)
    elif isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(f"class_weights must be None, 'balanced' or a sequence, got {class_weights!r}")
        table = class_balance_weights([class_mask], num_classes, ignore_index)
    else:
        table = np.asarray(class_weights, np.float32)
        if table.ndim != 1 or len(table) < num_classes:
            raise ValueError(f"class_weights has {table.size} entries, but the mask holds class {num_classes - 1}")
    out = table[labelled]
    if ignore_index is not None:
        out[class_mask == ignore_index] = 0.0
    return out.astype(np.float32, copy=False)


def border_weight_map(
    instances: np.ndarray,
    class_mask: np.ndarray | None = None,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: None | str | Sequence[float] | np.ndarray = None,
    ignore_index: int | None = None,
) -> np.ndarray:
    """The paper's weight map for one image.

    Args:
        instances: HxW integer instance ids, 0 = no object (ids need not be consecutive).
        class_mask: HxW integer class map for ``w_c``; default ``instances > 0`` (2 classes).
        w0: border weight (paper: 10).
        sigma: border width in pixels (paper: ~5).
        class_weights: ``None`` (w_c = 1), ``"balanced"`` (:func:`class_balance_weights` of this
            mask) or one weight per class.
        ignore_index: pixels of ``class_mask`` with this label get weight 0.

    Returns:
        HxW float32 weights. The border term is added on pixels with ``instances == 0`` only and
        needs at least two objects; with fewer the map is ``w_c`` alone.

    Each object's distance transform is computed only inside its bounding box grown by
    :func:`border_cutoff` (beyond it the term is below 1e-3), so the cost grows with the number
    and size of objects, not with ``image area * objects``.
    """
    instances = np.asarray(instances)
    if instances.ndim != 2:
        raise ValueError(f"instances must be HxW, got shape {instances.shape}")
    if class_mask is None:
        class_mask = (instances > 0).astype(np.uint8)
    elif class_mask.shape != instances.shape:
        raise ValueError(f"class_mask shape {class_mask.shape} differs from instances shape {instances.shape}")
    weights = _class_weight_map(class_mask, class_weights, ignore_index)
    if w0 == 0:
        return weights

    ids = np.unique(instances)
    ids = ids[ids != 0]
    if len(ids) < 2:
        return weights
    labels = np.searchsorted(ids, instances).astype(np.int32) + 1  # consecutive ids for find_objects
    labels[instances == 0] = 0
    cutoff = border_cutoff(w0, sigma)
    grow = int(math.ceil(cutoff))
    height, width = instances.shape
    d1 = np.full(instances.shape, np.inf, np.float32)
    d2 = np.full(instances.shape, np.inf, np.float32)
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        ys = slice(max(box[0].start - grow, 0), min(box[0].stop + grow, height))
        xs = slice(max(box[1].start - grow, 0), min(box[1].stop + grow, width))
        dist = ndimage.distance_transform_edt(labels[ys, xs] != label).astype(np.float32)
        a, b = d1[ys, xs], d2[ys, xs]  # views: updated in place
        np.minimum(b, np.maximum(a, dist), out=b)
        np.minimum(a, dist, out=a)
    total = d1 + d2  # inf where fewer than two objects lie within the cutoff
    border = (instances == 0) & (total <= cutoff)
    weights[border] += w0 * np.exp(-(total[border] ** 2) / (2.0 * sigma**2))
    if ignore_index is not None:
        weights[class_mask == ignore_index] = 0.0
    return weights
