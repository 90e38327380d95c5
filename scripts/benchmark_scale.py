"""Scale benchmark: one SIDE^2 image through Dask (``unetseg predict --dask local:N``) vs one process, same cores.

Run on a quiet machine (the full size takes a while): ``uv run python scripts/benchmark_scale.py
[--side 16384] [--workers 2] [--scaling 1,2,4,8] [--device cpu|cuda] [--json bench_out/scale.json]``.
Check it on a small size first: ``--side 1024``.

Input: the built-in nuclei sample mirror-tiled to SIDE^2 (grayscale uint8), written chunk by chunk as an
OME-Zarr image and as a tiled pyramidal TIFF (``--inputs``). Model: a same-padding U-Net (1 -> 2 classes,
``--base`` channels, depth 4), random weights (speed does not depend on them), saved as a checkpoint that the
workers load once each. Both runs go through what ``unetseg predict`` runs: the single process through
``predict_file`` (``predict_tiled`` streaming into OME-Zarr labels) with all cores as torch threads, Dask
through ``predict_file_dask`` on a LocalCluster of N single-threaded worker processes with cores/N torch
threads each. Reported per run: seconds, MP/s, peak RSS (the process; per Dask worker: sampled every 0.2 s),
whether the Dask labels equal the single-process labels bit for bit (fp32, batch 1 by default), and Dask's
speed as a fraction of the single process (target >= 0.9). ``--scaling`` reruns Dask with 1, 2, 4, 8 workers
and reports the speed-up over 1 worker (target >= 0.8 x linear at 8).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import tifffile
import torch
import zarr

import unetseg
from unetseg.data.scenes import mirror_tile
from unetseg.engines.allocator import keep_freed_memory
from unetseg.outputs import predict_file, predict_file_dask
from unetseg.scale.dask import dask_client
from unetseg.tiling import TileOptions

ROOT = Path(__file__).resolve().parent.parent


def tile_block() -> np.ndarray:
    """One period of the mirror-tiled nuclei sample (2H x 2W): any aligned block of the big image equals it."""
    sample = np.load(ROOT / "unetseg" / "data" / "samples" / "nuclei.npz")["image"]
    return mirror_tile(sample, 2 * max(sample.shape[:2]))


def write_inputs(folder: Path, side: int, kinds: list[str]) -> list[Path]:
    """SIDE^2 OME-Zarr image and/or tiled pyramidal TIFF, written one period block at a time."""
    block = tile_block()
    period = block.shape[0]
    paths = []
    if "zarr" in kinds:
        from ome_zarr.format import FormatV04
        from ome_zarr.writer import write_multiscales_metadata

        path = folder / "big.ome.zarr"
        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        arr = group.create_array("0", shape=(side, side), chunks=(1024, 1024), dtype=np.uint8,
                                 chunk_key_encoding={"name": "v2", "separator": "/"})
        for r in range(0, side, period):
            for c in range(0, side, period):
                arr[r : r + period, c : c + period] = block[: side - r, : side - c]
        datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0]}]}]
        write_multiscales_metadata(group, datasets, fmt=FormatV04(), axes=["y", "x"])
        paths.append(path)
    if "tiff" in kinds:
        path = folder / "big.tif"
        with tifffile.TiffWriter(path, bigtiff=True) as tif:  # full size + one sub-resolution, as slides carry
            tif.write(_tiles(block, side), shape=(side, side), dtype=np.uint8, tile=(256, 256), subifds=1,
                      compression="zlib")
            half = -(-side // 2)  # the image is periodic, so level 1 is built from every 2nd pixel of one period
            tif.write(_tiles(block[::2, ::2], half), shape=(half, half), dtype=np.uint8, tile=(256, 256),
                      subfiletype=1, compression="zlib")
        paths.append(path)
    return paths


def _tiles(block: np.ndarray, side: int, tile: int = 256):
    """256^2 tiles of the periodic image built from ``block`` (whose side is a multiple of 256), row-major."""
    period = block.shape[0]
    assert period % tile == 0, "the period must hold whole tiles"
    for r in range(0, side, tile):
        for c in range(0, side, tile):
            t = np.zeros((tile, tile), np.uint8)
            src = block[r % period : r % period + tile, c % period : c % period + tile]
            t[: min(tile, side - r), : min(tile, side - c)] = src[: side - r, : side - c]
            yield t


class WorkerRSS:
    """Peak RSS (MiB) of each Dask worker, polled every 0.2 s with ``client.run``."""

    def __init__(self, client) -> None:
        self.client, self.peak, self._stop = client, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for worker, rss in self.client.run(lambda: psutil.Process().memory_info().rss).items():
                self.peak[worker] = max(self.peak.get(worker, 0), rss / 2**20)
            time.sleep(0.2)

    def __enter__(self) -> "WorkerRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class PeakRSS(WorkerRSS):
    """Peak RSS (MiB) of this process."""

    def __init__(self) -> None:
        super().__init__(None)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak["self"] = max(self.peak.get("self", 0), psutil.Process().memory_info().rss / 2**20)
            time.sleep(0.05)


def run_single(model, path: Path, out: Path, options: dict) -> dict:
    torch.set_num_threads(os.cpu_count() or 1)
    with PeakRSS() as rss:
        start = time.perf_counter()
        written = predict_file(model, path, out / f"single_{path.name.split('.')[0]}", ["ome-zarr"], options=options)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mib": rss.peak["self"], "output": str(written[0])}


def run_dask(model, ckpt: Path, path: Path, out: Path, workers: int, chunk: int, options: dict) -> dict:
    with dask_client(f"local:{workers}") as client, WorkerRSS(client) as rss:
        start = time.perf_counter()
        written = predict_file_dask(model, ckpt, path, out / f"dask{workers}_{path.name.split('.')[0]}", ["ome-zarr"],
                                    client=client, chunk=chunk, options=options)
        seconds = time.perf_counter() - start
    return {"workers": workers, "seconds": seconds, "peak_rss_mib_per_worker": sorted(rss.peak.values()),
            "output": str(written[0])}


def same_labels(a: str, b: str) -> bool:
    za, zb = zarr.open_group(a, mode="r")["0"], zarr.open_group(b, mode="r")["0"]
    step = 4096
    return all(np.array_equal(za[r : r + step, c : c + step], zb[r : r + step, c : c + step])
               for r in range(0, za.shape[0], step) for c in range(0, za.shape[1], step))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", type=int, default=16384)
    p.add_argument("--workers", type=int, default=2, help="Dask workers of the main comparison (default 2)")
    p.add_argument("--scaling", default="", help="comma list of worker counts to time, e.g. 1,2,4,8 (default: none)")
    p.add_argument("--inputs", default="zarr,tiff", help="zarr,tiff (default both)")
    p.add_argument("--base", type=int, default=16, help="U-Net base channels (default 16)")
    p.add_argument("--tile-size", type=int, default=512)
    p.add_argument("--chunk", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--amp", default="off", help="off (default, exact comparison) | auto | bf16 | fp16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--engine", default="auto", help="auto (default) | torch | openvino | onnxruntime")
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"], help="torch.compile (default auto)")
    p.add_argument("--work", default="bench_out/scale", help="folder for the inputs and outputs")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    keep_freed_memory()  # as `unetseg predict` does (the Dask workers do it in their first task)
    torch.manual_seed(0)
    model = unetseg.UNet(1, 2, base_channels=args.base, depth=4, padding="same").eval()
    ckpt = unetseg.save_checkpoint(model, work / "model.pt")
    model = unetseg.load_model(ckpt, device=args.device)
    options = TileOptions(tile_size=args.tile_size, batch_size=args.batch_size,
                          amp=False if args.amp == "off" else args.amp, device=torch.device(args.device),
                          compile={"auto": "auto", "on": True, "off": False}[args.compile], engine=args.engine)
    t0 = time.perf_counter()
    inputs = write_inputs(work, args.side, args.inputs.split(","))
    results: dict = {"side": args.side, "cpus": os.cpu_count(), "device": args.device,
                     "cpu": _cpu_name(), "inputs_written_s": time.perf_counter() - t0, "runs": []}
    mp = args.side**2 / 1e6
    for path in inputs:
        single = run_single(model, path, work, options)
        dask = run_dask(model, ckpt, path, work, args.workers, args.chunk, options)
        row = {"input": path.name, "single": single, "dask": dask, "equal": same_labels(single["output"], dask["output"]),
               "single_mp_s": mp / single["seconds"], "dask_mp_s": mp / dask["seconds"],
               "dask_vs_single": single["seconds"] / dask["seconds"]}
        results["runs"].append(row)
        print(json.dumps(row), flush=True)
    if args.scaling:
        counts = [int(n) for n in args.scaling.split(",")]
        times = {n: run_dask(model, ckpt, inputs[0], work, n, args.chunk, options)["seconds"] for n in counts}
        base = times[counts[0]] * counts[0]
        results["scaling"] = {n: {"seconds": t, "mp_s": mp / t, "efficiency": base / (t * n)} for n, t in times.items()}
        print(json.dumps(results["scaling"]), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
