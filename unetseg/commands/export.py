"""``unetseg export``: checkpoint -> ONNX / TorchScript file or OpenVINO IR (fp32, int8)."""
from __future__ import annotations

import argparse

from ..export import EXPORT_FORMATS


def add_parser(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="export a checkpoint to ONNX, TorchScript or OpenVINO IR",
                            description="Export a trained checkpoint for deployment. The classes, normalisation, "
                                        "nodata rule, halo and input sizes travel with the file: ONNX metadata "
                                        "properties (with the keys QGIS's Deepness plugin reads; the graph outputs "
                                        "class probabilities), TorchScript's unetseg.json extra file (logits), "
                                        "or the OpenVINO IR's runtime info 'unetseg' (probabilities; "
                                        "openvino-int8 is calibrated on --calibration images and refused under "
                                        "99.5% label agreement with fp32).")
    export.add_argument("--checkpoint", required=True, help="checkpoint written by training (best.pt/last.pt)")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="export format")
    export.add_argument("--output", required=True, metavar="FILE",
                        help="the exported file (OpenVINO: the .xml; its weights go beside it as .bin)")
    export.add_argument("--calibration", nargs="+", metavar="PATH", default=None,
                        help="openvino-int8: image files or folders to calibrate on (e.g. the training images)")
    export.add_argument("--tile-size", type=int, default=None,
                        help="example input side (default: 572 for valid-padding models, else 512)")


def run(args: argparse.Namespace) -> int:
    from ..export import export_model
    from ..models import load_model

    model = load_model(args.checkpoint, device="cpu")
    path = export_model(model, args.output, format=args.format, tile_size=args.tile_size,
                        calibration=args.calibration)
    print(f"wrote {path}")
    return 0
