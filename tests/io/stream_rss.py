"""Child process for the streaming memory test: build a tiled TIFF of SIDE^2 px (streamed), segment it
through the streaming path, print the peak RSS growth (MiB) of the segmentation phase as JSON."""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import tifffile
import torch

import unetseg
from unetseg.io import TiffTileWriter, open_image


class Sampler:
    """Peak RSS by sampling (ru_maxrss is useless here: a forked child inherits its parent's high-water mark)."""

    def __init__(self) -> None:
        self.peak = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        proc = psutil.Process()
        while True:
            self.peak = max(self.peak, proc.memory_info().rss)
            time.sleep(0.005)

    def peak_mib(self) -> float:
        return self.peak / 2**20


SAMPLER = Sampler()


def max_rss_mib() -> float:
    return max(SAMPLER.peak, psutil.Process().memory_info().rss) / 2**20


def build_tiff(path: Path, side: int, tile: int = 256) -> None:
    def tiles():
        yy, xx = np.mgrid[0:tile, 0:tile]
        for r in range(0, side, tile):
            for c in range(0, side, tile):
                yield (((yy + r) * 7 + (xx + c) * 3) % 251).astype(np.uint8)
    tifffile.imwrite(path, tiles(), shape=(side, side), dtype=np.uint8, tile=(tile, tile), compression="zlib")


def segment(folder: str, side: int) -> dict:
    src, dst = Path(folder) / f"in{side}.tif", Path(folder) / f"out{side}.tif"
    build_tiff(src, side)
    model = torch.nn.Conv2d(1, 2, kernel_size=1)  # a bare module: same padding, stride 32, halo 64
    source = open_image(src)
    with TiffTileWriter(dst, (side, side), np.uint8) as writer:
        unetseg.predict_tiled(model, source.array, tile_size=512, amp=False, out=writer)
    with tifffile.TiffFile(dst) as tif:
        ok = tif.pages.first.shape == (side, side) and tif.pages.first.is_tiled
    return {"side": side, "peak_mib": max_rss_mib(), "ok": ok}


def main(folder: str, sides: list[int]) -> None:
    """Sides in increasing order; ru_maxrss is a high-water mark, so each peak bounds that run's growth."""
    torch.set_num_threads(1)
    base = max_rss_mib()
    runs = [segment(folder, side) for side in sides]
    print(json.dumps({"base_mib": base, "runs": runs}))


if __name__ == "__main__":
    main(sys.argv[1], [int(s) for s in sys.argv[2:]])
