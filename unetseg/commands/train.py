"""``unetseg train``: train a model from a YAML config into a run folder."""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a model from a YAML config",
                           description="Train a segmentation model described by a YAML config. Each run folder "
                                       "holds the resolved config, metrics.csv, best.pt, last.pt and plots.")
    train.add_argument("config", help="YAML run config (see configs/)")
    train.add_argument("--out", default=None, help="run folder (default: runs/<config name>-<timestamp>)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                       help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    train.add_argument("--resume", default=None, metavar="RUN_DIR",
                       help="continue the run in RUN_DIR exactly where its last.pt left off")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..errors import UnetsegError
    from ..training import train

    config = load_config(args.config, args.overrides)
    rank = int(os.environ.get("RANK", "0"))
    try:
        result = train(config, args.out, args.resume, name=Path(args.config).stem)
    except UnetsegError:
        if rank != 0:  # every rank fails alike; one line is enough
            return 2
        raise
    if rank == 0:
        best = f"{result.best_miou:.4f} (epoch {result.best_epoch})" if result.best_miou is not None else "n/a"
        print(f"run folder: {result.run_dir}\nbest val mIoU: {best}; {result.epochs} epoch(s), "
              f"{result.global_step} steps, {result.seconds / 60:.1f} min, stopped by {result.stopped_by}, "
              f"{result.precision}, {result.images_per_s:.1f} images/s")
    return 0
