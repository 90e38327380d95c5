"""Every file unetseg reads or writes goes through here: image readers (in memory or lazy, window by window)
and segmentation-map writers (atomic and verified)."""
from .atomic import atomic_path
from .images import IMAGE_SUFFIXES, read_image
from .labels import label_dtype
from .maps import MAP_FORMATS, write_index, write_json, write_palette_png, write_probs, write_rgb
from .sinks import BandFanout, NpyWriter, RowSink
from .source import ImageSource, find_images, open_image
from .tiff_writer import TiffTileWriter

__all__ = [
    "IMAGE_SUFFIXES", "MAP_FORMATS", "BandFanout", "ImageSource", "NpyWriter", "RowSink", "TiffTileWriter",
    "atomic_path", "find_images", "label_dtype", "open_image", "read_image", "write_index", "write_json",
    "write_palette_png", "write_probs", "write_rgb",
]
