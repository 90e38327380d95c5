"""Every file unetseg reads or writes goes through here: image readers (in memory or lazy, window by window)
and format writers (atomic and verified). Which outputs a prediction writes, and their names, is
:mod:`unetseg.outputs`'s business."""
from .atomic import atomic_path
from .images import IMAGE_SUFFIXES, read_image
from .maps import write_index, write_json, write_palette_png, write_probs, write_rgb
from .sinks import NpyWriter, RowSink
from .source import ImageSource, open_image
from .tiff_writer import TiffTileWriter
from .volume import Volume, open_volume

__all__ = [
    "IMAGE_SUFFIXES", "ImageSource", "NpyWriter", "RowSink", "TiffTileWriter", "Volume", "atomic_path", "open_image",
    "open_volume", "read_image", "write_index", "write_json", "write_palette_png", "write_probs", "write_rgb",
]
