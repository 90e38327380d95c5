"""Overlap-tile inference: tile grid, mirror padding, stitching, lazy readers and streaming writers."""
from .predict import label_dtype, predict_tiled

__all__ = ["label_dtype", "predict_tiled"]
