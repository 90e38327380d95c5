"""Models: the paper's U-Net, the no-skip autoencoder baseline, smp encoders; registry and checkpoints."""
from .autoencoder import ConvAutoencoder
from .base import SegmentationModel
from .checkpoint import load_model, read_checkpoint, save_checkpoint
from .registry import build_model, list_models, model_kwarg_names, register_model
from .smp import SmpModel
from .unet import UNet

__all__ = [
    "ConvAutoencoder", "SegmentationModel", "SmpModel", "UNet", "build_model", "list_models", "load_model",
    "model_kwarg_names", "read_checkpoint", "register_model", "save_checkpoint",
]
