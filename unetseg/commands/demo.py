"""``unetseg demo``: train a U-Net on built-in real data, then segment a large held-out image without seams.

1. Train the embedded config (``unetseg/demo.yaml``: a small same-padding U-Net on the nuclei sample,
   about 3 minutes on 2 CPU cores) into ``OUT/run``.
2. Build a large image with exact labels that training never saw: the nuclei sample's validation strip
   (its right 128 columns), mirror-tiled to SIZE x SIZE (:func:`unetseg.data.scenes.held_out_scene`).
3. Segment it with :func:`unetseg.predict_tiled` at its defaults (overlap-tile, mirror padding, auto tile
   size and precision), write palette + overlay PNGs, and report mIoU against the truth and label
   agreement with a whole-image prediction (one fp32 forward pass of the whole mirror-padded image): fp32
   tiles with the receptive-field halo are exact (100%); the defaults (bf16/fp16 where fast, the halo
   measured after training) differ on a few pixels near class boundaries, so their agreement is printed apart.
"""
from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="train on built-in real data, then tile-infer a large image",
                          description="Train a small U-Net on the built-in nuclei sample (about 3 minutes on 2 CPU "
                                      "cores), then segment a large held-out image by overlap-tile inference, "
                                      "write palette and overlay PNGs, and report mIoU against the truth and "
                                      "agreement with whole-image prediction. A trained OUT/run is reused.")
    demo.add_argument("--out", default="demo_out", help="folder for the run and the predictions (default: demo_out)")
    demo.add_argument("--minutes", type=float, default=None, help="training time budget (default: the demo config's, 3)")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default: the demo config's, 40)")
    demo.add_argument("--size", type=int, default=2048, help="side of the large image to segment (default: 2048)")


def demo_config_path() -> Path:
    """The embedded demo config (a file inside the package)."""
    return Path(str(resources.files("unetseg") / "demo.yaml"))


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..data.scenes import held_out_scene
    from ..io import maps
    from ..io.display import display_rgb, overlay
    from ..metrics import ConfusionMatrix
    from ..models import load_model
    from ..tiling import predict_tiled, tiled
    from ..training import train

    out = Path(args.out)
    overrides = [] if args.minutes is None else [f"train.time_budget_minutes={args.minutes}"]
    overrides += [] if args.epochs is None else [f"train.epochs={args.epochs}"]
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
    result = tiled(model, image, progress=True)
    first = time.perf_counter() - start
    labels, report = result.output, result.report
    start = time.perf_counter()  # again: the engine and tile chosen by measurement above are kept for the model
    tiled(model, image)
    seconds = time.perf_counter() - start
    whole = predict_tiled(model, image, tile_size=2 * args.size, halo="exact", amp=False)  # one tile: whole image
    # The exactness claim is about tiling, so it is checked in fp32 with the receptive-field halo, whatever
    # precision and (measured) halo the defaults use.
    fp32_tiles = predict_tiled(model, image, tile_size=report.tile_shape[0], halo="exact", amp=False)

    scores = ConfusionMatrix(len(names))
    scores.update(labels, truth)
    result = scores.compute()
    agreement = float((labels == whole).mean())
    exact = float((fp32_tiles == whole).mean())
    written = [
        maps.write_rgb(out / "image.png", display_rgb(image)),
        maps.write_palette_png(out / "prediction_palette.png", labels, palette),
        maps.write_rgb(out / "prediction_overlay.png", overlay(image, labels, palette)),
        maps.write_palette_png(out / "truth_palette.png", truth, palette),
    ]
    print("[3/3] results")
    print(f"      tiled inference: {seconds:.1f} s ({image.size / seconds / 1e6:.2f} MP/s, {report.precision}, tile "
          f"{report.tile_shape[0]} px); the first call {first:.1f} s, which chooses the engine and tile (measured "
          "once per machine, then read from the tuning cache)")
    print(f"      mIoU vs truth: {result['miou']:.3f} ("
          + ", ".join(f"{n} {iou:.3f}" for n, iou in zip(names, result["iou"], strict=True)) + ")")
    print(f"      label agreement with whole-image prediction (one fp32 pass): fp32 tiles with the exact halo "
          f"{exact:.4%}; defaults ({report.precision}, {report.context} px halo) {agreement:.4%}")
    print("      wrote " + ", ".join(str(p) for p in written))
    return 0
