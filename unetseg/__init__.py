"""unetseg: train U-Nets on your images and segment images far larger than memory without seams."""
import os

# albumentations otherwise asks PyPI for a newer version on every import; nothing here may phone home
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from .data.classes import ClassTable  # noqa: E402
from .data.normalization import Normalization  # noqa: E402
from .errors import UnetsegError  # noqa: E402
from .models import (  # noqa: E402
    ConvAutoencoder,
    SegmentationModel,
    SmpModel,
    UNet,
    build_model,
    list_models,
    load_model,
    register_model,
    save_checkpoint,
)
from .scale import predict_dask  # noqa: E402
from .tiling import predict_tiled  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ClassTable", "ConvAutoencoder", "Normalization", "SegmentationModel", "SmpModel", "UNet", "UnetsegError",
    "build_model", "list_models", "load_model", "predict_dask", "predict_tiled", "register_model", "save_checkpoint",
]
