"""metrics.csv: one row per epoch (validation columns empty on epochs without validation)."""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io.maps import write_text


def metric_columns(class_names: Sequence[str], objects: bool = False) -> list[str]:
    """epoch, step, time_s, train_loss, val_miou, val_accuracy, [val_ap50,] iou_<class>..., lr, images_per_s;
    ``objects``: with the validation objects' AP@0.5 under the post-processing tuned on them (no TTA), the score
    runs on instance masks choose best.pt by."""
    return (["epoch", "step", "time_s", "train_loss", "val_miou", "val_accuracy"] + ["val_ap50"] * objects
            + [f"iou_{name}" for name in class_names] + ["lr", "images_per_s"])


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class MetricsLog:
    """Rows of metrics.csv, rewritten atomically on every append (the file is always complete)."""

    def __init__(self, path: str | Path, columns: list[str]) -> None:
        self.path = Path(path)
        self.columns = columns
        self.rows: list[dict[str, str]] = []

    def load(self, max_step: int | None = None) -> MetricsLog:
        """Read existing rows (on resume), dropping any written after ``max_step`` (a crash between
        the csv row and last.pt would otherwise leave a duplicate)."""
        if self.path.is_file():
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
            self.rows = [r for r in rows if max_step is None or int(r["step"]) <= max_step]
        return self

    def append(self, values: dict[str, Any]) -> None:
        self.rows.append({c: _cell(values.get(c)) for c in self.columns})
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.path, text.getvalue())
