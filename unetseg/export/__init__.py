"""Segmentation-map writers and model export (ONNX, TorchScript)."""
from .maps import (
    class_table, colorize, overlay, summary, write_index, write_json, write_palette_png, write_probs, write_rgb,
)
from .model import export_model

__all__ = [
    "class_table", "colorize", "export_model", "overlay", "summary", "write_index", "write_json",
    "write_palette_png", "write_probs", "write_rgb",
]
