"""Run figures: training curves and a grid of validation samples (matplotlib, Agg backend)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io.atomic import atomic_path  # noqa: E402
from ..io.display import IGNORE_COLOR, colorize, display_rgb  # noqa: E402


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
    for ax, key, title in zip(axes, ("train_loss", "val_miou", "lr"), ("train loss", "val mIoU", "learning rate"), strict=True):
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


def plot_samples(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    palette: np.ndarray,
    path: str | Path,
    class_names: Sequence[str] | None = None,
    ignore_index: int | None = None,
    bands: Sequence[int] | None = None,
    valid: Sequence[np.ndarray | None] | None = None,
) -> Path:
    """A grid with one row per sample: image | ground truth | prediction (coloured by ``palette``).

    The image is previewed by :func:`unetseg.io.display.display_rgb` (``bands``, 2-98 percentile stretch over
    the ``valid`` pixels of each image; invalid ones black)."""
    n = len(images)
    fig, axes = plt.subplots(max(n, 1), 3, figsize=(10, 3.3 * max(n, 1)), squeeze=False)
    for row, (image, truth, pred) in enumerate(zip(images, truths, predictions, strict=True)):
        ok = None if valid is None else valid[row]
        panels = ((display_rgb(image, bands, valid=ok), "image"),
                  (colorize(truth, palette, ignore_index=ignore_index, unknown_color=IGNORE_COLOR), "truth"),
                  (colorize(pred, palette, unknown_color=IGNORE_COLOR), "prediction"))
        for ax, (data, title) in zip(axes[row], panels, strict=True):
            ax.imshow(data, interpolation="nearest")
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
