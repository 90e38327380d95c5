"""The outputs layer: the output set a prediction writes into (one registry of output kinds, their naming,
the summary and the done-manifest), shared by the one-process and Dask paths. Between :mod:`unetseg.tiling`
(arrays and sinks) and :mod:`unetseg.commands`."""
from .kinds import KindWriter, OutputKind, check_formats, output_kind, output_kinds, register_output_kind
from .outputset import Done, OutputSet, OutputSpec
from .predict import predict_file, predict_file_dask
from .style import MapStyle

__all__ = [
    "Done", "KindWriter", "MapStyle", "OutputKind", "OutputSet", "OutputSpec", "check_formats", "output_kind",
    "output_kinds", "predict_file", "predict_file_dask", "register_output_kind",
]
