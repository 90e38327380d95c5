"""Run figures: training curves and a grid of validation samples (matplotlib, Agg backend)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..fileio import atomic_path  # noqa: E402

IGNORE_COLOR = (128, 128, 128)


def _floats(rows: Sequence[dict[str, str]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key, "")
        if value not in ("", None) and not math.isnan(float(value)):
            xs.append(float(row["epoch"]))
            ys.append(float(value))
    return xs, ys


def plot_curves(rows: Sequence[dict[str, str]], path: str | Path) -> Path:
    """Train loss, validation mIoU and learning rate against epoch, from metrics.csv rows."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, title in zip(axes, ("train_loss", "val_miou", "lr"), ("train loss", "val mIoU", "learning rate")):
        xs, ys = _floats(rows, key)
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].set_ylim(0, 1)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return Path(path)


def colorize(labels: np.ndarray, palette: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """HxW integer labels -> HxWx3 uint8 RGB using ``palette`` (num_classes x 3); ignored / unknown
    labels are drawn grey."""
    labels = np.asarray(labels).astype(np.int64)
    out = np.empty(labels.shape + (3,), np.uint8)
    out[:] = IGNORE_COLOR
    known = (labels >= 0) & (labels < len(palette))
    if ignore_index is not None:
        known &= labels != ignore_index
    out[known] = palette[labels[known]]
    return out


def _display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] not in (3, 4):
        image = image[..., 0]  # multi-band: show the first band
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    image = image.astype(np.float32)
    lo, hi = float(image.min()), float(image.max())
    image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    return image, ("gray" if image.ndim == 2 else None)


def plot_samples(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    palette: np.ndarray,
    path: str | Path,
    class_names: Sequence[str] | None = None,
    ignore_index: int | None = None,
) -> Path:
    """A grid with one row per sample: image | ground truth | prediction (coloured by ``palette``)."""
    n = len(images)
    fig, axes = plt.subplots(max(n, 1), 3, figsize=(10, 3.3 * max(n, 1)), squeeze=False)
    for row, (image, truth, pred) in enumerate(zip(images, truths, predictions)):
        shown, cmap = _display(image)
        panels = ((shown, cmap, "image"), (colorize(truth, palette, ignore_index), None, "truth"),
                  (colorize(pred, palette), None, "prediction"))
        for ax, (data, cm, title) in zip(axes[row], panels):
            ax.imshow(data, cmap=cm, interpolation="nearest")
            ax.set_title(title if row == 0 else "")
            ax.axis("off")
    if class_names:
        handles = [plt.Rectangle((0, 0), 1, 1, color=np.asarray(c) / 255) for c in palette[: len(class_names)]]
        fig.legend(handles, class_names, loc="lower center", ncol=min(len(class_names), 6), frameon=False)
    fig.tight_layout(rect=(0, 0.05 if class_names else 0, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
    return Path(path)
