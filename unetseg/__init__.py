"""unetseg: train U-Nets on your images and segment images far larger than memory without seams."""
import os

# albumentations otherwise asks PyPI for a newer version on every import; nothing here may phone home
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from .data.normalization import Normalization
from .errors import UnetsegError
from .inference import predict_tiled
from .models import (
    ConvAutoencoder, SegmentationModel, SmpModel, UNet, build_model, list_models, load_model, save_checkpoint,
)

__version__ = "0.1.0"

__all__ = [
    "ConvAutoencoder", "Normalization", "SegmentationModel", "SmpModel", "UNet", "UnetsegError",
    "build_model", "list_models", "load_model", "predict_tiled", "save_checkpoint",
]
