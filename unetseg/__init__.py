"""unetseg: train U-Nets on your images and segment images far larger than memory without seams."""
from .data.normalization import Normalization
from .errors import UnetsegError
from .models import (
    ConvAutoencoder, SegmentationModel, SmpModel, UNet, build_model, list_models, load_model, save_checkpoint,
)

__version__ = "0.1.0"

__all__ = [
    "ConvAutoencoder", "Normalization", "SegmentationModel", "SmpModel", "UNet", "UnetsegError",
    "build_model", "list_models", "load_model", "save_checkpoint",
]
