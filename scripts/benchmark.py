"""Tiled-inference benchmark: predict_tiled vs its own forward floor, one whole-image pass and MONAI's sliding window.

Run on a quiet machine: ``uv run python scripts/benchmark.py [--checkpoint CKPT] [--quick] [--json bench_out/benchmark.json]``.

Models (3 -> 2 classes): an smp ResNet-18 U-Net, the paper's U-Net (valid padding, depth 4) and a same-padding
U-Net (depth 4), both with ``--unet-base`` channels (64 is the paper's network). Without ``--checkpoint`` they
are *briefly trained* (``--fit-steps`` Adam steps on random crops) on the benchmark image's own nuclei labels:
a random network's outputs are near-ties everywhere, so its label agreement would measure rounding noise; a
trained network is decisive away from object boundaries, as real models are. Same-padding models then get their
halo measured (:func:`unetseg.training.halo.measure_halo`), as training does.

Image: the built-in nuclei sample tiled with flips to SIZE^2 and coloured into RGB with smooth per-channel gains.

Sections per model, all on the same image in one process, so the ratios compare like with like:
(a) the inference graph's forward on 512^2 tiles (MP/s of useful output pixels: the floor), (a2) the same
compiled, (b) ``predict_tiled`` defaults, (b2) defaults with ``halo="exact"``, (b3) defaults with
``compile=True`` (timed after the compiling warm-up), (d) fp32 (``amp=False``), (w) one eager forward of the
whole mirror-padded image in the default precision (no tiling), (c)/(e) MONAI ``sliding_window_inference``
(roi 512, overlap 0.25, gaussian, fp32, model in channels_last: its best) with sw_batch_size 4 and 1 (a
valid model is wrapped to mirror-pad each window). "vs MONAI best" divides by the faster of (c) and (e). Label
agreement is against one fp32 pass over the whole mirror-padded image. Peak RSS is sampled during each
section and reported minus the RSS after ``import unetseg``. Streaming: a STREAM^2 RGB tiled TIFF is built
once (streamed) and segmented through the streaming path in a subprocess; its peak RSS is compared with a
4096^2 run.
"""
from __future__ import annotations

import argparse
import importlib.util
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
from unetseg.engines.graph import InferenceGraph
from unetseg.models.geometry import Geometry
from unetseg.models.precision import cpu_has_fast_bf16, cpu_model, resolve_precision
from unetseg.tiling import tiled
from unetseg.tiling.autotile import auto_batch_size
from unetseg.tiling.grid import TileGrid
from unetseg.training.halo import measure_halo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_volumes import print_volumes, volumes_section  # noqa: E402  (the volumes section, next to this file)


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
    ctx = geometry.margin if geometry.padding == "valid" else geometry.halo_for("exact")
    off = 0 if geometry.padding == "valid" else ctx
    pads = [(ctx, geometry.smallest_valid_at_least(n + 2 * ctx) - n - ctx) for n in image.shape[:2]]
    x = np.pad(image.astype(np.float32) / 255, (*pads, (0, 0)), mode="reflect")
    with torch.inference_mode():
        x = torch.from_numpy(x).permute(2, 0, 1)[None].to(device).contiguous(memory_format=torch.channels_last)
        y = model(x).float().cpu()
    return y[0].argmax(0).numpy()[off : off + image.shape[0], off : off + image.shape[1]].astype(np.uint8)


def monai_labels(model: torch.nn.Module, image: np.ndarray, device: torch.device, sw_batch_size: int) -> np.ndarray:
    from monai.inferers import sliding_window_inference
    net = MirrorPadToSame(model) if model.padding == "valid" else model
    net = net.to(memory_format=torch.channels_last)  # MONAI at its best: oneDNN's NHWC convolutions
    x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous(
        memory_format=torch.channels_last)
    with torch.inference_mode():  # MONAI's usual use: image on the host, windows on the model's device
        y = sliding_window_inference(x, roi_size=(512, 512), sw_batch_size=sw_batch_size, predictor=net, overlap=0.25,
                                     mode="gaussian", sw_device=device, device=torch.device("cpu"))
    return y[0].argmax(0).numpy().astype(np.uint8)


def raw_forward(model: torch.nn.Module, tile: int, batch: int, repeats: int, device: torch.device,
                compile: bool = False) -> dict:
    """The floor: the inference graph (eager or compiled) on tile-sized inputs, MP/s of useful output pixels."""
    grid = TileGrid.build((10**6, 10**6), tile, Geometry.of(model))
    t = grid.tile_shape[0]
    x = torch.rand(batch, 3, t, t, device=device).contiguous(memory_format=torch.channels_last)
    precision = resolve_precision("auto", device)
    graph = InferenceGraph(model, device, precision, compile=compile)
    with torch.inference_mode():
        graph(x)
        sync(device)
        seconds = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            graph(x)
            sync(device)
            seconds = min(seconds, time.perf_counter() - start)
    return {"tile": t, "batch": batch, "useful_px": grid.rows.keep ** 2, "mps": batch * grid.rows.keep**2 / seconds / 1e6,
            "precision": precision.name}


def eager_whole_image(model: torch.nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray:
    """One eager forward of the whole mirror-padded image in the default precision (autocast), no tiling."""
    precision = resolve_precision("auto", device)
    with precision.autocast(device):
        return whole_labels(model, image, device)


def timed(fn, image_px: int) -> tuple[np.ndarray, dict]:  # noqa: D103
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


OBJECTS_CHILD = textwrap.dedent("""
    import json, sys, threading, time, psutil
    peak = [0]
    def sample():
        proc = psutil.Process()
        while True:
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.01)
    threading.Thread(target=sample, daemon=True).start()
    import unetseg
    from unetseg.cli import main
    time.sleep(0.05)
    base = peak[0] / 2**20
    start = time.perf_counter()
    code = main(sys.argv[1:])
    print(json.dumps({"code": code, "base_mib": base, "peak_mib": peak[0] / 2**20,
                      "seconds": time.perf_counter() - start}))
""")


def cli_stream_section(workdir: Path, side: int, model: torch.nn.Module) -> dict:
    """``unetseg predict --tile-size 1024 --format index`` of the SIDE^2 streamed RGB TIFF in a child process, once
    with the default engine and once with ``--engine torch``: peak RSS above ``import unetseg`` and seconds."""
    src = workdir / f"stream_{side}.tif"
    build_stream_tiff(src, side)
    ckpt = unetseg.save_checkpoint(model.cpu(), workdir / "stream_model.pt")
    runs = {}
    for engine in ("auto", "torch"):
        out = workdir / f"cli_stream_{side}_{engine}"
        args = ["predict", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(out), "--tile-size",
                "1024", "--format", "index", "--engine", engine]
        proc = subprocess.run([sys.executable, "-c", OBJECTS_CHILD, *args], capture_output=True, text=True,
                              check=True)
        run = json.loads(proc.stdout.strip().splitlines()[-1])
        runs[engine] = {**run, "growth_mib": run["peak_mib"] - run["base_mib"]}
    return {"side": side, "runs": runs}


def objects_section(workdir: Path, side: int, model: torch.nn.Module) -> dict:
    """``unetseg predict --format instances,objects,geojson`` of a SIDE^2 streamed RGB TIFF in a child process:
    peak RSS above ``import unetseg``, time, object count."""
    src = workdir / f"stream_{side}.tif"
    build_stream_tiff(src, side)
    ckpt = unetseg.save_checkpoint(model.cpu(), workdir / "objects_model.pt", class_names=["background", "nucleus"])
    out = workdir / f"objects_{side}"
    args = ["predict", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(out), "--tile-size", "512",
            "--format", "instances,objects,geojson", "--min-object-size", "10"]
    proc = subprocess.run([sys.executable, "-c", OBJECTS_CHILD, *args], capture_output=True, text=True, check=True)
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    with open(out / f"stream_{side}_objects.csv") as f:
        run["objects"] = sum(1 for _ in f) - 1
    run["geojson_mib"] = (out / f"stream_{side}_objects.geojson").stat().st_size / 2**20
    return {"side": side, **run, "growth_mib": run["peak_mib"] - run["base_mib"]}


def distance_model(image: np.ndarray, base: int, steps: int, device: torch.device) -> torch.nn.Module:
    """A same-padding U-Net (``base``, depth 4) learning the distance-level instance target (the plan's default for
    instance masks: 6 levels of 2 px), fitted ``steps`` steps to the image's nuclei, with the object record whose
    seeded watershed ``predict --format instances`` runs."""
    from unetseg.data.instances import InstanceLayout
    from unetseg.models.meta import instance_record

    sample = np.load(Path(unetseg.__file__).parent / "data" / "samples" / "nuclei.npz")
    layout = InstanceLayout(("nucleus",), target="distance")
    targets = layout.targets(mirror_tile(sample["instances"], image.shape[0])).astype(np.int64)
    torch.manual_seed(0)
    model = unetseg.UNet(3, layout.levels + 1, base_channels=base, depth=4, padding="same")
    print(f"[objects-distance] fitting {steps} steps ...", file=sys.stderr)
    fit_briefly(model.to(device), image, targets, steps, 256)
    model.meta = model.meta.updated(classes=layout.classes(), instances=instance_record(layout))
    return model


def build_models(args: argparse.Namespace, image: np.ndarray, labels: np.ndarray,
                 device: torch.device) -> dict[str, torch.nn.Module]:
    if args.checkpoint:
        return {Path(args.checkpoint).stem: unetseg.load_model(args.checkpoint).to(device)}
    torch.manual_seed(0)
    models = {
        "smp-unet-resnet18": unetseg.build_model("smp-unet", encoder_name="resnet18", in_channels=3, num_classes=2),
        f"unet-valid-base{args.unet_base}": unetseg.UNet(3, 2, base_channels=args.unet_base, depth=4, padding="valid",
                                                          norm="batch"),
        f"unet-same-base{args.unet_base}": unetseg.UNet(3, 2, base_channels=args.unet_base, depth=4, padding="same",
                                                         norm="batch"),
    }
    if args.models:
        models = {k: v for k, v in models.items() if k in args.models.split(",")}
    for name, model in models.items():
        print(f"[{name}] fitting {args.fit_steps} steps ...", file=sys.stderr)
        fit_briefly(model.to(device), image, labels, args.fit_steps, 256)
        if model.padding == "same":  # what training records in the checkpoint (halo="auto")
            probes = [image[:512, :512], image[-512:, -512:]]
            model.meta = model.meta.with_halo(measure_halo(model, probes, device=device))
            print(f"[{name}] measured halo {model.meta.halo}", file=sys.stderr)
    return models


METHOD_LABELS = {
    "a_raw_forward": "(a) raw forward floor, eager graph",
    "a2_compiled_forward": "(a2) raw forward floor, compiled graph",
    "b_predict_tiled_defaults": "(b) predict_tiled defaults",
    "b2_defaults_halo_exact": "(b2) defaults, halo=exact",
    "b3_defaults_compiled": "(b3) defaults, compile=True",
    "d_predict_tiled_fp32": "(d) predict_tiled fp32 (amp=False)",
    "w_whole_image_eager": "(w) one eager whole-image pass (default precision)",
    "c_monai_sw4": "(c) MONAI fp32 channels_last, sw_batch 4",
    "e_monai_sw1": "(e) MONAI fp32 channels_last, sw_batch 1",
}


def bench_model(model: torch.nn.Module, image: np.ndarray, args: argparse.Namespace, device: torch.device) -> dict:
    px = image.shape[0] * image.shape[1]
    reference = whole_labels(model, image, device)
    batch, repeats = auto_batch_size(device), 1 if args.quick else args.repeats
    runs = {"a_raw_forward": raw_forward(model, 512, batch, 3 * repeats, device)}
    if not args.no_compile:
        runs["a2_compiled_forward"] = raw_forward(model, 512, batch, 3 * repeats, device, compile=True)
    methods = {
        "b_predict_tiled_defaults": lambda img: unetseg.predict_tiled(model, img),
        "b2_defaults_halo_exact": lambda img: unetseg.predict_tiled(model, img, halo="exact"),
        "b3_defaults_compiled": lambda img: unetseg.predict_tiled(model, img, compile=True),
        "d_predict_tiled_fp32": lambda img: unetseg.predict_tiled(model, img, amp=False),
        "w_whole_image_eager": lambda img: eager_whole_image(model, img, device),
        "c_monai_sw4": lambda img: monai_labels(model, img, device, sw_batch_size=4),
        "e_monai_sw1": lambda img: monai_labels(model, img, device, sw_batch_size=1),
    }
    if args.no_compile:
        methods.pop("b3_defaults_compiled")
    for key, fn in methods.items():
        print(f"  {key} ...", file=sys.stderr)
        fn(image[:768, :768])  # warm-up: kernels, the tile-size measurement of "auto" (cached), compilation
        trials = [timed(lambda fn=fn: fn(image), px) for _ in range(repeats)]
        labels, stats = max(trials, key=lambda t: t[1]["mps"])
        stats["peak_rss_mib"] = max(t[1]["peak_rss_mib"] for t in trials)
        stats["label_agreement"] = float((labels == reference).mean())
        runs[key] = stats
    runs["defaults_chose"] = tiled(model, image[:768, :768]).report.as_dict()
    monai_best = max(runs["c_monai_sw4"]["mps"], runs["e_monai_sw1"]["mps"])
    for key in METHOD_LABELS:
        if key in runs:
            runs[key]["vs_monai_best"] = runs[key]["mps"] / monai_best
            runs[key]["vs_whole_image"] = runs[key]["mps"] / runs["w_whole_image_eager"]["mps"]
    return runs


ENGINE_ROWS = {
    "hand_bf16": "hand-written OpenVINO loop, bf16 (core 1024, context 48)",
    "defaults": "`predict_tiled(model, image)`, defaults (nothing set)",
    "cli": "`unetseg predict` (CLI, the defaults' engine and tile), 4 images in one call, start-up included",
    "torch_auto_amp": "engine=torch, default precision",
    "hand_f32": "hand-written OpenVINO loop, fp32 (accuracy mode)",
    "openvino_fp32": "engine=openvino, amp=False",
    "torch_fp32": "engine=torch, amp=False",
    "onnxruntime_fp32": "engine=onnxruntime, amp=False",
    "int8": "amp=int8 (OpenVINO + NNCF, calibrated on the image)",
    "monai_sw1": "MONAI sliding window fp32, channels_last, sw_batch 1 (`bench` extra)",
    "monai_sw4": "MONAI sliding window fp32, channels_last, sw_batch 4 (`bench` extra)",
}


def load_anchor(path: Path):
    """The hand-written OpenVINO loop (../shared/anchors/openvino_loop.py), run as it is, not copied; None if absent."""
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("openvino_loop", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def engines_section(model: torch.nn.Module, image: np.ndarray, args: argparse.Namespace, workdir: Path) -> dict:
    """The engines side by side on one model and image, best of ``--repeats`` each after a warm-up call (so
    "auto" choices and conversions are made once, as in a process that segments many images): the hand-written
    OpenVINO loop of the engines issue, the library defaults, the CLI, each engine and precision, int8."""
    px = image.shape[0] * image.shape[1]
    reference = whole_labels(model, image, torch.device("cpu"))
    checkpoint = workdir / "engines_model.pt"
    unetseg.save_checkpoint(model, checkpoint)
    model = unetseg.load_model(checkpoint)
    methods = {
        "defaults": lambda: unetseg.predict_tiled(model, image),
        "torch_auto_amp": lambda: unetseg.predict_tiled(model, image, engine="torch"),
        "openvino_fp32": lambda: unetseg.predict_tiled(model, image, engine="openvino", amp=False),
        "torch_fp32": lambda: unetseg.predict_tiled(model, image, engine="torch", amp=False),
        "onnxruntime_fp32": lambda: unetseg.predict_tiled(model, image, engine="onnxruntime", amp=False),
        "int8": lambda: unetseg.predict_tiled(model, image, amp="int8"),
    }
    if importlib.util.find_spec("monai") is not None:  # fp32 against MONAI at its best, in the same rounds
        cpu = torch.device("cpu")
        methods["monai_sw1"] = lambda: monai_labels(model, image, cpu, sw_batch_size=1)
        methods["monai_sw4"] = lambda: monai_labels(model, image, cpu, sw_batch_size=4)
    anchor = load_anchor(Path(args.anchor))
    if anchor is not None:
        x = image.astype(np.float32) / 255
        for key, precision in (("hand_bf16", "bf16"), ("hand_f32", "f32")):
            request = anchor.compile_tile_model(model, 1024 + 2 * 48, 3, precision, torch.get_num_threads())
            methods[key] = lambda request=request: anchor.openvino_loop(request, x, 1024, 48)
    keys = [k for k in ENGINE_ROWS if k in methods]
    for key in keys:
        print(f"  {key} warm-up ...", file=sys.stderr)
        methods[key]()  # conversion, compilation, the measured choices of "auto", int8's calibration
    trials: dict[str, list] = {k: [] for k in keys}
    for _ in range(args.repeats):  # rounds over all rows, so a slow spell of a shared machine hits them alike
        for key in keys:
            trials[key].append(timed(methods[key], px))
    runs: dict = {}
    for key in keys:
        labels, stats = max(trials[key], key=lambda t: t[1]["mps"])
        stats["all_mps"] = [t[1]["mps"] for t in trials[key]]
        stats["label_agreement"] = float((labels == reference).mean())
        runs[key] = stats
    runs["defaults_chose"] = tiled(model, image).report.as_dict()
    runs["cli"] = cli_run(checkpoint, image, workdir, reference, runs["defaults_chose"])
    monai = [runs[k]["mps"] for k in ("monai_sw1", "monai_sw4") if k in runs]
    for key in ENGINE_ROWS:
        if key in runs and "hand_bf16" in runs:
            runs[key]["vs_hand_bf16"] = runs[key]["mps"] / runs["hand_bf16"]["mps"]
            runs[key]["vs_hand_f32"] = runs[key]["mps"] / runs["hand_f32"]["mps"]
        if key in runs and monai:
            runs[key]["vs_monai_best"] = runs[key]["mps"] / max(monai)
    return runs


def cli_run(checkpoint: Path, image: np.ndarray, workdir: Path, reference: np.ndarray, chose: dict) -> dict:
    """``unetseg predict`` on 4 PNG copies of the image in one call, with the engine and tile size the library's
    defaults chose: wall seconds per image, start-up (imports, model conversion) included."""
    import cv2
    folder, out = workdir / "cli_in", workdir / "cli_out"
    folder.mkdir(exist_ok=True)
    for i in range(4):
        cv2.imwrite(str(folder / f"img{i}.png"), image[..., ::-1])
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "unetseg.cli", "predict", "--checkpoint", str(checkpoint), "--input",
                    str(folder), "--output", str(out), "--format", "index", "--engine", chose["engine"],
                    "--tile-size", str(chose["tile_shape"][0])], check=True, capture_output=True)
    per_image = (time.perf_counter() - start) / 4
    labels = cv2.imread(str(next(out.glob("img0*index*"))), cv2.IMREAD_UNCHANGED)
    return {"seconds": per_image, "mps": image.shape[0] * image.shape[1] / per_image / 1e6,
            "label_agreement": float((labels == reference).mean())}


def print_engines(runs: dict) -> None:
    print("\n| engines run | MP/s | vs hand loop bf16 | vs hand loop fp32 | vs MONAI best | label agreement |\n"
          "|---|---:|---:|---:|---:|---:|")
    for key, label in ENGINE_ROWS.items():
        r = runs.get(key)
        if r is None:
            continue
        bf16, f32, monai = (f"{r[k]:.2f}x" if k in r else "-" for k in ("vs_hand_bf16", "vs_hand_f32", "vs_monai_best"))
        print(f"| {label} | {r['mps']:.2f} | {bf16} | {f32} | {monai} | {r['label_agreement']:.3%} |")
    chose = runs["defaults_chose"]
    print(f"\nDefaults chose: engine {chose['engine']}, {chose['precision']}, tile {chose['tile_shape']}, "
          f"context {chose['context']} px")


def print_report(report: dict, path: Path) -> None:
    m = report["machine"]
    print(f"\nCPU: {m['cpu_model']} ({m['cpus']} cores, fast bf16: {m['fast_bf16']}, torch {m['torch']}, "
          f"{m['threads']} threads); image {report['image'][1]}x{report['image'][0]} RGB uint8; agreement vs an "
          f"fp32 whole-image pass; weights: {report['weights']}\n")
    print("| model | method | MP/s | vs MONAI best | vs whole-image pass | label agreement | peak RSS - import (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, runs in report["models"].items():
        for key, label in METHOD_LABELS.items():
            r = runs.get(key)
            if r is None:
                continue
            if key.startswith("a"):
                label += f", {r['batch']}x{r['tile']}^2 {r['precision']}"
            agreement = f"{r['label_agreement']:.4%}" if "label_agreement" in r else "-"
            rss = f"{r['peak_rss_mib'] - report['import_rss_mib']:.0f}" if "peak_rss_mib" in r else "-"
            print(f"| {name} | {label} | {r['mps']:.2f} | {r['vs_monai_best']:.2f} | {r['vs_whole_image']:.2f} | "
                  f"{agreement} | {rss} |")
        chose = runs["defaults_chose"]
        print(f"| {name} | defaults chose: tile {chose['tile_shape']}, context {chose['context']} px, "
              f"{chose['precision']}, compiled {chose['compiled']} | | | | | |")
    s = report.get("streaming")
    if s is not None:
        print("\n| streamed TIFF side | peak RSS (MiB) | peak - import (MiB) | seconds |\n|---:|---:|---:|---:|")
        for run in s["runs"]:
            print(f"| {run['side']} | {run['peak_mib']:.0f} | {run['peak_mib'] - run['base_mib']:.0f} | "
                  f"{run['seconds']:.1f} |")
        print(f"\nPeak RSS ratio {s['peak_ratio_large_vs_small']:.2f} for {s['area_ratio']:.0f}x the pixels.")
    c = report.get("cli_stream")
    if c is not None:
        print(f"\n`unetseg predict --tile-size 1024 --format index`, {c['side']}^2 RGB tiled TIFF, "
              f"{report['engines_model'] if 'engines_model' in report else 'the engines model'}:\n"
              "| engine | peak RSS - import (MiB) | seconds |\n|---|---:|---:|")
        for engine, run in c["runs"].items():
            print(f"| {engine} | {run['growth_mib']:.0f} | {run['seconds']:.1f} |")
    if report.get("engines"):
        print_engines(report["engines"])
    for key, target in (("objects", "2 classes, connected components"),
                        ("objects_distance", "distance levels, seeded watershed")):
        o = report.get(key)
        if o:
            print(f"\nObjects ({target}), streamed: {o['side']}^2 RGB TIFF, --format instances,objects,geojson: "
                  f"{o['objects']} objects, GeoJSON {o['geojson_mib']:.0f} MiB, {o['seconds']:.0f} s, peak RSS "
                  f"{o['growth_mib']:.0f} MiB above import unetseg ({o['peak_mib']:.0f} MiB in all)")
    print(f"JSON: {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="benchmark this checkpoint instead of the built-in models")
    parser.add_argument("--size", type=int, default=2048, help="benchmark image side (default 2048)")
    parser.add_argument("--stream", type=int, default=16384, help="side of the streamed TIFF (default 16384; 0 skips the streaming section)")
    parser.add_argument("--device", default="cpu", help="torch device of the models (default cpu)")
    parser.add_argument("--unet-base", type=int, default=16, help="U-Net base channels (default 16; 64 is the paper's)")
    parser.add_argument("--fit-steps", type=int, default=60, help="training steps of the built-in models (default 60)")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats of each section; the best counts")
    parser.add_argument("--models", default=None, help="comma list of built-in model names to run (default all)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile sections")
    parser.add_argument("--quick", action="store_true", help="smoke-size run (768 px image, 2048 stream)")
    parser.add_argument("--sections", default="models,engines,streaming,objects,objects-distance,volumes",
                        help="comma list of models (tiled inference vs MONAI), engines (vs the hand-written "
                             "OpenVINO loop, int8, the CLI), streaming (RSS of predict_tiled into a TIFF; the CLI "
                             "with --tile-size 1024, default engine and torch), objects (RSS of "
                             "instances,objects,geojson of a 2-class model), objects-distance (the same with a "
                             "distance-level model's seeded watershed) and volumes (a 3D U-Net on the brain volume vs MONAI's 3D "
                             "sliding window; RSS of a 512^3 NIfTI prediction: scripts/bench_volumes.py); default all")
    parser.add_argument("--volume-memory", type=int, default=512,
                        help="side of the cubic NIfTI the volumes section segments for its RSS (0 skips it)")
    parser.add_argument("--anchor", default=str(Path(__file__).resolve().parents[2] / "shared" / "anchors" /
                                                "openvino_loop.py"),
                        help="the hand-written OpenVINO loop the engines section compares with (run as it is)")
    parser.add_argument("--workdir", default="bench_out", help="folder for the TIFFs and the JSON (default bench_out)")
    parser.add_argument("--json", default=None, help="JSON report path (default WORKDIR/benchmark.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.stream = 768, 2048 if args.stream else 0
        args.fit_steps = 5
    import_rss = psutil.Process().memory_info().rss / 2**20  # after `import unetseg` (and torch), before any work
    device = torch.device(args.device)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    image, labels = make_image(args.size)
    report = {"machine": {"cpu_model": cpu_model() or "unknown CPU", "fast_bf16": cpu_has_fast_bf16(), "cpus": os.cpu_count(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": str(device),
                          "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
              "import_rss_mib": import_rss, "image": list(image.shape),
              "weights": args.checkpoint or f"trained {args.fit_steps} steps on the image's nuclei labels", "models": {}}
    print(f"CPU: {report['machine']['cpu_model']}, fast bf16: {report['machine']['fast_bf16']}", file=sys.stderr)
    sections = set(args.sections.split(","))
    if "models" in sections:
        for name, model in build_models(args, image, labels, device).items():
            print(f"[{name}]", file=sys.stderr)
            report["models"][name] = bench_model(model, image, args, device)
    if "engines" in sections:
        print("[engines] ...", file=sys.stderr)
        args.models = f"unet-same-base{args.unet_base}"
        model = next(iter(build_models(args, image, labels, device).values()))
        report["engines"] = engines_section(model, image, args, workdir)
    if args.stream > 0 and "streaming" in sections:
        print("[streaming] ...", file=sys.stderr)
        report["streaming"] = streaming_section(workdir, sorted({min(4096, args.stream // 4), args.stream}))
        args.models = f"unet-same-base{args.unet_base}"
        model = next(iter(build_models(args, image, labels, device).values()))
        report["engines_model"] = f"same-padding U-Net base {args.unet_base}, depth 4, 3 -> 2 classes"
        report["cli_stream"] = cli_stream_section(workdir, args.stream, model)
    if args.stream > 0 and "objects" in sections:
        print("[objects] ...", file=sys.stderr)
        args.models = f"unet-same-base{args.unet_base}"
        model = next(iter(build_models(args, image, labels, device).values()))
        report["objects"] = objects_section(workdir, args.stream, model)
    if args.stream > 0 and "objects-distance" in sections:
        print("[objects-distance] ...", file=sys.stderr)
        model = distance_model(image, args.unet_base, args.fit_steps, device)
        report["objects_distance"] = objects_section(workdir, args.stream, model)
    if "volumes" in sections:
        print("[volumes] ...", file=sys.stderr)
        report["volumes"] = volumes_section(max(args.unet_base // 2, 2), args.fit_steps, args.repeats, workdir,
                                            0 if args.quick else args.volume_memory, OBJECTS_CHILD)
    path = Path(args.json or workdir / "benchmark.json")
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_report(report, path)
    if "volumes" in report:
        print_volumes(report["volumes"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
