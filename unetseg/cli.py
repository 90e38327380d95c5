"""``unetseg`` command line: argument parsing and dispatch only; the work lives in the package.

Each subcommand's handler takes the parsed arguments and returns an exit code. A UnetsegError (bad
input from the user) is printed as one line without a traceback and exits with code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .errors import UnetsegError

# subcommand -> "module:function" taking argparse.Namespace and returning an exit code
HANDLERS = {
    "demo": "unetseg.demo:demo_command",
    "train": "unetseg.training.run:train_command",
    "predict": "unetseg.inference.run:predict_command",
    "evaluate": "unetseg.training.evaluate:evaluate_command",
    "export": "unetseg.export.run:export_command",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetseg",
        description="U-Net semantic segmentation: train on your images, segment images of any size without seams.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="train on built-in real data, then tile-infer a large image",
                          description="Train a small U-Net on the built-in nuclei sample (about 3 minutes on 2 CPU "
                                      "cores), then segment a large held-out image by overlap-tile inference, "
                                      "write palette and overlay PNGs, and report mIoU against the truth and "
                                      "agreement with whole-image prediction. A trained OUT/run is reused.")
    demo.add_argument("--out", default="demo_out", help="folder for the run and the predictions (default: demo_out)")
    demo.add_argument("--minutes", type=float, default=None, help="training time budget (default: the demo config's, 3)")
    demo.add_argument("--size", type=int, default=2048, help="side of the large image to segment (default: 2048)")

    train = sub.add_parser("train", help="train a model from a YAML config",
                           description="Train a segmentation model described by a YAML config. Each run folder "
                                       "holds the resolved config, metrics.csv, best.pt, last.pt and plots.")
    train.add_argument("config", help="YAML run config (see configs/)")
    train.add_argument("--out", default=None, help="run folder (default: runs/<config name>-<timestamp>)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                       help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    train.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="continue the run in RUN_DIR exactly where its last.pt left off")

    predict = sub.add_parser("predict", help="segment images of any size by overlap-tile inference",
                             description="Segment images (files or folders; TIFFs larger than memory are streamed) "
                                         "with a trained checkpoint and write segmentation maps.")
    predict.add_argument("--checkpoint", required=True, help="checkpoint written by training (best.pt/last.pt)")
    predict.add_argument("--input", required=True, nargs="+", metavar="PATH", help="image files and/or folders")
    predict.add_argument("--output", required=True, metavar="DIR", help="output folder")
    predict.add_argument("--tile-size", default="auto", help="tile side in pixels or 'auto' (default: auto)")
    predict.add_argument("--batch-size", default="auto",
                         help="tiles per forward pass or 'auto': 1 on CPU, 4 on GPU (default: auto)")
    predict.add_argument("--tta", choices=["flips", "d4"], default=None, help="test-time augmentation (default: none)")
    predict.add_argument("--format", default="index,palette", metavar="LIST",
                         help="comma list of index,palette,overlay,probs,summary (default: index,palette)")
    predict.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    predict.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], default="auto",
                         help="mixed precision: auto = fp16 on CUDA, bf16 on AMX/AVX512-BF16 CPUs, else off (default: auto)")

    evaluate = sub.add_parser("evaluate", help="score a checkpoint (per-class IoU/Dice, mIoU, accuracy)",
                              description="Evaluate a checkpoint on the validation split of a config, or on a "
                                          "folder of images and masks.")
    evaluate.add_argument("--checkpoint", required=True)
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="YAML run config whose validation split is scored")
    source.add_argument("--images", help="folder of images (needs --masks)")
    evaluate.add_argument("--masks", help="folder of masks paired with --images by file stem")
    evaluate.add_argument("--tile-size", default="auto", help="tile side or 'auto' (default: auto)")

    export = sub.add_parser("export", help="export a checkpoint to ONNX or TorchScript",
                            description="Export a trained checkpoint for deployment.")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    export.add_argument("--output", required=True, metavar="FILE")
    export.add_argument("--tile-size", type=int, default=None, help="example input side (default: the model's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = HANDLERS[args.command].split(":")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except UnetsegError as err:
        print(f"unetseg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unetseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
