"""Objects on the built-in nuclei sample, end to end, as a user runs them; writes the README's picture.

1. ``unetseg train configs/nuclei_instances.yaml`` (the sample's instance mask -> background / interior /
   boundary targets; reused when WORKDIR/run/best.pt exists).
2. ``unetseg predict --format instances,objects,geojson`` on the held-out strip (the right 128 columns).
3. Scores against the true nuclei: AP at IoU 0.5 and 0.75 (one-to-one matching, as StarDist), panoptic quality,
   and the baseline of the connected components of the predicted foreground (interior + boundary), side by side.
4. ``docs/objects.png``: the strip with each object's outline in its own colour, beside the true nuclei.

    uv run python scripts/objects_figure.py [--workdir objects_out] [--figure docs/objects.png]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import tifffile
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]


def unetseg(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "unetseg.cli", *args], check=True, cwd=ROOT)


def outlines(image: np.ndarray, ids: np.ndarray, scale: int = 3) -> np.ndarray:
    """The gray image in RGB, upscaled, each object's outline drawn in a colour of its own."""
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    rgb = np.repeat(big[..., None], 3, axis=2)
    ids = cv2.resize(ids.astype(np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    edge = (ndimage.grey_dilation(ids, size=3) != ndimage.grey_erosion(ids, size=3)) & (ids > 0)
    palette = np.random.default_rng(7).integers(80, 256, (int(ids.max()) + 1, 3))
    rgb[edge] = palette[ids[edge].astype(int)]
    return rgb


def main() -> int:
    from unetseg.data.samples import load_sample
    from unetseg.metrics import ObjectScores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="objects_out", type=Path)
    parser.add_argument("--figure", default=ROOT / "docs" / "objects.png", type=Path)
    parser.add_argument("--min-object-size", default="0")
    args = parser.parse_args()
    work = args.workdir.resolve()
    if not (work / "run" / "best.pt").exists():
        unetseg("train", "configs/nuclei_instances.yaml", "--out", str(work / "run"))
    val = load_sample("nuclei", "val")
    image, truth = val.images[0], val.instances[0]
    cv2.imwrite(str(work / "strip.png"), image)
    unetseg("predict", "--checkpoint", str(work / "run" / "best.pt"), "--input", str(work / "strip.png"),
            "--output", str(work / "pred"), "--format", "instances,objects,geojson,index",
            "--min-object-size", args.min_object_size)
    ids = tifffile.imread(work / "pred" / "strip_instances.tif")
    classes = cv2.imread(str(work / "pred" / "strip_index.png"), cv2.IMREAD_UNCHANGED)
    rows = {}
    for name, pred in (("unetseg predict --format instances", ids),
                       ("components of the foreground", ndimage.label((classes > 0) & (classes < 255),
                                                                      np.ones((3, 3)))[0])):
        scores = ObjectScores((0.5, 0.75))
        scores.update(truth, pred)
        rows[name] = scores.compute()
    print("| objects | AP@0.5 | AP@0.75 | PQ | found / true |\n|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['ap'][0.5]:.3f} | {r['ap'][0.75]:.3f} | {r['pq']:.3f} | {r['n_pred']} / {r['n_true']} |")
    figure = np.concatenate([outlines(image, ids), np.full((image.shape[0] * 3, 12, 3), 255, np.uint8),
                             outlines(image, truth)], axis=1)
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.figure), figure[..., ::-1])
    (work / "scores.json").write_text(json.dumps(rows, indent=2, default=str))
    print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
