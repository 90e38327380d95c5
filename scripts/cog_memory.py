"""Peak memory of ``unetseg predict --format index,palette`` on a SIDE^2 GeoTIFF, with COG assembly (the default
for GeoTIFF inputs) and with ``--no-cog``, each in a child process; every written map is checked with rio-cogeo.

    uv run python scripts/cog_memory.py --sides 4096,16384

Prints one JSON line per run (peak RSS above ``import unetseg``, seconds, COG validation) and a Markdown table.
The input is a zlib-tiled 3-band uint8 GeoTIFF (EPSG:32632, 10 m pixels) streamed tile by tile into the work
folder (kept between runs); the model is a small same-padding U-Net fitted for a few steps to the texture, so the maps have
edges everywhere.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import unetseg
from unetseg.io.tiff_writer import TiffTileWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import OBJECTS_CHILD as CHILD  # noqa: E402  (the child that samples RSS around `unetseg ...`)

# GeoTIFF tags as tifffile writes them: pixel scale, tie point, GeoKey directory of EPSG:32632 (UTM 32N)
GEOTAGS = [(33550, 12, 3, (10.0, 10.0, 0.0), True), (33922, 12, 6, (0.0, 0.0, 0.0, 500000.0, 5000000.0, 0.0), True),
           (34735, 3, 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32632), True)]



def build_geotiff(path: Path, side: int) -> None:
    """A SIDE^2 RGB GeoTIFF with texture at several scales, written band by band (memory stays flat)."""
    if path.exists():
        return
    rows = 256
    cols = np.arange(side)
    with TiffTileWriter(path, (side, side, 3), np.uint8, extratags=GEOTAGS) as writer:
        for top in range(0, side, rows):
            r = np.arange(top, top + rows)[:, None]
            band = np.stack([(r * 7 + cols * 3) % 251, (r // 64 + cols // 96) % 2 * 200, (r ^ cols) % 256], axis=-1)
            writer[top : top + rows] = band.astype(np.uint8)


def textured_model(steps: int = 60) -> torch.nn.Module:
    """A small same-padding U-Net fitted for a few steps to label the input's texture (class = first band // 86),
    so the maps have edges everywhere, as real maps do (a random U-Net paints one class: trivially small maps)."""
    torch.manual_seed(0)
    model = unetseg.UNet(3, 3, base_channels=8, depth=3, padding="same")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rows, cols = np.mgrid[0:128, 0:128]
    for step in range(steps):
        r, c = rows + 97 * step, cols + 53 * step
        image = np.stack([(r * 7 + c * 3) % 251, (r // 64 + c // 96) % 2 * 200, (r ^ c) % 256], axis=0)
        x = torch.from_numpy(image[None].astype(np.float32) / 255)
        y = torch.from_numpy((image[0] // 86)[None].astype(np.int64))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def run(folder: Path, side: int, ckpt: Path, cog: bool) -> dict:
    src = folder / f"geo_{side}.tif"
    build_geotiff(src, side)
    out = folder / f"maps_{side}_{'cog' if cog else 'plain'}"
    args = ["predict", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(out), "--format",
            "index,palette", "--tile-size", "1024", "--cog" if cog else "--no-cog"]
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    from rio_cogeo.cogeo import cog_validate

    valid = {p.name: cog_validate(p, quiet=True) for p in sorted(out.glob("*.tif"))}
    return {"side": side, "cog": cog, **result, "growth_mib": result["peak_mib"] - result["base_mib"],
            "valid": {name: {"valid": v[0], "errors": v[1], "warnings": v[2]} for name, v in valid.items()},
            "map_mib": {p.name: round(p.stat().st_size / 2**20, 1) for p in sorted(out.glob("*.tif"))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="4096,16384", help="image sides, comma list (default: 4096,16384)")
    parser.add_argument("--workdir", default=None, help="where inputs and maps go (default: a temporary folder)")
    args = parser.parse_args()
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="unetseg-cog-"))
    folder.mkdir(parents=True, exist_ok=True)
    model = textured_model()
    ckpt = unetseg.save_checkpoint(model, folder / "model.pt", class_names=["a", "b", "c"])
    runs = []
    for side in (int(s) for s in args.sides.split(",")):
        for cog in (False, True):
            runs.append(run(folder, side, ckpt, cog))
            print(json.dumps(runs[-1]), flush=True)
    print("\n| side | maps | peak RSS (MiB) | peak - import (MiB) | seconds | rio-cogeo |\n|---:|---|---:|---:|---:|---|")
    for r in runs:
        checks = "; ".join(f"{n}: {'valid' if v['valid'] else 'invalid'}, {len(v['warnings'])} warnings"
                           for n, v in r["valid"].items())
        print(f"| {r['side']} | {'COG' if r['cog'] else '--no-cog'} | {r['peak_mib']:.0f} | {r['growth_mib']:.0f} | "
              f"{r['seconds']:.0f} | {checks} |")


if __name__ == "__main__":
    main()
