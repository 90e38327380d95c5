"""Overlap-tile inference: tile grid, mirror padding, model stage, stitching; ``predict_tiled`` is the entry."""
from .predict import predict_tiled
from .stitch import probs_to_labels, to_labels

__all__ = ["predict_tiled", "probs_to_labels", "to_labels"]
