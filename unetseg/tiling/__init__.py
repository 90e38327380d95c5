"""The N-D overlap-tile engine, 2D images and 3D volumes from the same code: options -> plan (grid, context per axis,
precision) -> splitter (windows + mirror padding) -> forward (engine + TTA + ensemble) -> merger (crop/gaussian
stitch, class counts) -> a sink. :func:`predict_tiled` is the one entry; :func:`run_tiles` runs a resolved plan
into a band sink. Arrays, sinks and models only: which files a prediction writes is :mod:`unetseg.outputs`'s."""
from .grid import input_pixels
from .merger import probs_to_labels, to_labels
from .options import DEFAULTS, TileOptions
from .predict import predict_tiled, run_tiles, tiled
from .result import Band, BandSink, NoValidPixel, TiledResult, TileReport
from .volume import volume_input_voxels

__all__ = [
    "DEFAULTS", "Band", "BandSink", "NoValidPixel", "TileOptions", "TileReport", "TiledResult",
    "input_pixels", "predict_tiled", "probs_to_labels", "run_tiles", "tiled", "to_labels",
    "volume_input_voxels",
]
