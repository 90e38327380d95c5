"""Tiled-inference benchmark: unetseg.predict_tiled vs the raw forward floor vs MONAI's sliding window.

Run on a quiet machine: ``uv run python scripts/benchmark.py [--checkpoint CKPT] [--quick] [--json bench_out/benchmark.json]``.

Models: an smp ResNet18 U-Net and the paper's U-Net (valid padding, depth 4, ``--unet-base`` channels: 64 is
the paper's network), both 3 -> 2 classes. Without ``--checkpoint`` they are *briefly trained* (``--fit-steps``
Adam steps on random crops) on the benchmark image's own nuclei labels: a random network's outputs are
near-ties everywhere, so its label agreement would measure rounding noise, not the pipelines; a trained
network is decisive away from object boundaries, as real models are.

Image: the built-in nuclei sample (grayscale 512^2, with its nuclei labels) tiled with flips to SIZE^2 and
coloured into RGB with smooth per-channel gains, so it has real structure.

Sections per model: (a) raw batched forward of tile-sized inputs (MP/s of useful output pixels: the floor),
(b) predict_tiled defaults (tile_size="auto", batch_size="auto", amp="auto"), (c) MONAI
sliding_window_inference (roi 512, overlap 0.25, gaussian, fp32) with sw_batch_size 4 as in MONAI's tutorials
and (e) with its default sw_batch_size 1 (the valid U-Net is wrapped so MONAI sees a same-size model: the
wrapper mirror-pads each window by the margin up to a valid size and crops the output), (d) predict_tiled fp32
(amp=False, tile 512). Speed ratios are against (c) and (e). Label agreement is measured on an AGREE^2 crop (default 2048) against an fp32
whole-crop prediction (one forward pass of the mirror-padded crop). Peak RSS is sampled during each section.
Streaming: a STREAM^2 RGB tiled TIFF (default 16384) is built once (streamed) and segmented through the
streaming path by a small U-Net in a subprocess; its peak RSS is compared with a 4096^2 run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch
import torch.nn.functional as F

import unetseg
from unetseg.data.scenes import mirror_tile
from unetseg.inference.autotile import auto_batch_size
from unetseg.inference.grid import Geometry, TileGrid


class PeakRSS:
    """Sample this process's RSS every 20 ms; ``peak_mib`` is the maximum seen inside the block."""

    def __enter__(self) -> "PeakRSS":
        self._proc, self._stop, self.peak = psutil.Process(), threading.Event(), 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak / 2**20


def make_image(size: int) -> tuple[np.ndarray, np.ndarray]:
    """SIZE x SIZE x 3 uint8 (the nuclei sample, mirror-tiled, smoothly colour-modulated) and its 0/1 labels."""
    sample = np.load(Path(unetseg.__file__).parent / "data" / "samples" / "nuclei.npz")
    gray = mirror_tile(sample["image"], size).astype(np.float32)
    labels = (mirror_tile(sample["instances"], size) > 0).astype(np.int64)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    gains = [0.8 + 0.2 * np.sin(6 * xx + k) * np.cos(5 * yy - k) for k in range(3)]
    return np.stack([np.clip(gray * g, 0, 255) for g in gains], -1).astype(np.uint8), labels


def fit_briefly(model: torch.nn.Module, image: np.ndarray, labels: np.ndarray, steps: int, side: int,
                batch: int = 4, seed: int = 0) -> None:
    """``steps`` Adam steps of cross-entropy on random ``side``-px crops of (image, labels); ends in eval mode."""
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    n = model.valid_input_size(side)
    m = (n - model.output_size(n)) // 2
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        corners = rng.integers(0, image.shape[0] - n + 1, (batch, 2))
        x = np.stack([image[r : r + n, c : c + n] for r, c in corners]).astype(np.float32) / 255
        y = np.stack([labels[r + m : r + n - m, c + m : c + n - m] for r, c in corners])
        x = torch.from_numpy(x).permute(0, 3, 1, 2).to(device).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), torch.from_numpy(y).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class MirrorPadToSame(torch.nn.Module):
    """Make a valid-padding model look same-size to MONAI: mirror-pad by the margin up to a valid size, crop."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, (h, w) = self.model.margin, x.shape[-2:]
        ph = self.model.size_rule.nearest_valid(h + 2 * m)[1] - h - m  # smallest valid size >= h + 2m
        pw = self.model.size_rule.nearest_valid(w + 2 * m)[1] - w - m
        y = self.model(F.pad(x, (m, pw, m, ph), mode="reflect"))
        return y[..., :h, :w]


def whole_labels(model: torch.nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray:
    """fp32 single-pass prediction of the mirror-padded image (the reference)."""
    geometry = Geometry.of(model)
    ctx = TileGrid.build(image.shape[:2], 512, geometry).rows.context  # the context predict_tiled uses at 512
    off = 0 if geometry.padding == "valid" else ctx
    pads = [(ctx, geometry.smallest_valid_at_least(n + 2 * ctx) - n - ctx) for n in image.shape[:2]]
    x = np.pad(image.astype(np.float32) / 255, (*pads, (0, 0)), mode="reflect")
    with torch.inference_mode():
        x = torch.from_numpy(x).permute(2, 0, 1)[None].to(device).contiguous(memory_format=torch.channels_last)
        y = model(x).cpu()
    return y[0].argmax(0).numpy()[off : off + image.shape[0], off : off + image.shape[1]].astype(np.uint8)


def monai_labels(model: torch.nn.Module, image: np.ndarray, device: torch.device, sw_batch_size: int) -> np.ndarray:
    from monai.inferers import sliding_window_inference
    net = MirrorPadToSame(model) if model.padding == "valid" else model
    x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():  # MONAI's usual use: image on the host, windows on the model's device
        y = sliding_window_inference(x, roi_size=(512, 512), sw_batch_size=sw_batch_size, predictor=net, overlap=0.25,
                                     mode="gaussian", sw_device=device, device=torch.device("cpu"))
    return y[0].argmax(0).numpy().astype(np.uint8)


def raw_forward(model: torch.nn.Module, tile: int, batch: int, repeats: int, device: torch.device) -> dict:
    grid = TileGrid.build((10**6, 10**6), tile, Geometry.of(model))
    t = grid.tile_shape[0]
    x = torch.rand(batch, 3, t, t, device=device).contiguous(memory_format=torch.channels_last)
    precision = unetseg.inference.amp.resolve_precision("auto", device)
    with torch.inference_mode(), precision.autocast(device):
        model(x)
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
        sync(device)
        seconds = (time.perf_counter() - start) / repeats
    return {"tile": t, "batch": batch, "useful_px": grid.rows.keep ** 2, "mps": batch * grid.rows.keep**2 / seconds / 1e6,
            "precision": precision.name}


def timed(fn, image_px: int) -> tuple[np.ndarray, dict]:
    with PeakRSS() as rss:
        start = time.perf_counter()
        labels = fn()
        seconds = time.perf_counter() - start
    return labels, {"seconds": seconds, "mps": image_px / seconds / 1e6, "peak_rss_mib": rss.peak_mib}


STREAM_CHILD = textwrap.dedent("""
    import json, sys, threading, time, numpy as np, psutil, torch, unetseg
    from unetseg.io import TiffTileWriter, open_image
    peak = [0]
    def sample():  # ru_maxrss would report the parent's high-water mark inherited through fork
        proc = psutil.Process()
        while True:
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.01)
    threading.Thread(target=sample, daemon=True).start()
    path, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = unetseg.UNet(3, 2, base_channels=8, depth=3, padding="same").eval()
    src = open_image(path)
    h, w = src.shape[:2]
    time.sleep(0.05)
    base = peak[0] / 2**20
    with TiffTileWriter(out, (h, w), np.uint8) as writer:
        unetseg.predict_tiled(model, src.array, tile_size=512, out=writer)
    print(json.dumps({"side": h, "base_mib": base, "peak_mib": peak[0] / 2**20}))
""")


def build_stream_tiff(path: Path, side: int) -> None:
    import tifffile
    if path.exists():
        return
    sample = make_image(1024)[0]

    def tiles():
        for r in range(0, side, 256):
            for c in range(0, side, 256):
                yield sample[r % 1024 : r % 1024 + 256, c % 1024 : c % 1024 + 256]
    tmp = path.with_suffix(".part.tif")
    tifffile.imwrite(tmp, tiles(), shape=(side, side, 3), dtype=np.uint8, tile=(256, 256), compression="zlib",
                     photometric="rgb", bigtiff=True)
    os.replace(tmp, path)


def streaming_section(workdir: Path, sides: list[int]) -> dict:
    runs = []
    for side in sides:
        src = workdir / f"stream_{side}.tif"
        build_stream_tiff(src, side)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", STREAM_CHILD, str(src), str(workdir / f"stream_{side}_labels.tif")],
                              capture_output=True, text=True, check=True)
        run = json.loads(proc.stdout.strip().splitlines()[-1])
        run["seconds"] = time.perf_counter() - start
        runs.append(run)
    return {"runs": runs, "peak_ratio_large_vs_small": runs[-1]["peak_mib"] / runs[0]["peak_mib"],
            "growth_ratio_large_vs_small": (runs[-1]["peak_mib"] - runs[-1]["base_mib"])
            / max(runs[0]["peak_mib"] - runs[0]["base_mib"], 1e-9),
            "area_ratio": (sides[-1] / sides[0]) ** 2}


def build_models(args: argparse.Namespace, image: np.ndarray, labels: np.ndarray,
                 device: torch.device) -> dict[str, torch.nn.Module]:
    if args.checkpoint:
        return {Path(args.checkpoint).stem: unetseg.load_model(args.checkpoint).to(device)}
    torch.manual_seed(0)
    models = {
        "smp-unet-resnet18": unetseg.build_model("smp-unet", encoder_name="resnet18", in_channels=3, num_classes=2),
        f"unet-valid-base{args.unet_base}": unetseg.UNet(3, 2, base_channels=args.unet_base, depth=4, padding="valid",
                                                          norm="batch"),
    }
    for name, model in models.items():
        print(f"[{name}] fitting {args.fit_steps} steps ...", file=sys.stderr)
        fit_briefly(model.to(device), image, labels, args.fit_steps, 256)
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="benchmark this checkpoint instead of the two built-in models")
    parser.add_argument("--size", type=int, default=4096, help="benchmark image side (default 4096)")
    parser.add_argument("--agree", type=int, default=2048, help="side of the crop used for label agreement (default 2048)")
    parser.add_argument("--stream", type=int, default=16384, help="side of the streamed TIFF (default 16384; 0 skips the streaming section)")
    parser.add_argument("--device", default="cpu", help="torch device of the models (default cpu)")
    parser.add_argument("--unet-base", type=int, default=64, help="U-Net base channels (default 64, the paper's)")
    parser.add_argument("--fit-steps", type=int, default=60, help="training steps of the built-in models (default 60)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each section; the best counts")
    parser.add_argument("--quick", action="store_true", help="smoke-size run (768 px image, 256 crop, 2048 stream)")
    parser.add_argument("--workdir", default="bench_out", help="folder for the TIFFs and the JSON (default bench_out)")
    parser.add_argument("--json", default=None, help="JSON report path (default WORKDIR/benchmark.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.agree, args.stream = 768, 256, 2048 if args.stream else 0
        args.unet_base, args.fit_steps = 16, 5
    device = torch.device(args.device)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    image, labels = make_image(args.size)
    crop = image[: args.agree, : args.agree]
    report = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": str(device),
                          "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
              "image": list(image.shape), "agreement_crop": args.agree, "weights": args.checkpoint or f"trained {args.fit_steps} steps on the image's nuclei labels",
              "models": {}}
    px = image.shape[0] * image.shape[1]
    for name, model in build_models(args, image, labels, device).items():
        print(f"[{name}] reference whole-crop prediction ...", file=sys.stderr)
        reference = whole_labels(model, crop, device)
        runs = {}
        runs["a_raw_forward"] = raw_forward(model, 512, auto_batch_size(device), 1 if args.quick else 3 * args.repeats,
                                            device)
        methods = {
            "b_predict_tiled_auto": lambda img: unetseg.predict_tiled(model, img, tile_size="auto"),
            "c_monai_fp32": lambda img: monai_labels(model, img, device, sw_batch_size=4),
            "d_predict_tiled_fp32": lambda img: unetseg.predict_tiled(model, img, tile_size=512, amp=False),
            "e_monai_fp32_sw1": lambda img: monai_labels(model, img, device, sw_batch_size=1),
        }
        for key, fn in methods.items():
            print(f"[{name}] {key} ...", file=sys.stderr)
            fn(crop)  # warm-up (and the tile-size measurement of "auto", which is cached)
            trials = [timed(lambda: fn(image), px)[1] for _ in range(1 if args.quick else args.repeats)]
            stats = max(trials, key=lambda t: t["mps"])
            stats["peak_rss_mib"] = max(t["peak_rss_mib"] for t in trials)
            stats["label_agreement"] = float((fn(crop) == reference).mean())
            runs[key] = stats
        for key in ("a_raw_forward", *methods):
            runs[key]["speed_vs_monai"] = runs[key]["mps"] / runs["c_monai_fp32"]["mps"]
            runs[key]["speed_vs_monai_sw1"] = runs[key]["mps"] / runs["e_monai_fp32_sw1"]["mps"]
        report["models"][name] = runs
    if args.stream > 0:
        print("[streaming] ...", file=sys.stderr)
        report["streaming"] = streaming_section(workdir, sorted({min(4096, args.stream // 4), args.stream}))
    path = Path(args.json or workdir / "benchmark.json")
    path.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nImage {image.shape[1]}x{image.shape[0]} RGB uint8; agreement on a {args.agree}^2 crop vs fp32 whole-crop "
          f"prediction; weights: {report['weights']}\n")
    print("| model | method | MP/s | vs MONAI (c) | vs MONAI (e) | label agreement | peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, runs in report["models"].items():
        raw = runs["a_raw_forward"]
        labels = {"a_raw_forward": f"(a) raw forward, {raw['batch']}x{raw['tile']}^2 ({raw['precision']})",
                  "b_predict_tiled_auto": "(b) predict_tiled defaults", "c_monai_fp32": "(c) MONAI fp32, sw_batch 4",
                  "d_predict_tiled_fp32": "(d) predict_tiled fp32, tile 512", "e_monai_fp32_sw1": "(e) MONAI fp32, sw_batch 1"}
        for key, label in labels.items():
            r = runs[key]
            agreement = f"{r['label_agreement']:.4%}" if "label_agreement" in r else "-"
            rss = f"{r['peak_rss_mib']:.0f}" if "peak_rss_mib" in r else "-"
            print(f"| {name} | {label} | {r['mps']:.2f} | {r['speed_vs_monai']:.2f} | {r['speed_vs_monai_sw1']:.2f} | "
                  f"{agreement} | {rss} |")
    s = report.get("streaming")
    if s is None:
        return 0
    print("\n| streamed TIFF side | peak RSS (MiB) | seconds |\n|---:|---:|---:|")
    for run in s["runs"]:
        print(f"| {run['side']} | {run['peak_mib']:.0f} | {run['seconds']:.1f} |")
    print(f"\nPeak RSS ratio {s['peak_ratio_large_vs_small']:.2f} (growth over the post-import baseline: "
          f"{s['growth_ratio_large_vs_small']:.2f}x) for {s['area_ratio']:.0f}x the pixels. JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
