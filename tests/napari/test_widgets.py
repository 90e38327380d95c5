"""The dock widgets in a real (headless, Xvfb) napari viewer: results as layers, equal to the library's;
Cancel leaves no layer and no thread; the trained checkpoint reaches the Segment widget."""
import numpy as np
import pytest
from qtpy.QtCore import QThreadPool

import unetseg
from unetseg.data.samples import load_sample

from .conftest import needs_display

pytestmark = [needs_display, pytest.mark.usefixtures("no_remembered")]


@pytest.fixture
def viewer(make_napari_viewer):
    v = make_napari_viewer()
    v.add_image(load_sample("nuclei", "train").images[0], name="cells")
    return v


def segment_widget(viewer, checkpoint, **values):
    from unetseg.napari.widgets import SegmentWidget

    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.checkpoint.value = str(checkpoint)
    for key, value in values.items():
        getattr(widget, key).value = value
    return widget


def test_segment_adds_the_labels_predict_tiled_gives(viewer, qtbot, checkpoint):
    widget = segment_widget(viewer, checkpoint, tile_size="256")
    assert widget.image.value is viewer.layers["cells"]
    widget.run()
    qtbot.waitUntil(lambda: not widget.running and widget._job is None, timeout=60_000)
    layer = viewer.layers["cells (classes)"]
    expected = unetseg.predict_tiled(unetseg.load_model(checkpoint), viewer.layers["cells"].data, tile_size=256)
    np.testing.assert_array_equal(layer.data, expected)
    assert widget.progress.value == widget.progress.max > 1
    assert list(layer.features["class"]) == ["background", "class1"]
    assert "done" in widget.status.value


def test_the_window_stays_responsive_while_segmenting(viewer, qtbot, checkpoint):
    big = np.kron(viewer.layers["cells"].data, np.ones((4, 4), np.uint8))  # 2048^2
    viewer.add_image(big, name="big")
    widget = segment_widget(viewer, checkpoint, tile_size="256")
    widget.image.value = viewer.layers["big"]
    ticks = []
    from qtpy.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(widget.progress.value))
    timer.start(20)
    widget.run()
    qtbot.waitUntil(lambda: widget._job is None, timeout=120_000)
    timer.stop()
    assert len(ticks) > 5 and len(set(ticks)) > 2  # the event loop ran and saw the bar move during the run


def test_cancel_leaves_no_layer_and_no_thread(viewer, qtbot, checkpoint):
    widget = segment_widget(viewer, checkpoint, tile_size="256")
    before = [layer.name for layer in viewer.layers]
    widget.progress.changed.connect(lambda v: v >= 1 and widget.cancel())  # cancel once a tile is done
    widget.run()
    qtbot.waitUntil(lambda: widget._job is None, timeout=60_000)
    assert widget.status.value == "cancelled"
    assert [layer.name for layer in viewer.layers] == before
    assert QThreadPool.globalInstance().waitForDone(5_000) and QThreadPool.globalInstance().activeThreadCount() == 0
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_a_bad_checkpoint_is_one_line_in_the_widget(viewer, qtbot, tmp_path):
    bad = tmp_path / "empty.pt"
    bad.write_bytes(b"")
    widget = segment_widget(viewer, bad)
    widget.run()
    qtbot.waitUntil(lambda: widget._job is None, timeout=30_000)
    assert "empty" in widget.status.value and "\n" not in widget.status.value
    assert len(viewer.layers) == 1


def test_multiscale_layers_get_the_level_choice(make_napari_viewer, qtbot, checkpoint):
    viewer = make_napari_viewer()
    cells = load_sample("nuclei", "train").images[0]
    viewer.add_image([np.kron(cells, np.ones((2, 2), np.uint8)), cells], multiscale=True, name="pyr")
    widget = segment_widget(viewer, checkpoint, tile_size="256")
    assert widget.level.max == 1 and not widget.level.native.isHidden()  # shown (once the window is)
    widget.level.value = 1
    widget.run()
    qtbot.waitUntil(lambda: widget._job is None, timeout=60_000)
    layer = viewer.layers["pyr (classes)"]
    assert layer.data.shape == cells.shape and tuple(layer.scale) == (2.0, 2.0)


def test_train_widget_trains_and_hands_its_checkpoint_to_segment(viewer, qtbot, tmp_path, checkpoint):
    from unetseg.napari.widgets import TrainWidget

    sample = load_sample("nuclei", "train")
    paint = np.zeros(sample.masks[0].shape, np.uint8)
    paint[:, :200] = sample.masks[0][:, :200] + 1
    viewer.add_labels(paint, name="paint")
    segment = segment_widget(viewer, checkpoint)
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train)
    assert train.image.value is viewer.layers["cells"] and train.labels_layer.value is viewer.layers["paint"]
    train.out.value = str(tmp_path / "run")
    train.minutes.value, train.epochs.value = 0.2, 2
    said = []
    shown = train._say
    train._say = lambda text: (said.append(text), shown(text))  # every status line the widget shows
    train.run()
    qtbot.waitUntil(lambda: train._job is None, timeout=120_000)
    assert train.result is not None, train.status.value
    assert any(line.startswith("timing a training step") for line in said), said
    assert any(line.startswith("writing summary.json") for line in said), said
    assert train.rows and "val mIoU" in train.status.value or "done" in train.status.value
    assert segment.checkpoint.value == train.result.best_checkpoint
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "plan.yaml").exists()


def test_the_plugin_loads_torch_parts_after_napari_drew_without_crashing(tmp_path):
    """napari draws first (Mesa's LLVM mapped), then the plugin is imported and pulls in torchvision/torch._dynamo,
    as in a user's viewer: without keeping triton out, the process dies of a segfault here."""
    import subprocess
    import sys

    code = ("import napari\n"
            "viewer = napari.Viewer(show=True)\n"
            "import unetseg.napari.widgets\n"
            "import torch._dynamo, torchvision, segmentation_models_pytorch\n"
            "viewer.close()\n"
            "print('alive')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "alive" in done.stdout, (done.returncode, done.stderr[-2000:])


def test_a_3d_checkpoint_segments_the_volume_on_screen_with_its_scale(make_napari_viewer, qtbot, tmp_path):
    from .test_segmenting3d import volume_checkpoint

    rng = np.random.default_rng(0)
    series = rng.integers(0, 256, (3, 12, 40, 36), dtype=np.uint8)  # T x Z x Y x X
    viewer = make_napari_viewer()
    viewer.add_image(series, name="scan", scale=(1.0, 2.5, 0.5, 0.5))
    viewer.dims.set_point(0, 1.0)  # the second time point on screen
    path, model = volume_checkpoint(tmp_path / "vol.pt")
    widget = segment_widget(viewer, path, precision="fp32")
    widget.run()
    qtbot.waitUntil(lambda: widget._job is None, timeout=60_000)
    layer = viewer.layers["scan (classes)"]
    assert layer.data.shape == (12, 40, 36) and tuple(layer.scale) == (2.5, 0.5, 0.5)
    np.testing.assert_array_equal(layer.data, unetseg.predict_tiled(model, series[1], amp=False))
