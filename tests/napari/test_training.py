"""Training from painted labels: a normal run folder, and a model that beats the untrained one on the rest."""
import numpy as np
import pytest
import yaml

import unetseg
from unetseg.data.samples import load_sample
from unetseg.errors import UnetsegError
from unetseg.metrics import ConfusionMatrix
from unetseg.napari.training import train_from_labels

# deterministic and short: a fixed number of small epochs instead of the clock
FAST = ["train.time_budget_minutes=null", "data.patches_per_epoch=64", "model.base_channels=8", "model.depth=3",
        "data.patch_size=128", "train.batch_size=8", "train.val_every=1"]


@pytest.fixture(scope="module")
def painted():
    """The nuclei image; labels painted on its left 384 columns only (the rest is for scoring)."""
    sample = load_sample("nuclei", "train")
    image = load_sample("nuclei", "val").images[0]
    whole = np.concatenate([sample.images[0], image], axis=1)
    truth = np.concatenate([sample.masks[0], load_sample("nuclei", "val").masks[0]], axis=1).astype(np.int64)
    paint = np.zeros(whole.shape, np.uint8)
    paint[:, :384] = truth[:, :384] + 1  # painted label = class + 1; 0 = not painted
    return whole, paint, truth


def miou(model, image, truth):
    cm = ConfusionMatrix(2)
    cm.update(unetseg.predict_tiled(model, image)[:, 384:], truth[:, 384:])
    return cm.compute()["miou"]


def test_training_from_painted_labels_beats_the_untrained_model(tmp_path, painted):
    image, paint, truth = painted
    result = train_from_labels(image, paint, tmp_path / "run", minutes=5, epochs=6, overrides=FAST)
    run = tmp_path / "run"
    for name in ("plan.yaml", "config.yaml", "metrics.csv", "best.pt", "last.pt", "data/images/painted.tif"):
        assert (run / name).exists(), name
    classes = yaml.safe_load((run / "config.yaml").read_text())["data"]["classes"]
    assert [c["name"] for c in classes] == ["background", "class1"]
    trained = unetseg.load_model(result.best_checkpoint)
    untrained = unetseg.build_model("unet", in_channels=1, num_classes=2, base_channels=8, depth=3,
                                    padding="same").eval()
    untrained.normalization = trained.normalization
    score, baseline = miou(trained, image, truth), miou(untrained, image, truth)
    assert score > baseline + 0.2 and score > 0.6, (score, baseline)


def test_fine_tuning_keeps_the_parent_classes_and_records_it(tmp_path, painted, checkpoint):
    image, paint, _ = painted
    rows = []
    result = train_from_labels(image, paint, tmp_path / "ft", minutes=5, epochs=1, init=checkpoint,
                               overrides=[o for o in FAST if not o.startswith("model.")], on_epoch=rows.append)
    model = unetseg.load_model(result.best_checkpoint)
    assert model.meta.training.parent == str(checkpoint)
    assert list(model.class_table.names) == list(unetseg.load_model(checkpoint).class_table.names)
    assert len(rows) == 1 and rows[0]["val_miou"] > 0


def test_stop_ends_the_run_with_its_checkpoints(tmp_path, painted):
    image, paint, _ = painted
    result = train_from_labels(image, paint, tmp_path / "s", minutes=5, epochs=50, overrides=FAST,
                               stop=lambda: True)
    assert result.stopped_by == "stop" and result.epochs <= 1 and result.best_checkpoint.exists()


@pytest.mark.parametrize("paint_value, message", [(0, "no labelled pixel"), (2, "paint at least two classes")])
def test_unusable_paint_is_a_one_line_error(tmp_path, painted, paint_value, message):
    image, _, _ = painted
    with pytest.raises(UnetsegError, match=message):
        train_from_labels(image, np.full(image.shape, paint_value, np.uint8), tmp_path / "x", minutes=1)


def test_labels_of_another_size_are_refused(tmp_path, painted):
    image, paint, _ = painted
    with pytest.raises(UnetsegError, match="'cells' is 512x512 px but the labels are 100x50"):
        train_from_labels(image, paint[:50, :100], tmp_path / "x", names=("cells", "paint"))


def test_painted_slices_of_a_volume_train_a_3d_checkpoint_with_the_layers_spacing(tmp_path):
    """A 3-D labels layer painted on every 4th slice: a one-volume NIfTI folder with the layer's scale, the volume
    plan, a 3D checkpoint that segments the volume in the viewer better than an untrained one on unpainted slices."""
    from unetseg.io.nifti import open_nifti
    from unetseg.napari.segmenting import SegmentSettings, segment_layer

    sample = load_sample("brain", "train", volume=True)
    box = (slice(30, 62), slice(48, 144), slice(40, 136))
    volume, truth = sample.images[0][box], sample.masks[0][box].astype(np.int64)
    paint = np.zeros(truth.shape, np.uint8)
    paint[::4] = truth[::4] + 1
    # fp32 and 64 slices an epoch: on an AVX512-BF16 CPU the plan trains in bf16, and 32 slices an epoch reached
    # mIoU 0.31 there (0.71 with these settings); the bar must not depend on the CPU the suite runs on. Base 16
    # pinned: the plan picks 16 or 32 by timing steps, and base 32's fp32 prediction of this volume at the exact
    # halo (no time was left to measure one) takes ~50 s on 2 cores
    result = train_from_labels(volume, paint, tmp_path / "run", minutes=5, epochs=8, scale=(1.0, 2.0, 1.0, 1.0),
                               overrides=["train.time_budget_minutes=null", "data.patches_per_epoch=64",
                                          "train.amp=off", "model.base_channels=16"])
    run = tmp_path / "run"
    written = open_nifti(run / "data/images/painted.nii.gz")
    assert written.spacing == (2.0, 1.0, 1.0) and written.shape == volume.shape  # painted every 4th slice: all
    mask = open_nifti(run / "data/masks/painted.nii.gz")[:, :, :]
    assert (mask[1:4] == 255).all() and (mask[::4] == truth[::4]).all()
    plan = yaml.safe_load((run / "plan.yaml").read_text())
    assert plan["data"]["ignore_index"] == 255
    assert plan["data"]["patches_per_epoch"] == 64 and plan["train"]["time_budget_minutes"] is None  # what ran
    assert "# set by --set data.patches_per_epoch=64; the plan's choice was" in (run / "plan.yaml").read_text()
    model = unetseg.load_model(result.best_checkpoint)
    assert model.spatial_dims == 3 and list(model.class_table.names) == ["background", "class1", "class2"]
    (labels, kwargs, _), = segment_layer(volume, SegmentSettings(str(result.best_checkpoint), precision="fp32"),
                                         scale=(2.0, 1.0, 1.0))
    assert labels.shape == volume.shape and kwargs["scale"] == (2.0, 1.0, 1.0)
    unpainted = np.arange(len(volume)) % 4 != 0
    cm = ConfusionMatrix(3)
    cm.update(labels[unpainted].astype(np.int64), truth[unpainted])
    untrained = ConfusionMatrix(3)
    untrained.update(np.zeros(int(unpainted.sum()) * 96 * 96, np.int64), truth[unpainted].ravel())
    assert cm.compute()["miou"] > untrained.compute()["miou"] + 0.3, cm.compute()["miou"]


def test_a_2d_checkpoint_cannot_fine_tune_on_3d_labels(tmp_path, checkpoint):
    volume = np.zeros((4, 32, 32), np.uint8)
    paint = np.zeros(volume.shape, np.uint8)
    paint[1, :8], paint[1, 8:16] = 1, 2
    with pytest.raises(UnetsegError, match="a 2D model cannot fine-tune on 3-D labels"):
        train_from_labels(volume, paint, tmp_path / "x", init=checkpoint)
