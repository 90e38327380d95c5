"""Model export for deployment: ONNX, TorchScript and OpenVINO IR (fp32, int8) (segmentation maps are written by :mod:`unetseg.outputs`)."""
from .model import EXPORT_FORMATS, export_model

__all__ = ["EXPORT_FORMATS", "export_model"]
