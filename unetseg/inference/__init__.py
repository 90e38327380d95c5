"""Overlap-tile inference: plan, splitter (tiles + mirror padding), forward (graph + TTA), merger (stitching)
into a row sink; ``predict_tiled`` is the entry, ``predict_dask`` spreads output chunks over a cluster.
Arrays, sinks, models and Dask blocks only: which files a prediction writes is :mod:`unetseg.outputs`'s."""
from .merger import probs_to_labels, to_labels
from .options import DEFAULTS, TileOptions
from .predict import predict_tiled, run_tiles, tiled
from .result import Band, BandSink, NoValidPixel, TiledResult, TileReport

__all__ = [
    "DEFAULTS", "Band", "BandSink", "NoValidPixel", "TileOptions", "TileReport", "TiledResult", "predict_tiled",
    "probs_to_labels", "run_tiles", "tiled", "to_labels",
]
