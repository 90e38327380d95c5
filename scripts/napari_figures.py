"""The napari plugin end to end, headless: train from painted labels, segment a 2048x2048 RGB image, screenshot.

    uv run python scripts/napari_figures.py [--minutes 2] [--workdir runs/napari-figures] [--screenshot docs/napari.png]

1. A 2048x2048 RGB image: the nuclei sample (512x512; its training and validation columns side by side),
   mirrored out to 2048x2048 and false-coloured as a DAPI-like stain.
2. A labels layer "painted" with the sample's ground truth on the sample's training columns (0..383 of the
   top-left block) only; painted label 1 = background, 2 = nucleus, 0 = not painted.
3. The Train widget trains on it for ``--minutes``; the script scores the best checkpoint on the never-painted
   validation columns (384..511 of the top-left block) against the untrained network and "all background".
4. The Segment widget segments the whole 2048x2048 image with that checkpoint (the library's defaults); the
   script checks its Labels layer equals ``unetseg.predict_tiled`` on the same image, and saves a screenshot
   of the window (image, labels, both widgets).

Prints the figures and writes them to ``WORKDIR/figures.json``. Runs on a machine without a screen: it starts
a virtual X display (Xvfb, through PyVirtualDisplay) unless $DISPLAY is set.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

SIDE = 2048
PAINTED_COLUMNS = 384  # the nuclei sample's training columns; 384..511 are its validation columns


def rgb_image() -> tuple[np.ndarray, np.ndarray]:
    """(2048x2048x3 uint8 image, 2048x2048 class truth): the nuclei sample mirrored out, DAPI-like colours."""
    from unetseg.data.samples import load_sample

    train, val = load_sample("nuclei", "train"), load_sample("nuclei", "val")
    gray = np.concatenate([train.images[0], val.images[0]], axis=1)
    truth = np.concatenate([train.masks[0], val.masks[0]], axis=1).astype(np.uint8)
    pad = ((0, SIDE - gray.shape[0]), (0, SIDE - gray.shape[1]))
    gray, truth = np.pad(gray, pad, mode="symmetric"), np.pad(truth, pad, mode="symmetric")
    tint = np.array([0.35, 0.6, 1.0])
    rgb = np.clip(gray[..., None] * tint + 12, 0, 255).astype(np.uint8)
    return rgb, truth


def miou(labels: np.ndarray, truth: np.ndarray) -> float:
    from unetseg.metrics import ConfusionMatrix

    cm = ConfusionMatrix(2)
    cm.update(labels, truth.astype(np.int64))
    return float(cm.compute()["miou"])


def wait(app, done, timeout: float) -> None:
    start = time.perf_counter()
    while not done():
        app.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"the widget did not finish within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="training time (default 2)")
    parser.add_argument("--workdir", default="runs/napari-figures", help="run folder and figures.json")
    parser.add_argument("--screenshot", default="docs/napari.png", help="where the window's screenshot goes")
    args = parser.parse_args()
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1700, 1000), color_depth=24)
        display.start()
    try:
        run(args)
    finally:
        if display is not None:
            display.stop()


def run(args: argparse.Namespace) -> None:
    import napari
    import PIL.Image
    from qtpy.QtWidgets import QApplication

    import unetseg
    from unetseg.napari.widgets import SegmentWidget, TrainWidget

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    image, truth = rgb_image()
    paint = np.zeros(truth.shape, np.uint8)
    paint[:512, :PAINTED_COLUMNS] = truth[:512, :PAINTED_COLUMNS] + 1
    held = (slice(0, 512), slice(PAINTED_COLUMNS, 512))

    viewer = napari.Viewer(title="unetseg in napari", show=True)
    viewer.window.resize(1700, 1000)
    viewer.add_image(image, name="cells", rgb=True)
    viewer.add_labels(paint, name="painted", features={"index": [1, 2], "class": ["background", "nucleus"]})
    app = QApplication.instance()

    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train, name="unetseg: Train", area="right")
    train.image.value, train.labels_layer.value = viewer.layers["cells"], viewer.layers["painted"]
    run_dir = work / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    train.out.value, train.minutes.value = str(run_dir), args.minutes
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="unetseg: Segment", area="right")
    train.run()
    wait(app, lambda: train._job is None, 60 * args.minutes + 600)
    if train.result is None:
        raise SystemExit(f"training failed: {train.status.value}")
    best = train.result.best_checkpoint
    model = unetseg.load_model(best)
    untrained = unetseg.build_model(model.config["name"], **model.config["kwargs"])  # fresh random weights
    untrained.normalization = model.normalization
    crop = image[held]
    scores = {"trained": miou(unetseg.predict_tiled(model, crop), truth[held]),
              "untrained": miou(unetseg.predict_tiled(untrained.eval(), crop), truth[held]),
              "all_background": miou(np.zeros(truth[held].shape, np.uint8), truth[held])}

    assert segment.checkpoint.value == best, "the trained checkpoint should be the Segment widget's choice"
    segment.image.value = viewer.layers["cells"]
    started = time.perf_counter()
    segment.run()
    wait(app, lambda: segment._job is None, 1200)
    seconds = time.perf_counter() - started
    layer = segment.last_layers[0] if segment.last_layers else None
    if layer is None:
        raise SystemExit(f"segmenting failed: {segment.status.value}")
    reference = unetseg.predict_tiled(model, image)
    equal = bool(np.array_equal(layer.data, reference))
    viewer.layers["painted"].visible = False
    layer.opacity = 0.45
    viewer.camera.center, viewer.camera.zoom = (560, 560), 0.78  # the top-left 1100 px, nuclei told apart
    for _ in range(20):
        app.processEvents()
        time.sleep(0.05)
    shot = Path(args.screenshot)
    shot.parent.mkdir(parents=True, exist_ok=True)
    pixels = viewer.screenshot(canvas_only=False)[..., :3]
    PIL.Image.fromarray(pixels).quantize(256).save(shot, optimize=True)  # a palette PNG: a quarter of the bytes
    figures = {"image": f"{SIDE}x{SIDE} RGB", "minutes": args.minutes, "checkpoint": str(best),
               "train_steps": train.result.global_step, "best_val_miou": train.result.best_miou,
               "held_out_miou": scores, "segment_seconds": round(seconds, 2), "labels_equal_predict_tiled": equal,
               "screenshot": str(shot)}
    (work / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    viewer.close()
    if not equal:
        raise SystemExit("the Segment widget's labels differ from unetseg.predict_tiled's")


if __name__ == "__main__":
    main()
