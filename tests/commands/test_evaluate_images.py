"""``unetseg evaluate --images --masks`` reads the masks as the checkpoint's training read them."""
import cv2
import numpy as np

import unetseg
from unetseg.cli import main
from unetseg.data.classes import ClassTable
from unetseg.models.meta import TrainingRecord

from ..conftest import tiny_unet

COLOURS = ((0, 0, 0), (255, 0, 0), (0, 0, 255))


def test_colour_masks_of_a_checkpoint_trained_on_colour_masks(tmp_path, rng, capsys):
    """A checkpoint planned from RGB class-colour masks is scored on a folder of such masks (they were refused:
    "index mask has 3 channels with different values"); its ignore colour is left out of the scores."""
    table = ClassTable(("background", "cell", "debris"), COLOURS)
    record = TrainingRecord({"data": {"mask_mode": "color", "ignore_color": [255, 255, 255]}})
    ckpt = unetseg.save_checkpoint(tiny_unet("same", depth=2), tmp_path / "m.pt", classes=table, training=record,
                                   ignore_index=255)
    image = rng.integers(0, 256, (60, 70), dtype=np.uint8)
    labels = np.repeat(np.arange(70)[None] % 3, 60, axis=0)  # stripes of the three classes
    mask = np.asarray(COLOURS, np.uint8)[labels]
    mask[:10] = 255  # unlabelled
    predicted = unetseg.predict_tiled(unetseg.load_model(ckpt), image)[10:]
    accuracy = float((predicted == labels[10:]).mean())
    for sub, array in (("images", image), ("masks", cv2.cvtColor(mask, cv2.COLOR_RGB2BGR))):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "scene.png"), array)
    assert main(["evaluate", "--checkpoint", str(ckpt), "--images", str(tmp_path / "images"), "--masks",
                 str(tmp_path / "masks")]) == 0
    out = capsys.readouterr().out
    assert f"pixel accuracy {accuracy:.4f}   ({50 * 70} labelled pixels)" in out, out
