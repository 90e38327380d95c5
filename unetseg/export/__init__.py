"""Model export for deployment: ONNX and TorchScript (segmentation maps are written by :mod:`unetseg.outputs`)."""
from .model import EXPORT_FORMATS, export_model

__all__ = ["EXPORT_FORMATS", "export_model"]
