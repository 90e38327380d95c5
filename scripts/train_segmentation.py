#!/usr/bin/env python
"""Train a segmentation model from a YAML config (same as ``unetseg train``).

    uv run python scripts/train_segmentation.py configs/nuclei_unet.yaml --out runs/nuclei --set train.epochs=5
    uv run torchrun --nproc_per_node 2 scripts/train_segmentation.py configs/brain_unet.yaml   # DDP
"""
import sys

from unetseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
