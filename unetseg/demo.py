"""``unetseg demo``: placeholder until training and tiled inference land (replaced below in this series)."""
from __future__ import annotations

import argparse

import numpy as np
import torch

from .models import UNet


def demo_command(args: argparse.Namespace) -> int:
    model = UNet(1, 2, base_channels=16, padding="valid").eval()
    n = model.valid_input_size(256)
    image = np.random.default_rng(0).random((n, n), dtype=np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(image)[None, None])
    print(f"UNet forward pass: input {n}x{n} -> logits {tuple(logits.shape)}")
    return 0
