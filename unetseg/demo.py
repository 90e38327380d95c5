"""``unetseg demo``: train a U-Net on built-in real data, then segment a large held-out image without seams.

1. Train the embedded config (``unetseg/demo.yaml``: a small same-padding U-Net on the nuclei sample,
   about 3 minutes on 2 CPU cores) into ``OUT/run``.
2. Build a large image with exact labels that training never saw: the nuclei sample's validation strip
   (its right 128 columns), mirror-tiled to SIZE x SIZE.
3. Segment it with :func:`unetseg.predict_tiled` at its defaults (overlap-tile, mirror padding, auto tile
   size and precision), write palette + overlay PNGs, and report mIoU against the truth and label
   agreement with a whole-image prediction (one fp32 forward pass of the whole mirror-padded image).
"""
from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path

import numpy as np

from .config import load_config
from .data.samples import load_sample
from .export import maps
from .inference import predict_tiled
from .metrics import ConfusionMatrix
from .models import load_model
from .training import train


def demo_config_path() -> Path:
    """The embedded demo config (a file inside the package)."""
    return Path(str(resources.files("unetseg") / "demo.yaml"))


def mirror_tile(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` (HxW) tiled with alternating flips, so neighbours meet without seams, cropped to size x size."""
    block = np.block([[array, array[:, ::-1]], [array[::-1], array[::-1, ::-1]]])
    reps = (-(-size // block.shape[0]), -(-size // block.shape[1]))
    return np.ascontiguousarray(np.tile(block, reps)[:size, :size])


def held_out_scene(size: int) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """SIZE x SIZE uint8 image and uint8 truth from the nuclei validation strip; class names; palette (Kx3)."""
    val = load_sample("nuclei", "val")
    return (mirror_tile(val.images[0], size), mirror_tile(val.masks[0], size), list(val.classes.names),
            val.classes.palette())


def demo_command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    overrides = [] if args.minutes is None else [f"train.time_budget_minutes={args.minutes}"]
    config = load_config(demo_config_path(), overrides)
    run_dir = out / "run"
    if (run_dir / "best.pt").exists():
        print(f"[1/3] reusing the trained model in {run_dir} (delete it to train again)")
    else:
        print(f"[1/3] training a small U-Net on the built-in nuclei sample -> {run_dir}")
        result = train(config, run_dir, name="demo")
        print(f"      best validation mIoU {result.best_miou:.3f} after {result.epochs} epochs "
              f"({result.seconds / 60:.1f} min, {result.images_per_s:.1f} images/s, {result.precision})")
    model = load_model(run_dir / "best.pt")

    image, truth, names, palette = held_out_scene(args.size)
    print(f"[2/3] segmenting a {args.size}x{args.size} image built from the held-out validation strip")
    start = time.perf_counter()
    labels = predict_tiled(model, image, tile_size="auto", progress=True)
    seconds = time.perf_counter() - start
    whole = predict_tiled(model, image, tile_size=2 * args.size, amp=False)  # one tile = whole-image prediction

    scores = ConfusionMatrix(len(names))
    scores.update(labels, truth)
    result = scores.compute()
    agreement = float((labels == whole).mean())
    written = [
        maps.write_rgb(out / "image.png", maps.display_rgb(image)),
        maps.write_palette_png(out / "prediction_palette.png", labels, palette),
        maps.write_rgb(out / "prediction_overlay.png", maps.overlay(image, labels, palette)),
        maps.write_palette_png(out / "truth_palette.png", truth, palette),
    ]
    print("[3/3] results")
    print(f"      tiled inference: {seconds:.1f} s ({image.size / seconds / 1e6:.2f} MP/s)")
    print(f"      mIoU vs truth: {result['miou']:.3f} ("
          + ", ".join(f"{n} {iou:.3f}" for n, iou in zip(names, result["iou"])) + ")")
    print(f"      label agreement with whole-image prediction: {agreement:.4%}")
    print("      wrote " + ", ".join(str(p) for p in written))
    return 0
