"""Overlap-tile inference: plan, splitter (tiles + mirror padding), forward (graph + TTA), merger (stitching)
into a row sink; ``predict_tiled`` is the entry, ``predict_dask`` spreads output chunks over a cluster,
``openvino_model`` is the graph as the OpenVINO engine runs it, for export.
Arrays, sinks, models and Dask blocks only: which files a prediction writes is :mod:`unetseg.outputs`'s."""
from .deploy import DeployedModel, calibration_tiles_from, openvino_model
from .grid import input_pixels
from .merger import probs_to_labels, to_labels
from .options import DEFAULTS, TileOptions
from .predict import predict_tiled, run_tiles, tiled
from .result import Band, BandSink, NoValidPixel, TiledResult, TileReport

__all__ = [
    "DEFAULTS", "Band", "BandSink", "DeployedModel", "NoValidPixel", "TileOptions", "TileReport", "TiledResult",
    "calibration_tiles_from", "input_pixels", "openvino_model", "predict_tiled", "probs_to_labels", "run_tiles", "tiled", "to_labels",
]
