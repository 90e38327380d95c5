"""``unetseg export``: checkpoint -> ONNX / TorchScript file."""
from __future__ import annotations

import argparse

from ..models import load_model
from .model import export_model


def export_command(args: argparse.Namespace) -> int:
    """Handler of ``unetseg export --checkpoint CKPT --format onnx|torchscript --output FILE [--tile-size N]``."""
    model = load_model(args.checkpoint, device="cpu")
    path = export_model(model, args.output, format=args.format, tile_size=args.tile_size)
    print(f"wrote {path}")
    return 0
