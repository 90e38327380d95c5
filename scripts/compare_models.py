#!/usr/bin/env python
"""Train U-Net vs the no-skip autoencoder vs smp U-Net (ResNet-34, random init) for the same
wall-clock budget each, on the built-in samples, and print a Markdown table of validation mIoU.

    uv run python scripts/compare_models.py --minutes 3                 # nuclei + brain, 3 models
    uv run python scripts/compare_models.py --minutes 1 --datasets nuclei --set train.amp=off

Each run uses ``configs/<dataset>_<model>.yaml`` with ``train.epochs`` removed and
``train.time_budget_minutes`` set, so the LR schedule anneals over the budget; the run folders
(curves, samples, checkpoints) are kept under ``--out``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = {"unet": "U-Net", "autoencoder": "ConvAutoencoder (no skips)", "smp_resnet34": "smp U-Net ResNet-34"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per run (default: 3)")
    parser.add_argument("--datasets", nargs="+", default=["nuclei", "brain"], help="default: nuclei brain")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", default="runs/compare", help="folder for the runs (default: runs/compare)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                        help="extra override applied to every run (repeatable)")
    args = parser.parse_args(argv)

    import torch

    from unetseg.config import load_config
    from unetseg.training import train

    rows = []
    for dataset in args.datasets:
        for model in args.models:
            config_path = REPO / "configs" / f"{dataset}_{model}.yaml"
            overrides = ["train.epochs=null", f"train.time_budget_minutes={args.minutes}", *args.overrides]
            config = load_config(config_path, overrides)
            out = Path(args.out) / f"{dataset}_{model}"
            print(f"== {dataset} / {MODELS[model]}: {args.minutes} min -> {out}", file=sys.stderr, flush=True)
            result = train(config, out)
            params = sum(p.numel() for p in torch.load(result.best_checkpoint, weights_only=True)["state_dict"].values()
                         if p.is_floating_point())
            rows.append((dataset, MODELS[model], result, params))

    print(f"\nValidation mIoU after {args.minutes:g} min of training each "
          f"({torch.get_num_threads()} CPU threads, {rows[0][2].precision if rows else ''}):\n")
    print("| dataset | model | params | epochs | steps | images/s | best val mIoU |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for dataset, name, r, params in rows:
        miou = f"{r.best_miou:.3f}" if r.best_miou is not None else "n/a"
        print(f"| {dataset} | {name} | {params / 1e6:.2f}M | {r.epochs} | {r.global_step} | "
              f"{r.images_per_s:.1f} | {miou} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
